"""Per-guild settings: defaults from config.toml, overrides from SQLite, validated by one model.

Reads come from an in-memory cache (every message needs them); writes go to the database first and
then replace the cached copy, so the next message sees the change. Other processes sharing a
PostgreSQL database hear of it (`bot.storage.settings_events`) and forget their copy. The cache's
lock orders loads and writes, so a load that read the database before a write can never put a stale
copy back afterwards.

What an admin types is turned into a value here (`parse_setting_value`), validated by `GuildSettings`,
then checked against the rest of the bot (hosted tools need the Responses backend, providers must be
configured, model names must exist); every refusal is one `InvalidSettingError` sentence.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import types
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, Union, get_args, get_origin

import openai
import pydantic

from bot.config import (
    FUNCTION_TOOL_FAMILIES,
    HOSTED_TOOLS,
    IMAGE_TOOL,
    PROVIDER_SETTINGS,
    GuildSettings,
    ProviderConfig,
    hosted_tools_problem,
    knowledge_store_problem,
    provider_choices,
)
from bot.errors import UserFacingError
from bot.storage import SettingChange, Storage

log = logging.getLogger(__name__)

SettingSource = Literal["default", "server"]
SETTING_NAMES: tuple[str, ...] = tuple(GuildSettings.model_fields)
# Settings whose integers are Discord channel ids (shown and typed as #channel mentions).
CHANNEL_SETTINGS = frozenset(name for name in SETTING_NAMES if name.endswith(("channel", "channels")))
# Settings that name a model, checked against OpenAI's catalogue when set.
MODEL_SETTINGS = ("model", "image_model", "embedding_model")
MAX_ERROR_CHARS = 500  # an error echoes what was typed; Discord messages hold 2000 characters
MAX_ECHO_CHARS = 60
MODEL_CHECK_TIMEOUT_S = 5.0

TRUE_WORDS = frozenset({"true", "yes", "y", "on", "1", "enable", "enabled"})
FALSE_WORDS = frozenset({"false", "no", "n", "off", "0", "disable", "disabled"})
EVERYWHERE_WORDS = frozenset({"", "all", "everywhere", "any", "*", "[]"})
NO_TOOL_WORDS = frozenset({"", "none", "off", "nothing", "[]"})
UNSET_WORDS = frozenset({"", "none", "off", "unset", "null"})
UNLIMITED_WORDS = frozenset({"unlimited", "none", "off", "no limit", "nolimit"})
DURATION_UNITS_S = {
    "": 1, "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600,
}  # fmt: skip
COUNT_UNITS = {"": 1, "k": 1000, "m": 1_000_000, "tokens": 1}
_NUMBER = re.compile(r"([0-9][0-9_,]*(?:\.[0-9]+)?)\s*([a-z]*)", re.IGNORECASE)
_ID = re.compile(r"<#([0-9]{1,20})>|([0-9]{1,20})")


@dataclass(frozen=True, slots=True)
class SettingView:
    """One setting as `/config show` presents it."""

    name: str
    value: Any
    source: SettingSource
    description: str


class InvalidSettingError(UserFacingError):
    """A value an admin typed does not fit the setting; the message says what would."""

    def __init__(self, message: str) -> None:
        if len(message) > MAX_ERROR_CHARS:
            message = message[: MAX_ERROR_CHARS - 1] + "…"
        super().__init__(message)


class ModelCatalog(Protocol):
    """Whether an API knows a model: True, False, or None when it cannot tell (then it is allowed)."""

    async def knows(self, model: str) -> bool | None: ...


class OpenAIModelCatalog:
    """Asks OpenAI's `/models/{id}` with a short timeout; a failure to ask is not a refusal."""

    def __init__(self, client: openai.AsyncOpenAI) -> None:
        self._client = client.with_options(timeout=MODEL_CHECK_TIMEOUT_S, max_retries=0)

    async def knows(self, model: str) -> bool | None:
        try:
            await self._client.models.retrieve(model)
        except (openai.NotFoundError, ValueError):  # ValueError: "." or ".." cannot even be asked for
            return False
        except openai.APIError as exc:
            log.info("Could not check model %r (%s); allowing it", model, exc)
            return None
        return True


class SettingsService:
    """The one way settings are read and changed, so the cache, the database and the audit agree."""

    def __init__(
        self,
        storage: Storage,
        cache: SettingsCache,
        defaults: GuildSettings,
        *,
        providers: Mapping[str, ProviderConfig] | None = None,
        models: ModelCatalog | None = None,
    ) -> None:
        """`providers` are config.toml's (what `*_provider` may name); `models` checks model names."""
        self._storage = storage
        self._cache = cache
        self._defaults = defaults
        self._providers = dict(providers or {})
        self._models = models

    @property
    def defaults(self) -> GuildSettings:
        return self._defaults

    async def effective(self, guild_id: int | None) -> GuildSettings:
        """The settings in force in a guild (DMs use the defaults)."""
        if guild_id is None:
            return self._defaults
        cached = self._cache.get(guild_id)
        if cached is not None:
            return cached
        async with self._cache.lock:
            return await self._current(guild_id)

    async def overrides(self, guild_id: int) -> dict[str, Any]:
        """The settings this guild changed, as stored (JSON values)."""
        return await self._storage.settings.overrides(guild_id)

    async def describe(self, guild_id: int) -> list[SettingView]:
        overrides = await self.overrides(guild_id)
        settings = await self.effective(guild_id)
        return [
            SettingView(
                name=name,
                value=getattr(settings, name),
                source="server" if name in overrides else "default",
                description=field.description or "",
            )
            for name, field in GuildSettings.model_fields.items()
        ]

    async def audit(self, guild_id: int, *, limit: int = 20) -> list[SettingChange]:
        """The latest changes, newest first."""
        return await self._storage.settings.audit(guild_id, limit=limit)

    async def set(self, guild_id: int, name: str, raw_value: str | Any, *, user_id: int) -> SettingChange:
        """Validate and store one override; raises `InvalidSettingError` with a readable reason.

        A string is parsed as typed text ("yes", "50k", "<#1> <#2>"); anything else is taken as the value.
        """
        check_name(name)
        # The model name is checked over the network first, so the lock is never held meanwhile.
        await self._check_model(name, self._changed(await self.effective(guild_id), name, raw_value))
        async with self._cache.lock:
            self._cache.drop(guild_id)  # checked against the stored settings, also other processes' changes
            updated = self._changed(await self._current(guild_id), name, raw_value)
            stored = updated.model_dump(mode="json")[name]
            change = await self._storage.settings.set(guild_id, name, stored, user_id=user_id)
            self._cache.put(guild_id, updated)
        return change

    async def reset(self, guild_id: int, name: str, *, user_id: int) -> SettingChange | None:
        """Back to the default; None (nothing stored, nothing audited) if it already was."""
        check_name(name)
        async with self._cache.lock:
            if name not in await self._storage.settings.overrides(guild_id):
                return None
            change = await self._storage.settings.reset(guild_id, name, user_id=user_id)
            self._cache.drop(guild_id)
            await self._current(guild_id)
        return change

    def _changed(self, current: GuildSettings, name: str, raw_value: str | Any) -> GuildSettings:
        """`current` with the new value: parsed, validated and checked against the rest of the bot."""
        value = parse_setting_value(name, raw_value, current) if isinstance(raw_value, str) else raw_value
        updated = validate_setting(current, name, value)
        conflict = self._conflict(name, updated)
        if conflict is not None:
            raise InvalidSettingError(conflict)
        return updated

    async def _current(self, guild_id: int) -> GuildSettings:
        """The cached settings, loaded if absent; callers hold the lock."""
        cached = self._cache.get(guild_id)
        if cached is None:
            cached = self._merge(await self._storage.settings.overrides(guild_id))
            self._cache.put(guild_id, cached)
        return cached

    def _merge(self, overrides: dict[str, Any]) -> GuildSettings:
        """Defaults with the stored overrides; a stored value that no longer validates is skipped."""
        base = self._defaults.model_dump()
        known = {name: value for name, value in overrides.items() if name in SETTING_NAMES}
        try:
            return GuildSettings.model_validate({**base, **known})
        except pydantic.ValidationError:
            valid: dict[str, Any] = {}
            for name, value in known.items():
                try:
                    GuildSettings.model_validate({**base, name: value})
                except pydantic.ValidationError:
                    log.warning("Ignoring stored setting %s=%r: it no longer validates", name, value)
                    continue
                valid[name] = value
            return GuildSettings.model_validate({**base, **valid})

    def _conflict(self, name: str, settings: GuildSettings) -> str | None:
        """Why `settings` cannot work on this bot, judged only on rules that involve `name`.

        Rules that do not involve the changed setting are left alone, so a guild whose defaults break
        a rule can still change anything else. New cross-setting rules belong here.
        """
        if name in ("enabled_tools", "backend") and hosted_tools_problem(settings) is not None:
            hosted = ", ".join(f"`{tool}`" for tool in settings.enabled_tools if tool in HOSTED_TOOLS)
            if name == "backend":
                return (
                    f"Remove {hosted} from `enabled_tools` first: hosted tools run at OpenAI and only "
                    "work with the `responses` backend."
                )
            return (
                f"Hosted tools ({hosted}) run at OpenAI and only work with the `responses` backend; "
                f"this server uses `{settings.backend}`."
            )
        if name in ("knowledge_store", "backend") and knowledge_store_problem(settings) is not None:
            if name == "backend":
                return (
                    "Set `knowledge_store` back to `local` first: an OpenAI vector store is searched by"
                    " OpenAI's hosted file_search, which only works with the `responses` backend."
                )
            return (
                "An OpenAI vector store is searched by OpenAI's hosted file_search, which only works with"
                f" the `responses` backend; this server uses `{settings.backend}`."
            )
        family = PROVIDER_SETTINGS.get(name)
        if family is not None:
            chosen = getattr(settings, name)
            offered = provider_choices(self._providers, family)
            if chosen not in offered:
                return (
                    f"`{name}` must be one of the {family} providers this bot has: "
                    f"{', '.join(f'`{p}`' for p in offered)}."
                )
        return None

    async def _check_model(self, name: str, settings: GuildSettings) -> None:
        """Refuse a model name OpenAI does not know (the conversation model only on `responses`)."""
        if self._models is None or name not in MODEL_SETTINGS:
            return
        if name == "model" and settings.backend != "responses":
            return  # another server's catalogue: it answers for itself at the first message
        model = getattr(settings, name)
        if await self._models.knows(model) is False:
            hint = (
                " (switch `backend` to `chat` first for a model on another server)" if name == "model" else ""
            )
            raise InvalidSettingError(f"OpenAI has no model named `{_echo(model)}`{hint}.")


def check_name(name: str) -> None:
    if name not in SETTING_NAMES:
        raise InvalidSettingError(
            f"`{_echo(name)}` is not a setting; choose one of: {', '.join(SETTING_NAMES)}."
        )


def setting_name(typed: str) -> str:
    """The setting an admin meant ("Model", "image-model" -> "image_model"), or `InvalidSettingError`."""
    name = typed.strip().lower().replace("-", "_").replace(" ", "_")
    check_name(name)
    return name


def validate_setting(current: GuildSettings, name: str, value: Any) -> GuildSettings:
    """`current` with one setting changed, or `InvalidSettingError` saying what would fit."""
    try:
        return GuildSettings.model_validate({**current.model_dump(), name: value})
    except pydantic.ValidationError as exc:
        raise InvalidSettingError(_explain(name, exc)) from None
    except (ValueError, TypeError, RecursionError):  # e.g. a number too large to convert
        raise InvalidSettingError(f"`{name}`: {expected(name)}.") from None


def parse_setting_value(name: str, raw: str, current: GuildSettings | None = None) -> Any:
    """Turn what an admin typed into the setting's value ("yes" -> True, "<#1> <#2>" -> [1, 2], "50k").

    Text that does not parse is returned for `GuildSettings` to reject with its own reason. `current`
    lets `enabled_tools` take `all` (every tool the backend can use) and `+tool` / `-tool` edits.
    """
    check_name(name)
    text = raw.strip()
    lowered = text.lower()
    kind = setting_kind(name)
    if kind == "bool":
        if lowered in TRUE_WORDS:
            return True
        if lowered in FALSE_WORDS:
            return False
        return text
    if kind == "tools":
        return _parse_tools(text, current or GuildSettings())
    if kind == "ids":
        if lowered in EVERYWHERE_WORDS:
            return []
        if lowered == "none":
            raise InvalidSettingError(
                f"`{name}`: say `all` to allow every channel, or list channels like #general #help."
            )
        return [_mention_id(part) for part in re.split(r"[\s,]+", text) if part]
    if kind == "optional_id":
        return None if lowered in UNSET_WORDS else _mention_id(text)
    if kind in ("int", "float"):
        return _parse_number(name, text, integer=kind == "int")
    if kind == "choice":
        return lowered
    if name == "timezone":
        return _known_zone_names().get(lowered, text)
    return text


def setting_kind(name: str) -> str:
    """How a setting is typed: bool, tools, ids, optional_id, int, float, choice or text."""
    annotation = GuildSettings.model_fields[name].annotation
    origin = get_origin(annotation)
    args = get_args(annotation)
    if annotation is bool:
        return "bool"
    if origin is tuple:
        return "ids" if args and args[0] is int else "tools"
    if origin in (types.UnionType, Union) and int in args:
        return "optional_id"
    if annotation is int:
        return "int"
    if annotation is float:
        return "float"
    if origin is Literal:
        return "choice"
    return "text"


def choices_of(name: str) -> tuple[str, ...]:
    """The allowed values of a `choice` setting (its Literal)."""
    return tuple(str(option) for option in get_args(GuildSettings.model_fields[name].annotation))


def expected(name: str) -> str:
    """What a setting takes, as a phrase (for errors and the value prompt)."""
    kind = setting_kind(name)
    field = GuildSettings.model_fields[name]
    low, high = _bounds(field.metadata)
    if kind == "bool":
        return "say `on` or `off`"
    if kind == "tools":
        tools = ", ".join((*FUNCTION_TOOL_FAMILIES, *HOSTED_TOOLS, IMAGE_TOOL))
        return f"list tools from {tools} (or say `all`, `none`, `+tool`, `-tool`)"
    if kind == "ids":
        return "list channels like #general #help, or say `all`"
    if kind == "optional_id":
        return "give a channel like #mod-log, or `none`"
    if kind == "choice":
        return f"choose one of {', '.join(choices_of(name))}"
    if kind in ("int", "float"):
        number = "a whole number" if kind == "int" else "a number"
        unit = " (seconds)" if name.endswith("_s") else " (tokens)" if "token" in name else ""
        if low is not None and high is not None:
            return f"give {number} from {low:g} to {high:g}{unit}"
        if low == 0:
            return f"give {number}{unit}, or 0 for unlimited"
        return f"give {number}{unit}"
    if name == "timezone":
        return "give an IANA time zone like Europe/Paris"
    low_len, high_len = _lengths(field.metadata)
    if high_len is not None:
        return f"give text of {low_len or 0} to {high_len} characters"
    return "give some text"


def _parse_tools(text: str, current: GuildSettings) -> Any:
    lowered = text.lower()
    if lowered in NO_TOOL_WORDS:
        return []
    if lowered == "all":
        hosted = HOSTED_TOOLS if current.backend == "responses" else ()
        return list(FUNCTION_TOOL_FAMILIES + hosted)
    if text.startswith("["):
        try:
            return json.loads(text)
        except (ValueError, RecursionError):
            return text
    tokens = [part for part in re.split(r"[\s,]+", lowered) if part]
    if tokens and all(token[0] in "+-" and len(token) > 1 for token in tokens):
        tools = list(current.enabled_tools)
        for token in tokens:
            tool = token[1:].replace("-", "_")
            if token[0] == "+" and tool not in tools:
                tools.append(tool)
            elif token[0] == "-":
                tools = [t for t in tools if t != tool]
        return tools
    return [token.replace("-", "_") for token in tokens]


def _parse_number(name: str, text: str, *, integer: bool) -> Any:
    lowered = text.lower()
    low, _ = _bounds(GuildSettings.model_fields[name].metadata)
    if low == 0 and lowered in UNLIMITED_WORDS:
        return 0
    match = _NUMBER.fullmatch(lowered)
    units = DURATION_UNITS_S if name.endswith("_s") else COUNT_UNITS
    if match is None or match.group(2) not in units:
        return text
    digits = match.group(1).replace(",", "").replace("_", "")
    try:
        number = float(digits) * units[match.group(2)]
    except ValueError:
        return text
    if integer:
        return int(number) if number.is_integer() and number < 1e18 else text
    return number


def _mention_id(text: str) -> Any:
    """`<#123>` or `123` -> 123; anything else is left for validation to reject."""
    match = _ID.fullmatch(text.strip())
    if match is None:
        return text.strip()
    return int(match.group(1) or match.group(2))


def _known_zone_names() -> dict[str, str]:
    """IANA zone names by their lower-case spelling, so `europe/paris` works."""
    return {zone.lower(): zone for zone in zoneinfo.available_timezones()}


def _bounds(metadata: list[Any]) -> tuple[float | None, float | None]:
    low = next((m.ge for m in metadata if getattr(m, "ge", None) is not None), None)
    high = next((m.le for m in metadata if getattr(m, "le", None) is not None), None)
    return low, high


def _lengths(metadata: list[Any]) -> tuple[int | None, int | None]:
    low = next((m.min_length for m in metadata if getattr(m, "min_length", None) is not None), None)
    high = next((m.max_length for m in metadata if getattr(m, "max_length", None) is not None), None)
    return low, high


def _echo(text: str) -> str:
    """What the admin typed, short and harmless inside a code span."""
    flat = " ".join(str(text).split()).replace("`", "'")
    return flat if len(flat) <= MAX_ECHO_CHARS else flat[: MAX_ECHO_CHARS - 1] + "…"


def _explain(name: str, exc: pydantic.ValidationError) -> str:
    """The first validation error as one sentence: our own validators' words, else what fits."""
    error = exc.errors()[0]
    if error["type"] == "value_error":
        message = str(error["msg"]).removeprefix("Value error, ")
        return f"`{name}`: {message}."
    return f"`{name}`: {expected(name)}."


class SettingsCache:
    """Effective settings per guild, written through by the settings service.

    `lock` orders loads and writes: a load that read the database before a write must not put its
    older copy back after the write did. Writes by other processes (PostgreSQL) arrive as `forget`,
    under the same lock for the same reason.
    """

    def __init__(self) -> None:
        self._by_guild: dict[int, GuildSettings] = {}
        self.lock = asyncio.Lock()

    def get(self, guild_id: int) -> GuildSettings | None:
        return self._by_guild.get(guild_id)

    def put(self, guild_id: int, settings: GuildSettings) -> None:
        self._by_guild[guild_id] = settings

    def drop(self, guild_id: int) -> None:
        self._by_guild.pop(guild_id, None)

    async def forget(self, guild_id: int) -> None:
        """Another process changed this guild: the next read loads it (a load under way ends first)."""
        async with self.lock:
            self.drop(guild_id)

    async def forget_all(self) -> None:
        """Changes may have been missed (the notifications' connection was lost): load every guild again."""
        async with self.lock:
            self._by_guild.clear()
