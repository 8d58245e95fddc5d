"""Error answers shaped like Discord's: the JSON error codes, 50035 Invalid Form Body with per-field
errors, 403s and 404s, and the JSON responses discord.py accepts."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

from .models import Json


def json_response(status: int, data: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    """JSON exactly as Discord labels it: discord.py only parses bodies typed ``application/json``."""
    response = web.Response(status=status, body=json.dumps(data).encode())
    response.headers["Content-Type"] = "application/json"
    if headers:
        response.headers.update(headers)
    return response


def no_content() -> web.Response:
    return web.Response(status=204)


class DiscordAPIError(Exception):
    """An error answer: HTTP status, Discord's JSON error code and message, optional field errors."""

    def __init__(self, status: int, code: int, message: str, errors: Json | None = None) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors

    def response(self) -> web.Response:
        body: Json = {"message": self.message, "code": self.code}
        if self.errors:
            body["errors"] = self.errors
        return json_response(self.status, body)


class FormErrors:
    """Collects per-field problems and raises them as one 50035 Invalid Form Body, as Discord does."""

    def __init__(self) -> None:
        self.errors: Json = {}

    def add(self, path: Sequence[str | int], code: str, message: str) -> None:
        node = self.errors
        for part in path:
            node = node.setdefault(str(part), {})
        node.setdefault("_errors", []).append({"code": code, "message": message})

    def max_length(self, path: Sequence[str | int], value: str | None, limit: int) -> None:
        if value is not None and len(value) > limit:
            self.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")

    def raise_if_any(self) -> None:
        if self.errors:
            raise DiscordAPIError(400, 50035, "Invalid Form Body", self.errors)


def form_error(field_name: str, code: str, message: str) -> DiscordAPIError:
    """A 50035 Invalid Form Body about one field."""
    return DiscordAPIError(
        400, 50035, "Invalid Form Body", {field_name: {"_errors": [{"code": code, "message": message}]}}
    )


def missing_access() -> DiscordAPIError:
    return DiscordAPIError(403, 50001, "Missing Access")


def missing_permissions() -> DiscordAPIError:
    return DiscordAPIError(403, 50013, "Missing Permissions")


def unknown(what: str, code: int) -> DiscordAPIError:
    return DiscordAPIError(404, code, f"Unknown {what}")
