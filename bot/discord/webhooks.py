"""The bot's own webhook in each text channel: how a named assistant's reply shows under its name.

A webhook belongs to a text channel; a thread's replies go through its parent's webhook with the
thread's id (``thread=``). The bot looks for a webhook it made (``GET /channels/{id}/webhooks``: only
the creating application sees a webhook's token), else makes one (Manage Webhooks), and keeps it for the
process's life. Someone deleting it in the server's settings makes the next use answer 404 Unknown
Webhook: the owner forgets it and finds or makes one again, once. Where the bot lacks Manage Webhooks
(or in a DM) there is none, and the reply carries a header line instead.

A webhook's token is a secret (anyone holding it can post as it): it is never logged, and the cache's
``repr`` leaves it out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import aiohttp
import discord

from bot.discord.render.scheduler import WriteKind, WriteScheduler

log = logging.getLogger(__name__)
_T = TypeVar("_T")

WEBHOOK_NAME = "Assistant replies"
"""The name of the bot's webhook in a channel's integration settings (what a moderator sees)."""
WEBHOOK_ROUTE = "webhook"
"""The scheduler route of finding and making webhooks (bot-token requests, in the global budget)."""
UNUSABLE_RETRY_S = 600.0
"""After Discord refused a channel's webhook (no permission, too many webhooks), ask again only after
this long; until then the channel's replies use the header line."""
MAX_USERNAME_CHARS = 80
UNKNOWN_WEBHOOK = 10015
_FORBIDDEN_NAME_PARTS = {"clyde": "clydе", "discord": "discоrd"}
"""Discord refuses webhook usernames containing these (any case); a Cyrillic letter keeps the look."""

Speakable = discord.TextChannel | discord.Thread
"""Where replies may go through a webhook: a text channel or a thread of one."""


def webhook_username(name: str) -> str:
    """An assistant's name as a webhook's username Discord accepts: one line, 1 to 80 characters,
    without the words Discord reserves (their look kept with a Cyrillic letter)."""
    flat = " ".join(name.split())[:MAX_USERNAME_CHARS] or "Assistant"
    lowered = flat.lower()
    for word, lookalike in _FORBIDDEN_NAME_PARTS.items():
        start = lowered.find(word)
        while start >= 0:
            flat = (
                flat[:start]
                + _keep_case(flat[start : start + len(word)], lookalike)
                + flat[start + len(word) :]
            )
            start = lowered.find(word, start + len(word))
    return flat


def _keep_case(original: str, lookalike: str) -> str:
    return "".join(
        new.upper() if old.isupper() else new for old, new in zip(original, lookalike, strict=True)
    )


class _PostsOnce:
    """The bot's HTTP session as a webhook uses it, except that a post Discord answers with a 5xx is
    not sent again blindly: discord.py retries 5xx itself, and without a nonce a post Discord had
    stored would then show twice. The 5xx is raised at once instead, and the sink decides (it looks
    for the message before posting again). Edits and deletes, which are idempotent, are left as they are.
    """

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    def request(self, method: str, url: Any, **options: Any) -> _FirstAnswer:
        return _FirstAnswer(self._session.request(method, url, **options), posting=method.upper() == "POST")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


class _FirstAnswer:
    """``session.request(...)`` as discord.py's webhook adapter enters it, raising on a post's 5xx."""

    def __init__(self, request: Any, *, posting: bool) -> None:
        self._request = request
        self._posting = posting

    async def __aenter__(self) -> aiohttp.ClientResponse:
        response: aiohttp.ClientResponse = await self._request.__aenter__()
        if self._posting and response.status >= 500:
            body = await response.text()
            await self._request.__aexit__(None, None, None)
            raise discord.DiscordServerError(response, body)
        return response

    async def __aexit__(self, *exc_info: object) -> None:
        await self._request.__aexit__(*exc_info)


def posting_once(webhook: discord.Webhook, client: discord.Client) -> discord.Webhook:
    """``webhook`` bound to ``client``'s state (so it can send views) whose posts are never retried
    blindly after a 5xx (see ``_PostsOnce``)."""
    assert webhook.token is not None
    session = cast("aiohttp.ClientSession", _PostsOnce(webhook.session))
    return discord.Webhook.partial(webhook.id, webhook.token, session=session, client=client)


def parent_of(channel: Speakable) -> discord.TextChannel | None:
    """The text channel whose webhook serves ``channel`` (itself, or a thread's parent)."""
    if isinstance(channel, discord.Thread):
        parent = channel.parent
        return parent if isinstance(parent, discord.TextChannel) else None
    return channel


def may_use_webhooks(channel: object) -> bool:
    """Whether replies in ``channel`` can go through a webhook: a text channel (or a thread of one)
    where the bot has Manage Webhooks; never a DM."""
    if not isinstance(channel, Speakable):
        return False
    parent = parent_of(channel)
    if parent is None:
        return False
    return parent.permissions_for(parent.guild.me).manage_webhooks


@dataclass
class _Entry:
    webhook: discord.Webhook | None = field(default=None, repr=False)
    unusable_until: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)


class ChannelWebhooks:
    """The bot's webhook per text channel, found or made on first use and kept for the process.

    ``scheduler``: finding and making webhooks are bot-token requests, so they take their place in the
    write budget like the bot's other writes.
    """

    def __init__(self, client: discord.Client, scheduler: WriteScheduler) -> None:
        self._client = client
        self._scheduler = scheduler
        self._entries: dict[int, _Entry] = {}

    def __repr__(self) -> str:
        return f"ChannelWebhooks({len(self._entries)} channels)"

    async def webhook_for(self, channel: Speakable) -> discord.Webhook | None:
        """The webhook to post in ``channel`` with (with ``thread=`` for a thread), or None: not allowed
        here, or Discord refused lately (the reply then uses the header line)."""
        if not may_use_webhooks(channel):
            return None
        parent = parent_of(channel)
        assert parent is not None
        entry = self._entries.setdefault(parent.id, _Entry())
        if entry.webhook is not None:
            return entry.webhook
        async with entry.lock:  # one lookup per channel, however many replies start at once
            if entry.webhook is None and self._now() >= entry.unusable_until:
                entry.webhook = await self._find_or_make(parent, entry)
            return entry.webhook

    async def replace(self, channel: Speakable, stale: discord.Webhook) -> discord.Webhook | None:
        """After 404 Unknown Webhook (deleted in the settings): forget ``stale`` and find or make
        another, once; None if that is refused too."""
        parent = parent_of(channel)
        if parent is None:
            return None
        entry = self._entries.setdefault(parent.id, _Entry())
        async with entry.lock:
            if entry.webhook is not None and entry.webhook.id != stale.id:
                return entry.webhook  # another reply replaced it meanwhile
            entry.webhook = None
            log.warning("The webhook of channel %s is gone (deleted?); finding or making another", parent.id)
            if may_use_webhooks(channel):
                entry.webhook = await self._find_or_make(parent, entry)
            return entry.webhook

    def set_unusable(self, channel: Speakable) -> None:
        """Webhook delivery failed for a reason that will not pass by itself: replies in this channel
        use the header line for a while."""
        parent = parent_of(channel)
        if parent is None:
            return
        entry = self._entries.setdefault(parent.id, _Entry())
        entry.webhook = None
        entry.unusable_until = self._now() + UNUSABLE_RETRY_S

    async def _find_or_make(self, parent: discord.TextChannel, entry: _Entry) -> discord.Webhook | None:
        me = self._client.user
        if me is None:
            return None
        try:
            existing = await self._budgeted(parent.id, parent.webhooks)
            ours = [w for w in existing if w.user is not None and w.user.id == me.id and w.token]
            if ours:
                return posting_once(ours[0], self._client)
            made = await self._budgeted(
                parent.id,
                lambda: parent.create_webhook(name=WEBHOOK_NAME, reason="Replies of named assistants"),
            )
        except discord.HTTPException as error:
            entry.unusable_until = self._now() + UNUSABLE_RETRY_S
            log.warning(
                "Cannot use a webhook in channel %s (%s, code %s): replies there show a header line instead",
                parent.id,
                error.status,
                error.code,
            )
            return None
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            log.warning("Could not reach Discord for the webhook of channel %s: %r", parent.id, error)
            return None
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            return None  # the scheduler dropped the request: the bot is closing
        log.info("Made webhook %s in channel %s for named assistants' replies", made.id, parent.id)
        return posting_once(made, self._client)

    async def _budgeted(self, channel_id: int, request: Callable[[], Awaitable[_T]]) -> _T:
        """Run one bot-token request in its place in the write budget; its error is raised here."""
        outcome: list[_T] = []

        async def job() -> BaseException | None:
            try:
                outcome.append(await request())
            except (discord.DiscordException, aiohttp.ClientError, OSError, TimeoutError) as error:
                return error
            return None

        error = await self._scheduler.perform(WriteKind.FIRST, channel_id, job, route=WEBHOOK_ROUTE)
        if isinstance(error, BaseException):
            raise error
        return outcome[0]

    def _now(self) -> float:
        return asyncio.get_running_loop().time()
