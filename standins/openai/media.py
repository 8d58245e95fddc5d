"""Media: image generation (sizes each model accepts, real PNGs) and the files a code-interpreter
container holds."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import time
from typing import Any

from aiohttp import web

from ..png import encode_png
from .records import StoredContainerFile
from .script import Drop, HttpError, ImageReply
from .state import OpenAIState
from .tokens import Json, count_tokens
from .wire import BadRequest, Call, fail, json_response

_STANDARD_IMAGE_SIZES = frozenset({"1024x1024", "1536x1024", "1024x1536"})
_FLEXIBLE_SIZE_MODELS = ("gpt-image-2", "gpt-image-2.5", "gpt-image-2.6")


def _image_size(model: str, size: Any) -> tuple[int, int]:
    if size == "auto":
        return 1024, 1024
    if size in _STANDARD_IMAGE_SIZES:
        width, height = (int(n) for n in size.split("x"))
        return width, height
    match = re.fullmatch(r"(\d+)x(\d+)", size) if isinstance(size, str) else None
    if match and model.startswith(_FLEXIBLE_SIZE_MODELS):
        width, height = int(match[1]), int(match[2])
        if (
            width % 16 == 0
            and height % 16 == 0
            and 1 / 3 <= width / max(height, 1) <= 3
            and max(width, height) <= 3840
            and min(width, height) <= 2160
        ):
            return width, height
    raise BadRequest(
        f"Invalid value: '{size}'. Supported values are: '1024x1024', '1024x1536', '1536x1024', and 'auto'.",
        param="size",
        code="invalid_value",
    )


class MediaApi(OpenAIState):
    """/v1/images/generations and /v1/containers/{id}/files."""

    async def _generate_images(self, call: Call) -> web.StreamResponse:
        body = call.body
        if "model" not in body:
            body = {**body, "model": "dall-e-2"}  # the API's historical default, now retired
        model = self._check_model(body)
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise BadRequest("Missing required parameter: 'prompt'.", param="prompt")
        if body.get("response_format") is not None:
            raise BadRequest(
                "Unknown parameter: 'response_format'.", param="response_format", code="unknown_parameter"
            )
        count = body.get("n") or 1
        if not isinstance(count, int) or not 1 <= count <= 10:
            raise BadRequest(
                f"Invalid 'n': integer above maximum value. Expected a value <= 10, got {count}.", param="n"
            )
        size = body.get("size") or "auto"
        width, height = _image_size(model, size)
        if body.get("quality") not in (None, "auto", "low", "medium", "high", "xhigh", "max"):
            raise BadRequest(
                f"Invalid value: '{body.get('quality')}'. Supported values are: 'low', 'medium', 'high',"
                " 'xhigh', 'max', and 'auto'.",
                param="quality",
                code="invalid_value",
            )
        step = await self.images.next_step(body)
        if isinstance(step, HttpError | Drop):
            return await fail(call.request, step)
        if step is not None and not isinstance(step, ImageReply):
            raise TypeError(f"an images step must be ImageReply, HttpError, Drop or None, not {step!r}")
        reply = step or ImageReply()
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        pixel_width, pixel_height = reply.size or (width, height)
        images = []
        for index in range(count):
            digest = hashlib.blake2b(f"{prompt}\x00{index}".encode(), digest_size=3).digest()
            rgb = reply.rgb or (digest[0], digest[1], digest[2])
            png = encode_png(pixel_width, pixel_height, rgb)
            image: Json = {"b64_json": base64.b64encode(png).decode()}
            if reply.revised_prompt is not None:
                image["revised_prompt"] = reply.revised_prompt
            images.append(image)
        quality = (
            body.get("quality")
            if body.get("quality") in ("low", "medium", "high", "xhigh", "max")
            else "medium"
        )
        prompt_tokens = count_tokens(prompt)
        output_tokens = 1056 * count
        return json_response(
            {
                "created": int(time.time()),
                "data": images,
                "background": "transparent" if body.get("background") == "transparent" else "opaque",
                "output_format": "png",
                "quality": quality,
                "size": f"{width}x{height}",
                "usage": {
                    "input_tokens": prompt_tokens,
                    "input_tokens_details": {"image_tokens": 0, "text_tokens": prompt_tokens},
                    "output_tokens": output_tokens,
                    "output_tokens_details": {"image_tokens": output_tokens, "text_tokens": 0},
                    "total_tokens": prompt_tokens + output_tokens,
                },
            }
        )

    def _container(self, container_id: str) -> dict[str, StoredContainerFile]:
        container = self.containers.get(container_id)
        if container is None:
            raise BadRequest(f"Container with id '{container_id}' not found.", status=404)
        return container

    def _container_file(self, call: Call) -> StoredContainerFile:
        stored = self._container(call.params["cid"]).get(call.params["fid"])
        if stored is None:
            raise BadRequest(f"File with id '{call.params['fid']}' not found.", status=404)
        return stored

    async def _list_container_files(self, call: Call) -> web.StreamResponse:
        files = [f.as_json() for f in self._container(call.params["cid"]).values()]
        return json_response(
            {
                "object": "list",
                "data": files,
                "first_id": files[0]["id"] if files else None,
                "last_id": files[-1]["id"] if files else None,
                "has_more": False,
            }
        )

    async def _get_container_file(self, call: Call) -> web.StreamResponse:
        return json_response(self._container_file(call).as_json())

    async def _get_container_file_content(self, call: Call) -> web.StreamResponse:
        return web.Response(body=self._container_file(call).data, content_type="application/octet-stream")
