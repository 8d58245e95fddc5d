"""Image generation for /imagine: size choices, the API call, decoding, and errors as one sentence.

GPT image models always answer with base64 (`b64_json`), never URLs, so the images are decoded here
and handed on as PNG bytes.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Literal, get_args

import openai
from openai import AsyncOpenAI, omit

from bot.engine.openai_errors import describe_error
from bot.errors import UserFacingError

SizeChoice = Literal["square", "landscape", "portrait", "auto"]
SIZE_CHOICES: tuple[SizeChoice, ...] = get_args(SizeChoice)
QualityChoice = Literal["auto", "low", "medium", "high"]
QUALITY_CHOICES: tuple[QualityChoice, ...] = get_args(QualityChoice)
"""What a person may ask for: more quality costs more tokens (the guild's usage counts them)."""
MAX_IMAGES = 4
MAX_PROMPT_CHARS = 4000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# What each choice means per model family; every gpt-image model takes these three plus "auto".
_GPT_IMAGE_SIZES: dict[SizeChoice, str] = {
    "square": "1024x1024",
    "landscape": "1536x1024",
    "portrait": "1024x1536",
    "auto": "auto",
}
_SIZES_BY_FAMILY: dict[str, dict[SizeChoice, str]] = {"gpt-image": _GPT_IMAGE_SIZES}
_CONTENT_POLICY_CODES = frozenset(
    {"moderation_blocked", "content_policy_violation", "image_generation_user_error"}
)


@dataclass(frozen=True, slots=True)
class GeneratedImages:
    """PNG files and the tokens the call used (0 when the API does not report them)."""

    images: tuple[bytes, ...]
    size: str
    input_tokens: int = 0
    output_tokens: int = 0
    revised_prompt: str | None = None
    """The prompt the model says it drew from, when it rewrote the person's (shown beside the images)."""
    quality: str | None = None


def api_size(model: str, choice: SizeChoice) -> str:
    """The `size` parameter for `model` (unknown families get the gpt-image sizes)."""
    for family, sizes in _SIZES_BY_FAMILY.items():
        if model.startswith(family):
            return sizes[choice]
    return _GPT_IMAGE_SIZES[choice]


async def generate_images(
    client: AsyncOpenAI,
    *,
    model: str,
    prompt: str,
    size: SizeChoice,
    count: int,
    quality: QualityChoice = "auto",
) -> GeneratedImages:
    """Generate `count` images; raises `UserFacingError` saying plainly why it could not."""
    prompt = prompt.strip()
    if not prompt:
        raise UserFacingError("Describe the image you want: the prompt is empty.")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise UserFacingError(
            f"The prompt is too long ({len(prompt):,} characters; at most {MAX_PROMPT_CHARS:,})."
        )
    if not 1 <= count <= MAX_IMAGES:
        raise UserFacingError(f"Ask for between 1 and {MAX_IMAGES} images.")
    if quality not in QUALITY_CHOICES:
        raise UserFacingError(f"Unknown quality {quality!r}; choose {', '.join(QUALITY_CHOICES)}.")
    try:
        response = await client.images.generate(
            model=model,
            prompt=prompt,
            n=count,
            size=api_size(model, size),
            quality=quality if quality != "auto" else omit,
        )
    except openai.OpenAIError as exc:
        raise UserFacingError(describe_image_error(exc, model)) from exc
    data = response.data or []
    if any(item.b64_json is None and item.url for item in data):
        raise UserFacingError(
            "The image server answered with links instead of the images; it must answer with b64_json,"
            " as OpenAI's gpt-image models do."
        )
    images = tuple(_decode(item.b64_json) for item in data)
    if not images:
        raise UserFacingError("The image model answered without an image; please try again.")
    usage = response.usage
    revised = next((item.revised_prompt for item in data if item.revised_prompt), None)
    return GeneratedImages(
        images=images,
        size=response.size or api_size(model, size),
        input_tokens=usage.input_tokens if usage else 0,
        output_tokens=usage.output_tokens if usage else 0,
        revised_prompt=revised.strip() if revised and revised.strip() != prompt else None,
        quality=response.quality,
    )


def describe_image_error(exc: BaseException, model: str) -> str:
    """Content policy, rate limit, unknown model... as one sentence for the user."""
    if isinstance(exc, openai.BadRequestError) and (
        _code(exc) in _CONTENT_POLICY_CODES or "safety system" in str(exc).lower()
    ):
        return "The image model refused this prompt under its content policy; try describing it differently."
    kind, reason = describe_error(exc, model=model)
    if kind == "rate_limited":
        return "The image model is rate-limiting the bot right now; please try again in a minute."
    if kind == "model_not_found":
        return f"The image model `{model}` is not available; an admin can pick another (image_model)."
    return reason


def _code(exc: openai.APIStatusError) -> str | None:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("code"), str):
            return str(error["code"])
    code = getattr(exc, "code", None)
    return code if isinstance(code, str) else None


def _decode(data: str | None) -> bytes:
    try:
        image = base64.b64decode(data or "", validate=True)
    except (binascii.Error, ValueError):
        image = b""
    if not image.startswith(PNG_SIGNATURE):
        raise UserFacingError("The image model sent something that is not a PNG image; please try again.")
    return image
