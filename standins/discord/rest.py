"""What every REST route shares: the request as a handler sees it, and reading JSON or multipart bodies
(``payload_json`` and ``files[n]``, as discord.py sends attachments)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, web

from .errors import DiscordAPIError, form_error
from .models import Json, RestCall, Upload, to_int


@dataclass
class ApiRequest:
    request: web.Request
    call: RestCall
    body: Any
    files: list[Upload]

    @property
    def json(self) -> Json:
        return self.body if isinstance(self.body, dict) else {}

    def param(self, name: str) -> str:
        return self.request.match_info[name]

    def int_param(self, name: str) -> int:
        value = to_int(self.request.match_info[name])
        if value is None:
            raise form_error(name, "NUMBER_TYPE_COERCE", "Value is not snowflake.")
        return value


Handler = Callable[[ApiRequest], Awaitable[web.StreamResponse]]


async def read_body(request: web.Request) -> tuple[Any, list[Upload]]:
    """JSON, or multipart with ``payload_json`` and ``files[n]`` as discord.py sends attachments."""
    if request.content_type == "multipart/form-data":
        payload: Any = None
        indexed: list[tuple[int, Upload]] = []
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue
            name = part.name or ""
            if name == "payload_json":
                payload = json.loads(await part.text())
            elif name.startswith("files["):
                index = to_int(name[6:-1]) or 0
                indexed.append(
                    (
                        index,
                        Upload(
                            part.filename or "file",
                            bytes(await part.read()),
                            part.headers.get("Content-Type"),
                        ),
                    )
                )
        descriptions = {}
        if isinstance(payload, dict):
            body = payload.get("data", payload) if isinstance(payload.get("data"), dict) else payload
            descriptions = {to_int(a.get("id")): a.get("description") for a in body.get("attachments") or []}
        uploads = [
            Upload(u.filename, u.data, u.content_type, descriptions.get(i))
            for i, u in sorted(indexed, key=lambda p: p[0])
        ]
        return payload, uploads
    raw = await request.read()
    if not raw:
        return None, []
    try:
        return json.loads(raw), []
    except ValueError:
        raise DiscordAPIError(400, 50109, "The request body contains invalid JSON.") from None
