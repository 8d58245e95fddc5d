"""Moderations: verdicts a test scripts (``ModerationResult``), applied to text and image inputs the way
the API reports which categories apply to which input type."""

from __future__ import annotations

import asyncio
import secrets

from aiohttp import web

from .script import MODERATION_CATEGORIES, Drop, HttpError, ModerationResult
from .state import OpenAIState
from .tokens import Json
from .wire import BadRequest, Call, fail, json_response

_IMAGE_MODERATION_CATEGORIES = frozenset(
    {"self-harm", "self-harm/instructions", "self-harm/intent", "sexual", "violence", "violence/graphic"}
)


def _moderation_json(result: ModerationResult, input_types: set[str]) -> Json:
    flagged = set(result.flagged_categories)
    applied = {
        category: [
            kind
            for kind in ("text", "image")
            if kind in input_types and (kind == "text" or category in _IMAGE_MODERATION_CATEGORIES)
        ]
        for category in MODERATION_CATEGORIES
    }
    return {
        "flagged": bool(flagged),
        "categories": {category: category in flagged for category in MODERATION_CATEGORIES},
        "category_scores": {
            category: 0.97 if category in flagged else 1e-5 for category in MODERATION_CATEGORIES
        },
        "category_applied_input_types": applied,
    }


class ModerationApi(OpenAIState):
    """/v1/moderations."""

    async def _create_moderation(self, call: Call) -> web.StreamResponse:
        body = call.body
        model = self._check_model(body, required=False) or "omni-moderation-latest"
        raw = body.get("input")
        groups: list[set[str]]  # the input types of each result
        if isinstance(raw, str):
            groups = [{"text"}]
        elif isinstance(raw, list) and raw and all(isinstance(x, str) for x in raw):
            groups = [{"text"} for _ in raw]
        elif isinstance(raw, list) and raw and all(isinstance(x, dict) for x in raw):
            kinds = {x.get("type") for x in raw}
            if not kinds <= {"text", "image_url"}:
                raise BadRequest(
                    "Invalid 'input': parts must be of type 'text' or 'image_url'.", param="input"
                )
            groups = [{"text" if kind == "text" else "image" for kind in kinds}]
        else:
            raise BadRequest("Missing required parameter: 'input'.", param="input")
        step = await self.moderations.next_step(body)
        if isinstance(step, HttpError | Drop):
            return await fail(call.request, step)
        results = step if isinstance(step, list) else [step or ModerationResult()] * len(groups)
        checked = [r for r in results if isinstance(r, ModerationResult)]
        if len(checked) != len(groups) or len(checked) != len(results):
            raise TypeError(
                f"a moderation step must be ModerationResult(s) for {len(groups)} inputs, not {step!r}"
            )
        delay = max(r.delay_s for r in checked)
        if delay:
            await asyncio.sleep(delay)
        return json_response(
            {
                "id": f"modr-{secrets.token_hex(12)}",
                "model": model,
                "results": [_moderation_json(r, g) for r, g in zip(checked, groups, strict=True)],
            }
        )
