"""Checking a member's message with OpenAI moderation before it reaches the model.

A guild chooses `moderation`: `off`, `flag` (the turn goes on; moderators are told) or `block` (the
turn is not sent). When the moderation API itself fails, `moderation_fail_open` decides: let the
message through (logged), or hold it back and tell the user to try again. Either way nothing is lost
silently.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from openai import AsyncOpenAI
from openai.types import ModerationCreateResponse

from bot.config import GuildSettings
from bot.engine.turn import UserTurn

log = logging.getLogger(__name__)

MAX_CATEGORIES_NAMED = 4
MODERATION_TIMEOUT_S = 15.0
"""Per request: a check that hangs must not hold the conversation for the client's whole timeout."""

Action = Literal["allow", "flag", "block"]


@dataclass(frozen=True, slots=True)
class ModerationVerdict:
    """What to do with a turn: `allow`, `flag` (go on, tell moderators) or `block` (do not send).

    `checked` is False when the moderation API failed and the guild's fail-open setting decided.
    """

    action: Action
    categories: tuple[str, ...] = ()
    checked: bool = True

    @property
    def reason(self) -> str:
        """One sentence for the user whose turn was blocked."""
        if not self.checked:
            return (
                "Your message was not sent to the assistant because the safety check is not answering "
                "right now; please try again in a moment."
            )
        return (
            "Your message was not processed: the safety check flagged it for "
            f"{describe_categories(self.categories)}."
        )


ALLOW = ModerationVerdict("allow")


class Moderator:
    """Runs `moderations.create` on a turn's text and images with the configured model."""

    def __init__(self, client: AsyncOpenAI, *, model: str) -> None:
        self._client = client.with_options(timeout=MODERATION_TIMEOUT_S)
        self._model = model

    async def check(self, turn: UserTurn, settings: GuildSettings) -> ModerationVerdict:
        """The verdict for `turn` under the guild's settings; never raises for an API failure."""
        if settings.moderation == "off":
            return ALLOW
        requests = moderation_inputs(turn)
        if not requests:
            return ALLOW
        try:
            async with asyncio.TaskGroup() as group:  # one failure cancels the other requests
                tasks = [
                    group.create_task(
                        self._client.moderations.create(model=self._model, input=cast(Any, request))
                    )
                    for request in requests
                ]
        except Exception as exc:  # any failure of the check is the fail-open/closed decision's to handle
            cause = exc.exceptions[0] if isinstance(exc, ExceptionGroup) else exc
            verdict = ModerationVerdict("allow" if settings.moderation_fail_open else "block", checked=False)
            log.warning(
                "Moderation check of message %s failed (%s); %s",
                turn.message_id,
                type(cause).__name__,
                "letting it through" if verdict.action == "allow" else "holding it back",
                exc_info=cause,
            )
            return verdict
        responses = [task.result() for task in tasks]
        categories = flagged_categories(responses)
        if not categories:
            return ALLOW
        return ModerationVerdict("block" if settings.moderation == "block" else "flag", categories)


def moderation_inputs(turn: UserTurn) -> list[list[dict[str, Any]]]:
    """The requests that check a turn: its text with the first image, then each further image alone.

    One image per request, the shape OpenAI documents for image moderation.
    """
    images = [{"type": "image_url", "image_url": {"url": url}} for url in turn.image_urls]
    first: list[dict[str, Any]] = []
    if turn.text.strip():
        first.append({"type": "text", "text": turn.text})
    if images:
        first.append(images.pop(0))
    requests = [first] if first else []
    requests.extend([image] for image in images)
    return requests


def flagged_categories(responses: Sequence[ModerationCreateResponse]) -> tuple[str, ...]:
    """The categories any result flagged, in the API's order, without repeats."""
    found: dict[str, None] = {}
    for response in responses:
        for result in response.results:
            named = [name for name, hit in result.categories.model_dump(by_alias=True).items() if hit is True]
            if result.flagged and not named:
                named = ["unspecified"]
            found.update(dict.fromkeys(named))
    return tuple(found)


def describe_categories(categories: Sequence[str]) -> str:
    """`("harassment", "violence/graphic")` -> "harassment and violence (graphic)"."""
    names = [name.replace("/", " (") + ")" if "/" in name else name for name in categories]
    if len(names) > MAX_CATEGORIES_NAMED:
        names = [*names[:MAX_CATEGORIES_NAMED], f"{len(names) - MAX_CATEGORIES_NAMED} more"]
    if len(names) <= 1:
        return names[0] if names else "unspecified reasons"
    return ", ".join(names[:-1]) + " and " + names[-1]
