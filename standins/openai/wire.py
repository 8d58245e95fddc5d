"""OpenAI on the wire: compact JSON, errors in OpenAI's shape (raised as ``BadRequest`` from anywhere in
a handler), scripted failures and dropped connections, and the request a handler is given."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .script import Drop, HttpError
from .tokens import Json

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "invalid_request_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    422: "invalid_request_error",
    429: "requests",
}


class BadRequest(Exception):
    """A 400 in OpenAI's shape, raised from validation helpers."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None, status: int = 400):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.status = status


@dataclass
class Call:
    """One request being handled: the aiohttp request, its JSON body and the route's path parameters."""

    request: web.Request
    body: Json
    params: dict[str, str]


def dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"))


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=dumps)


def error_response(
    status: int,
    message: str,
    *,
    type: str | None = None,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """An error in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""
    error_type = type or _ERROR_TYPES.get(status, "server_error")
    body = {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    return web.json_response(body, status=status, headers=headers, dumps=dumps)


async def fail(request: web.Request, step: HttpError | Drop) -> web.StreamResponse:
    """Answer with a scripted HTTP error, or drop the connection."""
    if step.delay_s:
        await asyncio.sleep(step.delay_s)
    if isinstance(step, Drop):
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=499)
    code = step.code if step.code is not None else ("rate_limit_exceeded" if step.status == 429 else None)
    return error_response(
        step.status, step.message, type=step.type, param=step.param, code=code, headers=step.headers
    )
