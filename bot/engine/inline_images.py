"""Images for servers that cannot fetch them: downloaded once and sent inside the request.

Local OpenAI-compatible servers (llama.cpp, Ollama, vLLM) cannot reach Discord's CDN, and its links
expire within a day; the chat backend sends each image of the current turn as a `data:` URI instead,
within a size cap, and stores the turn with a short note in the image's place (the stored history is
sent again with every later turn, and a few MB of base64 each time would crowd out the conversation).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import urlsplit

import aiohttp

MAX_INLINE_IMAGE_BYTES = 4 * 1024 * 1024
"""Largest image sent inside a request (about 5.3 MB once base64-encoded)."""
FETCH_TIMEOUT_S = 15.0
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


@dataclass(frozen=True, slots=True)
class InlinedImage:
    """The image as a `data:` URI for this request."""

    data_uri: str


@dataclass(frozen=True, slots=True)
class ImageLeftOut:
    """Why the image was not sent: one sentence the model reads in its place (and can pass on)."""

    note: str


def image_name(url: str) -> str:
    """The file name in an attachment's URL, for notes about it."""
    return PurePosixPath(urlsplit(url).path).name or "image"


class ImageInliner:
    """Downloads images (capped, typed) into `data:` URIs; one HTTP session for the process."""

    def __init__(self, *, max_bytes: int = MAX_INLINE_IMAGE_BYTES) -> None:
        self._max_bytes = max_bytes
        self._session: aiohttp.ClientSession | None = None

    async def inline(self, url: str) -> InlinedImage | ImageLeftOut:
        name = image_name(url)
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S))
        try:
            async with self._session.get(url) as response:
                if response.status != 200:
                    return ImageLeftOut(f"[Image {name}: could not be downloaded (HTTP {response.status})]")
                kind = response.content_type.lower()
                if kind not in INLINE_TYPES:
                    return ImageLeftOut(
                        f"[Image {name}: not sent, {kind or 'an unknown type'} is not an image]"
                    )
                if (response.content_length or 0) > self._max_bytes:
                    return self._too_large(name, response.content_length or 0)
                data = await response.content.read(self._max_bytes + 1)
        except (aiohttp.ClientError, TimeoutError):
            return ImageLeftOut(f"[Image {name}: could not be downloaded]")
        if len(data) > self._max_bytes:
            return self._too_large(name, len(data))
        return InlinedImage(f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}")

    def _too_large(self, name: str, size: int) -> ImageLeftOut:
        limit_mb = self._max_bytes / (1024 * 1024)
        shown = f"{size / (1024 * 1024):.1f} MB" if size > self._max_bytes else "more"
        return ImageLeftOut(
            f"[Image {name}: too large to send to the model ({shown}; the limit is {limit_mb:g} MB)]"
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
