"""What one turn is made of: the user's message and the context it arrives in."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from bot.config import GuildSettings
from bot.storage.conversations import ConversationRecord
from bot.tooling import Confirmer

FileUse = Literal["code_interpreter", "input_file"]
"""Where an attached file goes as a file: the code interpreter's container, or the message itself."""


@dataclass(frozen=True, slots=True)
class TurnFile:
    """An attachment that reaches the model as a file (uploaded through the Files API), not as text."""

    filename: str
    content_type: str
    data: bytes
    use: FileUse


@dataclass(frozen=True, slots=True)
class UserTurn:
    """A user's message as the model should see it."""

    text: str
    author_id: int
    author_name: str
    image_urls: tuple[str, ...] = ()
    message_id: int | None = None
    files: tuple[TurnFile, ...] = ()
    notices: tuple[str, ...] = ()
    """One sentence per attachment the turn could not use (too large, an unreadable type): shown with
    the reply, so nothing a person attached is dropped silently."""

    def labelled_text(self) -> str:
        """The text with the speaker's name: several people may share one conversation."""
        return f"{self.author_name}: {self.text}" if self.text else f"{self.author_name}:"


@dataclass(frozen=True, slots=True)
class Speaker:
    """Who a reply is shown as: a named assistant's name and avatar. Replies of the guild's default
    assistant have none and show as the bot itself."""

    name: str
    avatar_url: str | None = None


@dataclass(frozen=True, slots=True)
class TurnContext:
    """Where the turn happens and under which settings; `confirmer` asks before side effects."""

    guild_id: int | None
    channel_id: int
    settings: GuildSettings
    confirmer: Confirmer | None = None


@dataclass(frozen=True, slots=True)
class TurnRequest:
    """Everything a backend needs to run one turn."""

    conversation: ConversationRecord
    turn: UserTurn
    context: TurnContext
    turn_id: int
    metadata: dict[str, str] = field(default_factory=dict)
