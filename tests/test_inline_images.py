"""Images downloaded for the chat backend: within the cap, of an image type, or one clear note."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from bot.engine.inline_images import ImageInliner, ImageLeftOut, InlinedImage
from standins.png import encode_png

PNG = encode_png(4, 4, (0, 128, 255))


@pytest.fixture
async def files() -> AsyncIterator[str]:
    """A small file server on 127.0.0.1: /cat.png, /big.png (no length given), /notes.txt, /gone.png."""

    async def cat(request: web.Request) -> web.Response:
        return web.Response(body=PNG, content_type="image/png")

    async def big(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(8):
            await response.write(b"\0" * 1024)
        await response.write_eof()
        return response

    async def notes(request: web.Request) -> web.Response:
        return web.Response(text="not an image", content_type="text/plain")

    app = web.Application()
    app.router.add_get("/cat.png", cat)
    app.router.add_get("/big.png", big)
    app.router.add_get("/notes.txt", notes)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def inline(url: str, *, max_bytes: int = 4096) -> InlinedImage | ImageLeftOut:
    inliner = ImageInliner(max_bytes=max_bytes)
    try:
        return await inliner.inline(url)
    finally:
        await inliner.close()


async def test_an_image_within_the_cap_becomes_a_data_uri(files: str) -> None:
    image = await inline(f"{files}/cat.png?ex=123&hm=abc")
    assert isinstance(image, InlinedImage)
    kind, _, encoded = image.data_uri.partition(";base64,")
    assert kind == "data:image/png" and base64.b64decode(encoded) == PNG


async def test_an_image_over_the_cap_is_left_out_with_its_size_and_the_limit(files: str) -> None:
    declared = await inline(f"{files}/cat.png", max_bytes=len(PNG) - 1)
    streamed = await inline(f"{files}/big.png", max_bytes=4096)  # no Content-Length: counted as read
    for left_out, name in ((declared, "cat.png"), (streamed, "big.png")):
        assert isinstance(left_out, ImageLeftOut)
        assert name in left_out.note and "too large" in left_out.note and "limit" in left_out.note


async def test_what_is_not_an_image_or_not_there_is_named_not_dropped(files: str) -> None:
    not_image = await inline(f"{files}/notes.txt")
    missing = await inline(f"{files}/gone.png")
    unreachable = await inline("http://127.0.0.1:9/cat.png")
    assert isinstance(not_image, ImageLeftOut) and "text/plain is not an image" in not_image.note
    assert isinstance(missing, ImageLeftOut) and "gone.png" in missing.note and "HTTP 404" in missing.note
    assert isinstance(unreachable, ImageLeftOut) and "could not be downloaded" in unreachable.note
