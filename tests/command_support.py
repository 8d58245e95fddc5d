"""Running slash commands against the bot in the end-to-end harness and reading what it answered."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bot.discord.confirmation import ANSWER_ID
from standins.discord import (
    CALLBACK_AUTOCOMPLETE,
    CALLBACK_MESSAGE,
    CALLBACK_MODAL,
    FakeUser,
    InteractionRecord,
    StoredMessage,
)
from tests.harness import Harness

WAIT_S = 10.0
ACK_DEADLINE_S = 3.0


@dataclass
class Answer:
    """The message a command was answered with (after any deferral), and its interaction."""

    record: InteractionRecord
    message: StoredMessage

    @property
    def ephemeral(self) -> bool:
        return self.message.ephemeral

    @property
    def embeds(self) -> list[dict[str, Any]]:
        return list(self.message.data.get("embeds") or [])

    @property
    def text(self) -> str:
        """Content plus every embed's title, description, field names and values, footer."""
        parts = [self.message.content]
        for embed in self.embeds:
            parts += [embed.get("title") or "", embed.get("description") or ""]
            for field in embed.get("fields") or []:
                parts += [field["name"], field["value"]]
            parts.append((embed.get("footer") or {}).get("text") or "")
        return "\n".join(part for part in parts if part)

    def field(self, name: str) -> str:
        """The value of the first embed field called `name`."""
        for embed in self.embeds:
            for field in embed.get("fields") or []:
                if field["name"] == name:
                    return str(field["value"])
        raise AssertionError(f"no field {name!r} in {json.dumps(self.embeds)[:500]}")


def _answered(record: InteractionRecord) -> bool:
    if record.response_type in (CALLBACK_MESSAGE, CALLBACK_MODAL, CALLBACK_AUTOCOMPLETE):
        return True
    return bool(record.followup_ids)


async def settle(h: Harness, record: InteractionRecord) -> InteractionRecord:
    """Until the interaction has its answer (message, followup, modal or choices), acknowledged in time."""
    await h.discord.wait_for(lambda: _answered(record), timeout=WAIT_S)
    assert record.ack_latency_s is not None and record.ack_latency_s < ACK_DEADLINE_S
    return record


def answer_of(h: Harness, record: InteractionRecord) -> Answer:
    message_id = record.followup_ids[-1] if record.followup_ids else record.original_message_id
    assert message_id is not None, "the interaction was not answered with a message"
    message = h.discord.message(message_id)
    assert not message.loading
    return Answer(record, message)


async def run(
    h: Harness,
    name: str,
    options: dict[str, Any] | None = None,
    *,
    user: FakeUser,
    channel_id: int | None = None,
) -> Answer:
    """Run `/name` (``"group sub"`` for subcommands) and return the message that answered it."""
    record = await h.discord.slash_command(
        name, options or {}, user=user, channel_id=channel_id or h.general.id
    )
    return answer_of(h, await settle(h, record))


async def choices(
    h: Harness, name: str, options: dict[str, Any], *, focused: str, user: FakeUser
) -> list[dict[str, Any]]:
    """The autocomplete choices the bot offers while `user` types option `focused`."""
    record = await h.discord.autocomplete(name, options, focused=focused, user=user, channel_id=h.general.id)
    await settle(h, record)
    return list(record.autocomplete_choices or [])


def answer_buttons(message: StoredMessage) -> dict[str, bool]:
    """A confirmation's buttons: "confirm" / "cancel" -> disabled."""
    found: dict[str, bool] = {}
    for row in message.components:
        for button in row.get("components", []):
            match = ANSWER_ID.fullmatch(button.get("custom_id", ""))
            if match is not None:
                found[match["answer"]] = bool(button.get("disabled"))
    return found


def answer_id_of(message: StoredMessage, answer: str) -> str:
    """The custom_id of a confirmation's "confirm" or "cancel" button (it carries the question's token)."""
    for row in message.components:
        for button in row.get("components", []):
            match = ANSWER_ID.fullmatch(button.get("custom_id", ""))
            if match is not None and match["answer"] == answer:
                return str(button["custom_id"])
    raise AssertionError(f"no {answer} button on message {message.id}")
