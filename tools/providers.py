"""Where a tool family's calls go: the built-in SQLite provider or an external HTTP API.

A guild picks one with `booking_provider` / `ride_provider` (`builtin`, or a `[providers]` entry).
Providers raise `bot.tooling.ToolError` with a stable code; the registry makes it the call's result.

The HTTP contract (each family's in its `http.py`, the caller's records in `tools/owned.py`): JSON
bodies, a bearer key if configured, `Idempotency-Key: <tool call id>` on every write so a retried
call cannot book twice remotely, and errors as `{"error": {"code": "...", "message": "..."}}`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any, Generic, Literal, TypeVar
from zoneinfo import ZoneInfo

import aiohttp

from bot.config import BUILTIN_PROVIDER, AppConfig, GuildSettings, ProviderConfig
from bot.tooling import ToolContext, ToolError

log = logging.getLogger(__name__)

P = TypeVar("P", covariant=True)  # a directory of booking providers serves as one of record keepers
T = TypeVar("T")

MAX_REMOTE_MESSAGE_CHARS = 300

# Error codes a remote provider may use that mean the same as ours; anything else is "unavailable".
PASS_THROUGH_CODES = frozenset(
    {
        "not_found",
        "not_yours",
        "ambiguous",
        "closed",
        "full",
        "duplicate",
        "past_time",
        "too_far_ahead",
        "off_slot",
        "invalid_time",
        "unknown_place",
        "same_place",
        "already_cancelled",
        "too_late",
    }
)


class ProviderDirectory(Generic[P]):
    """The providers of one family by name; a guild setting picks one per call."""

    def __init__(
        self, what: str, builtin: P, remote: Mapping[str, P], *, setting: Callable[[GuildSettings], str]
    ) -> None:
        self._what = what
        self._providers: dict[str, P] = {**remote, BUILTIN_PROVIDER: builtin}
        self._setting = setting

    def for_call(self, context: ToolContext) -> P:
        """The provider the calling guild's setting names."""
        name = self._setting(context.settings)
        provider = self._providers.get(name)
        if provider is None:
            raise ToolError(
                "unavailable",
                f"This server's {self._what} provider {name!r} is not configured; ask an admin.",
            )
        return provider


def configured_providers(
    what: str,
    *,
    builtin: T,
    remote: Callable[[str, ProviderConfig, Mapping[str, str]], T],
    serves: Literal["restaurants", "rides"],
    config: AppConfig,
    env: Mapping[str, str],
    setting: Callable[[GuildSettings], str],
) -> ProviderDirectory[T]:
    """`builtin`, and a `remote` provider for each `[providers]` entry that `serves` this family."""
    providers = {
        name: remote(name, provider, env)
        for name, provider in config.providers.items()
        if provider.serves == serves
    }
    return ProviderDirectory(what, builtin, providers, setting=setting)


class JsonApi:
    """A small JSON-over-HTTP client for one external provider: key, timeout, errors mapped.

    A session per request: provider calls are rare (a booking, not a stream), and nothing needs
    closing when the bot stops.
    """

    def __init__(self, *, name: str, what: str, config: ProviderConfig, env: Mapping[str, str]) -> None:
        self._name = name
        self.what = what
        """What the service is called in sentences to the user: "booking service"."""
        self._base_url = config.base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=config.timeout_s)
        self._key_env = config.api_key_env
        self._api_key = env.get(config.api_key_env, "").strip() if config.api_key_env else ""
        if config.api_key_env and not self._api_key:
            log.warning("Provider %s: environment variable %s is not set", name, config.api_key_env)

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """One request; the decoded JSON object on 2xx, else `ToolError`."""
        if self._key_env and not self._api_key:
            raise ToolError("unavailable", f"The {self.what} is not set up (its API key is missing).")
        headers = {"Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        url = f"{self._base_url}{path}"
        try:
            async with (
                aiohttp.ClientSession(timeout=self._timeout) as session,
                session.request(
                    method, url, params=dict(params or {}), json=body, headers=headers
                ) as response,
            ):
                status = response.status
                text = await response.text()
        except TimeoutError:
            log.warning("Provider %s: %s %s timed out", self._name, method, path)
            raise ToolError("unavailable", f"The {self.what} did not answer in time.") from None
        except aiohttp.ClientError as exc:
            log.warning("Provider %s: %s %s failed: %s", self._name, method, path, exc)
            raise ToolError("unavailable", f"The {self.what} could not be reached.") from None
        payload = _decode(text)
        if 200 <= status < 300:
            if payload is None:
                log.warning("Provider %s: %s %s answered unreadable JSON", self._name, method, path)
                raise ToolError("unavailable", f"The {self.what} gave an unreadable answer.")
            return payload
        raise self._error(status, payload, method, path)

    def _error(self, status: int, payload: dict[str, Any] | None, method: str, path: str) -> ToolError:
        error = payload.get("error") if payload else None
        code = str(error.get("code")) if isinstance(error, dict) else ""
        message = str(error.get("message") or "") if isinstance(error, dict) else ""
        message = message.strip()[:MAX_REMOTE_MESSAGE_CHARS]
        if code in PASS_THROUGH_CODES and message:
            return ToolError(code, message)
        if status == 404:
            return ToolError("not_found", message or "The service does not know that.")
        log.warning("Provider %s: %s %s answered %d %s", self._name, method, path, status, code or "")
        if status in (401, 403):
            return ToolError("unavailable", f"The {self.what} refused the bot's credentials.")
        if status == 429:
            return ToolError("unavailable", f"The {self.what} is busy; try again in a minute.")
        if 400 <= status < 500:
            return ToolError("rejected", message or f"The {self.what} refused the request.")
        return ToolError("unavailable", f"The {self.what} is having problems right now.")


def _decode(text: str) -> dict[str, Any] | None:
    try:
        payload = json.loads(text)
    except json.JSONDecodeError:
        return None
    return payload if isinstance(payload, dict) else None


def remote_datetime(value: Any, tz: ZoneInfo, what: str) -> dt.datetime:
    """An ISO 8601 time from a provider's answer (a naive one is in the guild's zone)."""
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError:
        raise ToolError("unavailable", f"The {what} sent an unreadable time.") from None
    return parsed.replace(tzinfo=tz) if parsed.tzinfo is None else parsed


def field(payload: Mapping[str, Any], key: str, what: str) -> Any:
    """A required field of a provider's answer; a missing one is the provider's fault."""
    if key not in payload or payload[key] is None:
        raise ToolError("unavailable", f"The {what} sent an incomplete answer (no {key}).")
    return payload[key]


def caller_identity(caller: ToolContext) -> dict[str, Any]:
    """How the caller is named to a remote provider (Discord ids as strings)."""
    return {
        "user_id": str(caller.user_id),
        "user_name": caller.user_name,
        "guild_id": None if caller.guild_id is None else str(caller.guild_id),
    }
