"""Named assistants: several personas per guild, each with its own instructions, model and tools.

The guild's settings are the default assistant (no name, shown as the bot itself). A named one only
overrides the model, the instructions and the tools (`effective`), so every other setting (limits,
moderation, backend) stays the guild's. `AssistantProfile` is the one schema of an assistant: stored
rows, slash options and the edit modal are all validated by it.

Which assistant answers: a channel may have one (`/assistant use` there); a thread keeps the one it
started with (recorded at its first turn, with who started it, changed only by `/assistant use` in
it); a DM uses the default unless the person picks one of a server they share with the bot. A DM
pick's turns are that server's (its settings, budgets, usage, knowledge and tools; `Resolved.guild_for`)
while the conversation stays the DM's, and the pick holds only while the person is in the server.
Every message resolves its assistant with one or two indexed queries: no choice is cached, so several
processes always agree; only Discord's answers about membership are kept a few minutes per process.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import unicodedata
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Protocol
from urllib.parse import urlsplit

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot.config import ALL_TOOLS, HOSTED_TOOLS, GuildSettings, hosted_tools_problem
from bot.engine.turn import Speaker
from bot.errors import UserFacingError
from bot.guild_settings import ModelCatalog, SettingsService
from bot.storage.assistants import (
    AssistantChange,
    AssistantStore,
    ChoiceScope,
    Deletion,
    StoredAssistant,
    StoredChoice,
)

log = logging.getLogger(__name__)

MAX_NAME_CHARS = 32  # Discord's limit for a webhook's username
MAX_AVATAR_URL_CHARS = 2048
DEFAULT_NAME = "default"
"""What `/assistant use` takes to go back to the guild's own settings (so no assistant is called so)."""
KNOWLEDGE_TOOL = "knowledge"
RESERVED_NAMES = frozenset({"everyone", "here", DEFAULT_NAME})
FORBIDDEN_NAME_PARTS = ("discord", "clyde")  # Discord refuses webhook usernames containing these
FORBIDDEN_NAME_CHARS = ("@", "#", ":", "```")  # mentions, and ':' separates guild and name in a DM pick
MAX_ECHO_CHARS = 60
MAX_ERROR_CHARS = 500
MEMBERSHIP_TTL_S = 180.0
"""How long this process trusts an answer to "is this person in that server?" (a DM asks each message)."""
MAX_MEMBERSHIP_ANSWERS = 10_000
MAX_MEMBERSHIP_LOOKUPS = 10
"""Servers asked at once (one REST call each) whether a person is a member, e.g. per DM autocomplete."""

assert KNOWLEDGE_TOOL in ALL_TOOLS, "the knowledge switch turns on the knowledge tool family"


class AssistantProfile(BaseModel):
    """One named assistant, as an admin defines it. None for instructions or tools: the guild's own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="What it is called, and shown as (1 to 32 characters).")
    model: Annotated[str, Field(min_length=1, max_length=100)] = Field(description="Model it answers with.")
    instructions: Annotated[str, Field(min_length=1, max_length=8000)] | None = Field(
        default=None, description="Its system prompt; none: the server's instructions."
    )
    enabled_tools: tuple[str, ...] | None = Field(
        default=None, description="Tools it may use; none: the server's tools."
    )
    knowledge: bool = Field(default=True, description="Whether it may search the server's knowledge.")
    avatar_url: str | None = Field(default=None, description="An https image URL it is shown with.")

    @property
    def key(self) -> str:
        """The name as compared: names are unique per guild whatever their case."""
        return name_key(self.name)

    @field_validator("name", mode="before")
    @classmethod
    def _usable_name(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        return check_name(value)

    @field_validator("instructions", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("enabled_tools", mode="before")
    @classmethod
    def _known_tools(cls, value: object) -> object:
        """The guild settings' rule (the same names, `ALL_TOOLS`); `knowledge` has its own switch."""
        if value is None:
            return None
        checked = GuildSettings._known_tools(value)
        if isinstance(checked, tuple):
            return tuple(name for name in checked if name != KNOWLEDGE_TOOL)
        return checked

    @field_validator("avatar_url", mode="before")
    @classmethod
    def _https_image(cls, value: object) -> object:
        if value is None or not isinstance(value, str):
            return value
        return check_avatar_url(value)


def check_name(text: str) -> str:
    """An assistant name as a Discord webhook may show it (whitespace tidied), or ValueError saying why."""
    name = " ".join(text.split())
    if not name:
        raise ValueError("give it a name")
    if len(name) > MAX_NAME_CHARS:
        raise ValueError(f"a name has at most {MAX_NAME_CHARS} characters")
    if any(unicodedata.category(char).startswith("C") for char in name):
        raise ValueError("a name cannot contain control or invisible characters")
    lowered = name.lower()
    if lowered in RESERVED_NAMES:
        raise ValueError(f"{name!r} is a reserved word, not a usable name")
    banned = next((part for part in FORBIDDEN_NAME_PARTS if part in lowered), None)
    if banned is not None:
        raise ValueError(f"Discord does not allow {banned!r} in a name")
    char = next((char for char in FORBIDDEN_NAME_CHARS if char in name), None)
    if char is not None:
        raise ValueError(f"a name cannot contain {char!r}")
    return name


def check_avatar_url(text: str) -> str | None:
    """An https URL with a host (blank: no avatar), or ValueError saying why."""
    url = text.strip()
    if not url:
        return None
    if len(url) > MAX_AVATAR_URL_CHARS:
        raise ValueError(f"an avatar URL has at most {MAX_AVATAR_URL_CHARS} characters")
    if re.search(r"\s", url):
        raise ValueError("an avatar URL cannot contain spaces")
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        raise ValueError("the avatar is not a valid URL") from None
    if parts.scheme.lower() != "https":
        raise ValueError("the avatar must be an https:// URL")
    if not host:
        raise ValueError("the avatar URL has no host")
    return url


def name_key(name: str) -> str:
    return " ".join(name.split()).casefold()


@dataclass(frozen=True, slots=True)
class Assistant:
    """A stored assistant: its id (what channels and threads point to) and its profile."""

    id: int
    guild_id: int
    profile: AssistantProfile

    @property
    def name(self) -> str:
        return self.profile.name

    @property
    def speaker(self) -> Speaker:
        return Speaker(self.profile.name, self.profile.avatar_url)


@dataclass(frozen=True, slots=True)
class Resolved:
    """Who answers a message, and the settings the turn runs under."""

    assistant: Assistant | None
    settings: GuildSettings
    notice: str | None = None
    """One sentence for the person with this reply (a DM pick that no longer holds)."""

    @property
    def speaker(self) -> Speaker | None:
        """None for the default assistant: its replies show as the bot itself."""
        return None if self.assistant is None else self.assistant.speaker

    @property
    def name(self) -> str | None:
        return None if self.assistant is None else self.assistant.name

    def guild_for(self, where: int | None) -> int | None:
        """The guild the turn runs as (`TurnContext.guild_id`: budgets, usage, knowledge, tools):
        the answering assistant's, else `where` the message is. A DM pick runs under its server's
        settings, so it is that server's turn too; its conversation stays the DM's."""
        return where if self.assistant is None else self.assistant.guild_id


@dataclass(frozen=True, slots=True)
class Removed:
    """An assistant deleted, and how many channels and threads went back to the default."""

    change: AssistantChange
    channels: int
    threads: int


class MemberLookup(Protocol):
    """Asks Discord whether a person is in a server: True, False (not a member, banned, or the bot
    is not in it), None (could not tell: Discord unreachable). Needs no local cache of the server."""

    def __call__(self, guild_id: int, user_id: int, /) -> Awaitable[bool | None]: ...


class MembershipCache:
    """This process's recent answers of a `MemberLookup`, for `ttl_s`: a DM asks on every message
    and an autocomplete on every keystroke. "Could not tell" is never kept."""

    def __init__(
        self,
        *,
        ttl_s: float = MEMBERSHIP_TTL_S,
        max_answers: int = MAX_MEMBERSHIP_ANSWERS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl_s = ttl_s
        self._max_answers = max_answers
        self._clock = clock
        self._answers: dict[tuple[int, int], tuple[bool, float]] = {}

    def known(self, guild_id: int, user_id: int) -> bool | None:
        """The kept answer, or None if there is none (or it is too old)."""
        kept = self._answers.get((guild_id, user_id))
        if kept is None or kept[1] <= self._clock():
            return None
        return kept[0]

    async def is_member(self, guild_id: int, user_id: int, lookup: MemberLookup) -> bool | None:
        known = self.known(guild_id, user_id)
        if known is not None:
            return known
        answer = await lookup(guild_id, user_id)
        if answer is not None:
            self._keep((guild_id, user_id), answer)
        return answer

    def _keep(self, key: tuple[int, int], answer: bool) -> None:
        now = self._clock()
        if len(self._answers) >= self._max_answers:
            self._answers = {k: v for k, v in self._answers.items() if v[1] > now}
            while len(self._answers) >= self._max_answers:  # all fresh: the oldest kept goes
                del self._answers[next(iter(self._answers))]
        self._answers.pop(key, None)
        self._answers[key] = (answer, now + self._ttl_s)


class AssistantError(UserFacingError):
    """An assistant cannot be made, changed, found or used as asked; one sentence says why."""

    def __init__(self, message: str) -> None:
        if len(message) > MAX_ERROR_CHARS:  # it may echo what was typed (a tool list of 6000 characters)
            message = message[: MAX_ERROR_CHARS - 1] + "…"
        super().__init__(message)


def effective(settings: GuildSettings, profile: AssistantProfile | None) -> GuildSettings:
    """The guild's settings with the assistant's model, instructions and tools, validated as settings.

    Hosted tools the guild's backend cannot run (it changed since) are left out rather than failing
    every turn; `/assistant create` and `edit` refuse them up front.
    """
    if profile is None:
        return settings
    tools = settings.enabled_tools if profile.enabled_tools is None else profile.enabled_tools
    tools = tuple(name for name in tools if name != KNOWLEDGE_TOOL)
    tools += (KNOWLEDGE_TOOL,) if profile.knowledge else ()
    update: dict[str, Any] = {"model": profile.model, "enabled_tools": tools}
    if profile.instructions is not None:
        update["instructions"] = profile.instructions
    merged = GuildSettings.model_validate({**settings.model_dump(), **update})
    if hosted_tools_problem(merged) is not None:
        kept = tuple(name for name in merged.enabled_tools if name not in HOSTED_TOOLS)
        log.info("Assistant %r: hosted tools left out on the %s backend", profile.name, merged.backend)
        merged = GuildSettings.model_validate({**merged.model_dump(), "enabled_tools": kept})
    return merged


def validate_profile(fields: dict[str, Any]) -> AssistantProfile:
    """`AssistantProfile` from typed fields, or `AssistantError` with the first problem as a sentence."""
    try:
        return AssistantProfile.model_validate(fields)
    except pydantic.ValidationError as exc:
        raise AssistantError(explain(exc)) from None


def explain(exc: pydantic.ValidationError) -> str:
    """The first validation error as one sentence naming the field."""
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"][:1]) or "assistant"
    if error["type"] == "value_error":
        message = str(error["msg"]).removeprefix("Value error, ")
    elif error["type"] == "string_too_long":
        message = f"at most {error.get('ctx', {}).get('max_length')} characters"
    elif error["type"] == "string_too_short":
        message = "cannot be empty"
    else:
        message = str(error["msg"]).lower()
    return f"`{field}`: {message}."


def _echo(text: str) -> str:
    flat = " ".join(text.split()).replace("`", "'")
    return flat if len(flat) <= MAX_ECHO_CHARS else flat[: MAX_ECHO_CHARS - 1] + "…"


def load_profile(data: dict[str, Any]) -> AssistantProfile | None:
    """A stored profile; tools no longer known are dropped, a profile beyond saving is skipped (None)."""
    tools = data.get("enabled_tools")
    if isinstance(tools, list):
        data = {**data, "enabled_tools": [name for name in tools if name in ALL_TOOLS]}
    try:
        return AssistantProfile.model_validate(data)
    except pydantic.ValidationError:
        log.warning("Ignoring stored assistant %r: it no longer validates", data.get("name"))
        return None


def _assistant(stored: StoredAssistant) -> Assistant | None:
    profile = load_profile(stored.profile)
    return None if profile is None else Assistant(stored.id, stored.guild_id, profile)


class AssistantDirectory:
    """The one way assistants are made, changed, chosen and resolved, so rows and audit agree."""

    def __init__(
        self,
        store: AssistantStore,
        settings: SettingsService,
        *,
        models: ModelCatalog | None = None,
        members: MembershipCache | None = None,
    ) -> None:
        """`models` checks a new model name against OpenAI (on the responses backend); `members`
        keeps Discord's answers about who is in which server (this process's own by default)."""
        self._store = store
        self._settings = settings
        self._models = models
        self._members = members or MembershipCache()

    # -- the guild's assistants ------------------------------------------------------------------

    async def in_guild(self, guild_id: int) -> list[Assistant]:
        """The guild's assistants, by name."""
        found = [_assistant(stored) for stored in await self._store.in_guild(guild_id)]
        return [assistant for assistant in found if assistant is not None]

    async def get(self, guild_id: int, name: str) -> Assistant:
        """The guild's assistant called `name` (any case), or `AssistantError`."""
        stored = await self._store.get(guild_id, name_key(name))
        assistant = None if stored is None else _assistant(stored)
        if assistant is None:
            raise AssistantError(f"This server has no assistant called `{_echo(name)}`.")
        return assistant

    async def named(self, name: str, guild_ids: set[int] | None = None) -> list[Assistant]:
        """Assistants called `name` in any guild (of `guild_ids`): a DM pick names only the assistant."""
        found = [_assistant(stored) for stored in await self._store.named(name_key(name))]
        return [a for a in found if a is not None and (guild_ids is None or a.guild_id in guild_ids)]

    async def matching(self, typed: str, *, limit: int) -> list[Assistant]:
        """Assistants of any guild whose name contains `typed` (for a DM's autocomplete)."""
        found = [_assistant(stored) for stored in await self._store.matching(name_key(typed), limit=limit)]
        return [assistant for assistant in found if assistant is not None]

    async def create(self, guild_id: int, profile: AssistantProfile, *, user_id: int) -> Assistant:
        """Store a new assistant (its name free in the guild, its tools usable here), audited."""
        await self._check_usable(guild_id, profile, model_changed=True)
        assistant_id = await self._store.create(
            guild_id, profile.key, profile.model_dump(mode="json"), user_id=user_id
        )
        if assistant_id is None:
            raise AssistantError(f"This server already has an assistant called `{profile.name}`.")
        return Assistant(assistant_id, guild_id, profile)

    async def edit(
        self, guild_id: int, name: str, changes: dict[str, Any], *, user_id: int
    ) -> tuple[Assistant, Assistant]:
        """Change some fields of an assistant (None values clear instructions/tools/avatar); returns
        (before, after). Validated as a whole profile; a rename must keep the name free."""
        before = await self.get(guild_id, name)
        after = validate_profile({**before.profile.model_dump(), **changes})
        if after == before.profile:
            return before, before
        await self._check_usable(guild_id, after, model_changed=after.model != before.profile.model)
        change = await self._store.update(
            guild_id, before.id, after.key, after.model_dump(mode="json"), user_id=user_id
        )
        if change is None:
            raise AssistantError(f"This server already has an assistant called `{after.name}`.")
        return before, Assistant(before.id, guild_id, after)

    async def delete(self, guild_id: int, name: str, *, user_id: int) -> Removed:
        """Delete an assistant; the channels and threads on it go back to the default, DM picks end."""
        assistant = await self.get(guild_id, name)
        deletion: Deletion | None = await self._store.delete(guild_id, assistant.id, user_id=user_id)
        if deletion is None:
            raise AssistantError(f"This server has no assistant called `{_echo(name)}`.")
        return Removed(deletion.change, deletion.channels, deletion.threads)

    async def audit(self, guild_id: int, *, limit: int = 20) -> list[AssistantChange]:
        """The latest changes, newest first."""
        return await self._store.audit(guild_id, limit=limit)

    async def _check_usable(self, guild_id: int, profile: AssistantProfile, *, model_changed: bool) -> None:
        """The profile must work under this guild's settings: hosted tools need the responses backend,
        and (there) the model must be one OpenAI knows."""
        settings = await self._settings.effective(guild_id)
        tools = profile.enabled_tools if profile.enabled_tools is not None else settings.enabled_tools
        hosted = [name for name in tools if name in HOSTED_TOOLS]
        if hosted and settings.backend != "responses":
            listed = ", ".join(f"`{name}`" for name in hosted)
            raise AssistantError(
                f"Hosted tools ({listed}) run at OpenAI and only work with the `responses` backend; "
                f"this server uses `{settings.backend}`."
            )
        check_model = model_changed and self._models is not None and settings.backend == "responses"
        if check_model and self._models is not None and await self._models.knows(profile.model) is False:
            raise AssistantError(f"OpenAI has no model named `{_echo(profile.model)}`.")

    # -- choosing --------------------------------------------------------------------------------

    async def use_in_channel(
        self, guild_id: int, channel_id: int, assistant: Assistant | None, *, user_id: int
    ) -> None:
        """New threads (and replies) in the channel answer as `assistant` (None: the default)."""
        await self._store.choose(
            ChoiceScope.CHANNEL, channel_id, guild_id, _id_of(assistant), user_id=user_id, audited=True
        )

    async def use_in_thread(
        self, guild_id: int, thread_id: int, assistant: Assistant | None, *, user_id: int
    ) -> None:
        """The thread's conversation answers as `assistant` from now on (None: the default)."""
        await self._store.choose(
            ChoiceScope.CONVERSATION, thread_id, guild_id, _id_of(assistant), user_id=user_id, audited=True
        )

    async def use_in_dm(self, user_id: int, assistant: Assistant | None) -> None:
        """The person's DMs answer as `assistant` (None: the default). The cog checks that they share
        the assistant's guild with the bot."""
        if assistant is None:
            await self._store.choose(ChoiceScope.DM, user_id, 0, None, user_id=user_id, audited=False)
            return
        await self._store.choose(
            ChoiceScope.DM, user_id, assistant.guild_id, assistant.id, user_id=user_id, audited=False
        )

    async def channels_using(self, guild_id: int) -> dict[int, str]:
        """The guild's channels that have an assistant, with its name (for `/assistant list`)."""
        return await self._store.channels_using(guild_id)

    async def chosen(self, scope: ChoiceScope, target_id: int) -> Assistant | None:
        """The assistant a channel, thread or DM has chosen (None: the default or nothing recorded)."""
        choice = await self._store.choice(scope, target_id)
        return None if choice is None else _chosen(choice)

    # -- resolving (each message) ----------------------------------------------------------------

    async def for_channel(self, settings: GuildSettings, channel_id: int) -> Resolved:
        """A reply in a channel (no thread): the channel's assistant."""
        choice = await self._store.choice(ChoiceScope.CHANNEL, channel_id)
        return _resolved(settings, None if choice is None else _chosen(choice))

    async def for_thread(
        self,
        settings: GuildSettings,
        guild_id: int,
        thread_id: int,
        parent_id: int | None,
        *,
        starter_id: int | None = None,
    ) -> Resolved:
        """A thread's conversation: the assistant it has, or (its first turn) its channel's, recorded
        with `starter_id` (the message's author: who may switch it) so the thread keeps it when the
        channel changes."""
        choice = await self._store.choice(ChoiceScope.CONVERSATION, thread_id)
        if choice is None:
            choice = await self._store.start_conversation(
                thread_id, guild_id, parent_id, started_by=starter_id
            )
        return _resolved(settings, _chosen(choice))

    async def for_new_thread(
        self, settings: GuildSettings, guild_id: int, thread_id: int, parent_id: int, *, starter_id: int
    ) -> Resolved:
        """A thread about to open on a mention: its channel's assistant, recorded with its starter (a
        thread recorded already keeps its own)."""
        choice = await self._store.start_conversation(thread_id, guild_id, parent_id, started_by=starter_id)
        return _resolved(settings, _chosen(choice))

    async def starter_of(self, thread_id: int) -> int | None:
        """Whose message began a thread's conversation, as recorded at its first turn (None: unknown)."""
        choice = await self._store.choice(ChoiceScope.CONVERSATION, thread_id)
        return None if choice is None else choice.started_by

    async def answering_in(
        self, settings: GuildSettings, channel_id: int, parent_id: int | None = None
    ) -> Resolved:
        """Who answers in a channel, or in a thread (`parent_id`: its channel) as it is now; read
        only (`/help` asks: a thread's first turn records its assistant, not this)."""
        choice = None
        if parent_id is not None:
            choice = await self._store.choice(ChoiceScope.CONVERSATION, channel_id)
            channel_id = parent_id if choice is None else channel_id
        if choice is None:
            choice = await self._store.choice(ChoiceScope.CHANNEL, channel_id)
        return _resolved(settings, None if choice is None else _chosen(choice))

    async def for_dm(self, user_id: int, *, members: MemberLookup | None = None) -> Resolved:
        """A DM: the bot's defaults, or the assistant the person picked, on its guild's settings.

        With `members`, the pick holds only while the person is in its server (and the bot too),
        asked at most every few minutes: once they are gone it is dropped, and the reply says so
        (once: only the message that drops it). Discord not answering keeps the pick."""
        choice = await self._store.choice(ChoiceScope.DM, user_id)
        assistant = None if choice is None else _chosen(choice)
        gone = (
            assistant is not None
            and members is not None
            and await self._members.is_member(assistant.guild_id, user_id, members) is False
        )
        if assistant is not None and gone:
            dropped = await self._store.forget_dm_pick(user_id, assistant.id)
            notice = (
                f"ℹ️ **{assistant.name}** no longer answers our DMs: you are not in its server any more, "
                "so my default assistant answers."
            )
            return Resolved(None, await self._settings.effective(None), notice if dropped else None)
        if assistant is None:
            return Resolved(None, await self._settings.effective(None))
        guild_settings = await self._settings.effective(assistant.guild_id)
        return _resolved(guild_settings, assistant)

    async def shared_guilds(
        self,
        user_id: int,
        guild_ids: Iterable[int],
        members: MemberLookup,
        *,
        max_lookups: int = MAX_MEMBERSHIP_LOOKUPS,
    ) -> set[int]:
        """Which of these servers (in the order given) the person is in: answers this process kept
        first, then at most `max_lookups` servers asked of Discord at once; the rest are left out."""
        shared: set[int] = set()
        to_ask: list[int] = []
        for guild_id in dict.fromkeys(guild_ids):
            known = self._members.known(guild_id, user_id)
            if known is None and len(to_ask) < max_lookups:
                to_ask.append(guild_id)
            elif known:
                shared.add(guild_id)
        answers = await asyncio.gather(
            *(self._members.is_member(guild_id, user_id, members) for guild_id in to_ask)
        )
        return shared | {guild_id for guild_id, answer in zip(to_ask, answers, strict=True) if answer}


def _id_of(assistant: Assistant | None) -> int | None:
    return None if assistant is None else assistant.id


def _chosen(choice: StoredChoice) -> Assistant | None:
    return None if choice.assistant is None else _assistant(choice.assistant)


def _resolved(settings: GuildSettings, assistant: Assistant | None) -> Resolved:
    return Resolved(assistant, effective(settings, None if assistant is None else assistant.profile))
