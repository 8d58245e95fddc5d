"""/imagine: the core against the stand-in OpenAI, then the command end to end through Discord."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.errors import UserFacingError
from bot.images import PNG_SIGNATURE, SIZE_CHOICES, api_size, generate_images
from standins.discord import CALLBACK_DEFERRED_MESSAGE, InteractionRecord, StoredMessage
from standins.openai import FakeOpenAI, HttpError, ImageReply
from standins.png import read_png
from tests.conftest import ServicesFactory
from tests.harness import Harness, running_bot

MODEL = "gpt-image-2"
EXTENSIONS = ("cogs.imagine",)


def png_size(data: bytes) -> tuple[int, int]:
    info = read_png(data)
    return info.width, info.height


# --------------------------------------------------------------------------------------------- core


@pytest.mark.parametrize(
    ("choice", "size"),
    [("square", "1024x1024"), ("landscape", "1536x1024"), ("portrait", "1024x1536"), ("auto", "auto")],
)
def test_size_choices_map_to_the_models_sizes(choice: str, size: str) -> None:
    assert choice in SIZE_CHOICES
    assert api_size(MODEL, choice) == size
    assert api_size("gpt-image-1-mini", choice) == size


async def test_generated_images_are_decoded_pngs(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    result = await generate_images(
        services.openai, model=MODEL, prompt="a red fox", size="landscape", count=3
    )
    assert len(result.images) == 3
    assert all(image.startswith(PNG_SIGNATURE) for image in result.images)
    assert {png_size(image) for image in result.images} == {(1536, 1024)}
    assert result.size == "1536x1024" and result.output_tokens > 0 and result.input_tokens > 0
    request = fake_openai.requests_to("/v1/images/generations")[0].json
    assert request == {"model": MODEL, "prompt": "a red fox", "n": 3, "size": "1536x1024"}


@pytest.mark.parametrize(
    ("failure", "model", "sentence"),
    [
        (
            HttpError(400, "Your request was rejected by the safety system.", code="moderation_blocked"),
            MODEL,
            "refused this prompt under its content policy",
        ),
        (HttpError(429, "Rate limit reached", code="rate_limit_exceeded"), MODEL, "rate-limiting the bot"),
        (HttpError(429, "You exceeded your quota", code="insufficient_quota"), MODEL, "quota is used up"),
        (HttpError(500, "boom"), MODEL, "had a problem"),
        (None, "dall-e-3", "image model `dall-e-3` is not available"),
    ],
)
async def test_api_errors_become_one_clear_sentence(
    make_services: ServicesFactory,
    fake_openai: FakeOpenAI,
    failure: HttpError | None,
    model: str,
    sentence: str,
) -> None:
    services = await make_services(openai={"max_retries": 0})
    if failure is not None:
        fake_openai.images.push(failure)
    with pytest.raises(UserFacingError, match=sentence):
        await generate_images(services.openai, model=model, prompt="a fox", size="square", count=1)


async def test_bad_requests_are_refused_before_calling_the_api(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    with pytest.raises(UserFacingError, match="empty"):
        await generate_images(services.openai, model=MODEL, prompt="   ", size="square", count=1)
    with pytest.raises(UserFacingError, match="between 1 and 4"):
        await generate_images(services.openai, model=MODEL, prompt="fox", size="square", count=5)
    assert fake_openai.requests_to("/v1/images") == []


# ---------------------------------------------------------------------------------- /imagine on Discord


async def imagine(h: Harness, **options: object) -> InteractionRecord:
    record = await h.discord.slash_command(
        "imagine", {"prompt": "a lighthouse at dusk", **options}, user=h.alice, channel_id=h.general.id
    )
    await h.discord.wait_for(lambda: bool(record.followup_ids))
    return record


def answer(h: Harness, record: InteractionRecord) -> StoredMessage:
    return h.discord.message(record.followup_ids[-1])


async def test_imagine_answers_with_png_attachments_after_acknowledging(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    acknowledged_before_generating: list[bool] = []
    async with running_bot(tmp_path, fake_openai, extensions=EXTENSIONS) as h:

        def check_acknowledged(body: dict[str, object]) -> ImageReply:
            acknowledged_before_generating.append(
                all(r.acknowledged for r in h.discord.interactions.values())
            )
            return ImageReply(size=(8, 8))

        fake_openai.images.push(check_acknowledged)
        record = await imagine(h, size="portrait", count=2)

        assert acknowledged_before_generating == [True]
        assert record.response_type == CALLBACK_DEFERRED_MESSAGE and not record.ephemeral
        message = answer(h, record)
        assert not message.ephemeral and "a lighthouse at dusk" in message.content
        assert [upload.filename for upload in message.files] == ["imagine-1.png", "imagine-2.png"]
        assert all(upload.data.startswith(PNG_SIGNATURE) for upload in message.files)
        assert message.allowed_mentions == {"parse": []}
        request = fake_openai.requests_to("/v1/images/generations")[0].json
        assert (request["model"], request["n"], request["size"]) == ("gpt-image-2", 2, "1024x1536")
        usage = await h.services.storage.usage.user_total(
            h.general.guild_id, h.alice.id, since_day="2000-01-01"
        )
        assert usage.output_tokens == 2 * 1056


async def test_quality_is_asked_for_and_a_rewritten_prompt_is_shown_beside_the_images(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    revised = "A white lighthouse on a rocky shore at dusk, warm light in its lantern"
    async with running_bot(tmp_path, fake_openai, extensions=EXTENSIONS) as h:
        fake_openai.images.push(ImageReply(size=(8, 8), revised_prompt=revised))
        message = answer(h, await imagine(h, quality="high"))
        assert f"**Drawn from:** {revised}" in message.content and "Quality: high" in message.content
        fake_openai.images.push(ImageReply(size=(8, 8)))
        plain = answer(h, await imagine(h))
        assert "Drawn from" not in plain.content and "Quality" not in plain.content
    first, second = (r.json for r in fake_openai.requests_to("/v1/images/generations"))
    assert first["quality"] == "high" and "quality" not in second  # auto: the model's own default


async def test_an_unknown_quality_is_refused_before_the_api_is_called(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    with pytest.raises(UserFacingError):
        await generate_images(
            services.openai,
            model=MODEL,
            prompt="fox",
            size="square",
            count=1,
            quality="ultra",  # type: ignore[arg-type]
        )
    assert fake_openai.requests_to("/v1/images/generations") == []


async def test_content_policy_refusal_is_a_private_clear_message(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with running_bot(tmp_path, fake_openai, extensions=EXTENSIONS) as h:
        fake_openai.images.push(HttpError(400, "Rejected by the safety system", code="moderation_blocked"))
        record = await imagine(h)
        message = answer(h, record)
        assert message.ephemeral and "content policy" in message.content
        placeholder = h.discord.message(record.original_message_id or 0)
        assert placeholder.deleted  # nothing public is left behind
        assert not message.files


async def test_imagine_respects_disabled_images_cooldown_and_budget(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with running_bot(
        tmp_path, fake_openai, extensions=EXTENSIONS, defaults={"images_enabled": False}
    ) as h:
        message = answer(h, await imagine(h))
        assert message.ephemeral and "turned off" in message.content
        assert fake_openai.requests_to("/v1/images") == []

    async with running_bot(
        tmp_path / "b", fake_openai, extensions=EXTENSIONS, defaults={"user_cooldown_s": 600}
    ) as h:
        fake_openai.images.push(ImageReply(size=(4, 4)))
        assert answer(h, await imagine(h)).files
        second = answer(h, await imagine(h))
        assert second.ephemeral and "Slow down" in second.content
        assert len(fake_openai.requests_to("/v1/images")) == 1

    async with running_bot(
        tmp_path / "c", fake_openai, extensions=EXTENSIONS, defaults={"daily_token_budget_user": 100}
    ) as h:
        await h.services.storage.usage.record(
            guild_id=h.general.guild_id, user_id=h.alice.id, input_tokens=60, output_tokens=40
        )
        refused = answer(h, await imagine(h))
        assert refused.ephemeral and "daily token budget" in refused.content
        assert len(fake_openai.requests_to("/v1/images")) == 1
