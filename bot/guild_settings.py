"""Per-guild settings: defaults from config.toml, overrides from SQLite, validated by one model.

Reads come from an in-memory cache (every message needs them); writes go to the database first and
then replace the cached copy, so the next message sees the change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import pydantic

from bot.config import GuildSettings
from bot.errors import UserFacingError
from bot.process_state import SettingsCache
from bot.storage import SettingChange, Storage

SettingSource = Literal["default", "server"]
SETTING_NAMES: tuple[str, ...] = tuple(GuildSettings.model_fields)


@dataclass(frozen=True, slots=True)
class SettingView:
    """One setting as `/config show` presents it."""

    name: str
    value: Any
    source: SettingSource
    description: str


class InvalidSettingError(UserFacingError):
    """A value an admin typed does not fit the setting; the message says what would."""


class SettingsService:
    def __init__(self, storage: Storage, cache: SettingsCache, defaults: GuildSettings) -> None:
        self._storage = storage
        self._cache = cache
        self._defaults = defaults

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
        overrides = await self._storage.settings.overrides(guild_id)
        settings = self._merge(overrides)
        self._cache.put(guild_id, settings)
        return settings

    async def describe(self, guild_id: int) -> list[SettingView]:
        overrides = await self._storage.settings.overrides(guild_id)
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

    async def set(self, guild_id: int, name: str, raw_value: str | Any, *, user_id: int) -> SettingChange:
        """Validate and store one override; raises `InvalidSettingError` with a readable reason."""
        if name not in SETTING_NAMES:
            raise InvalidSettingError(
                f"`{name}` is not a setting; choose one of: {', '.join(SETTING_NAMES)}."
            )
        current = await self.effective(guild_id)
        value = parse_setting_value(name, raw_value) if isinstance(raw_value, str) else raw_value
        try:
            updated = GuildSettings.model_validate({**current.model_dump(), name: value})
        except pydantic.ValidationError as exc:
            raise InvalidSettingError(_explain(name, exc)) from None
        stored = updated.model_dump(mode="json")[name]
        change = await self._storage.settings.set(guild_id, name, stored, user_id=user_id)
        self._cache.put(guild_id, updated)
        return change

    async def reset(self, guild_id: int, name: str, *, user_id: int) -> SettingChange:
        if name not in SETTING_NAMES:
            raise InvalidSettingError(f"`{name}` is not a setting.")
        change = await self._storage.settings.reset(guild_id, name, user_id=user_id)
        self._cache.drop(guild_id)
        return change

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
                    continue
                valid[name] = value
            return GuildSettings.model_validate({**base, **valid})


def parse_setting_value(name: str, raw: str) -> Any:
    """Turn what an admin typed into the setting's JSON value ("yes" -> True, "1,2" -> [1, 2])."""
    text = raw.strip()
    annotation = GuildSettings.model_fields[name].annotation
    shape = str(annotation)
    if annotation is bool:
        lowered = text.lower()
        if lowered in {"true", "yes", "on", "1", "enable", "enabled"}:
            return True
        if lowered in {"false", "no", "off", "0", "disable", "disabled"}:
            return False
        return text
    if "tuple" in shape:
        if text.lower() in {"", "none", "all", "[]"}:
            return []
        if text.startswith("["):
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                return text
        return [_mention_id(part) for part in text.replace(" ", ",").split(",") if part.strip()]
    if "None" in shape and text.lower() in {"", "none", "off", "unset"}:
        return None
    if "int" in shape:
        return _mention_id(text)
    return text


def _mention_id(text: str) -> Any:
    """`<#123>` or `123` -> 123; anything else is left for validation to reject."""
    stripped = text.strip().removeprefix("<#").removeprefix("<@&").removeprefix("<@").removesuffix(">")
    return int(stripped) if stripped.isdigit() else text.strip()


def _explain(name: str, exc: pydantic.ValidationError) -> str:
    error = exc.errors()[0]
    message = error["msg"].removeprefix("Value error, ")
    return f"`{name}`: {message}."
