"""The attachment CDN: files users attach and the bot uploads, stored by attachment id, described as
Discord describes them and served at their URLs (each fetch recorded as a REST call of kind "cdn")."""

from __future__ import annotations

import asyncio
import mimetypes
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from aiohttp import web

from .constants import ATTACHMENTS_PATH
from .models import Json, RestCall, Snowflakes, Upload, png_size, to_int


class AttachmentCdn:
    """Stored files; ``record`` is told of every fetch (the server's call log)."""

    def __init__(self, ids: Snowflakes, record: Callable[[RestCall], Awaitable[None]]) -> None:
        self._ids = ids
        self._record = record
        self.files: dict[int, Upload] = {}

    def file_bytes(self, attachment_id: int) -> bytes:
        return self.files[attachment_id].data

    def attach(self, base_url: str, channel_id: int, upload: Upload) -> Json:
        """Store an upload where the stand-in's CDN serves it and describe it as Discord would."""
        attachment_id = self._ids.next()
        self.files[attachment_id] = upload
        content_type = upload.content_type
        if not content_type or content_type == "application/octet-stream":
            content_type = mimetypes.guess_type(upload.filename)[0] or "application/octet-stream"
        url = f"{base_url}{ATTACHMENTS_PATH}/{channel_id}/{attachment_id}/{quote(upload.filename)}"
        data: Json = {
            "id": str(attachment_id),
            "filename": upload.filename,
            "size": len(upload.data),
            "url": url,
            "proxy_url": url,
            "content_type": content_type,
        }
        if upload.description:
            data["description"] = upload.description
        size = png_size(upload.data)
        if size is not None:
            data["width"], data["height"] = size
        return data

    async def serve(self, request: web.Request) -> web.StreamResponse:
        """The attachment URLs: serves stored bytes (recorded as REST calls of kind "cdn")."""
        loop = asyncio.get_running_loop()
        attachment_id = to_int(request.match_info["attachment_id"]) or 0
        upload = self.files.get(attachment_id)
        call = RestCall(
            "GET",
            ATTACHMENTS_PATH + "/{channel_id}/{attachment_id}/{filename}",
            "cdn",
            request.path,
            to_int(request.match_info["channel_id"]),
            at=loop.time(),
        )
        if upload is None:
            response = web.Response(status=404, text="Not Found")
        else:
            content_type = (
                mimetypes.guess_type(upload.filename)[0] or upload.content_type or "application/octet-stream"
            )
            response = web.Response(status=200, body=upload.data, headers={"Content-Type": content_type})
        call.status = response.status
        await self._record(call)
        return response
