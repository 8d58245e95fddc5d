"""What the fault suite shares: reading the bot's messages off the stand-in Discord, and waiting on them."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

from standins.discord import FakeChannel, FakeDiscord, StoredMessage
from tests.harness import Harness

WAIT_S = 15.0
WARNING = "⚠️"
MAX_WARNING_CHARS = 300


async def open_thread(h: Harness, text: str, *, reply: str | None = None) -> FakeChannel:
    """Alice mentions the bot in #general; returns the thread it opened once its answer is complete."""
    before = len(h.discord.threads_in(h.general.id))
    await h.discord.user_message(h.general.id, h.alice, f"{h.bot_mention} {text}", mentions_bot=True)
    await h.discord.wait_for(lambda: len(h.discord.threads_in(h.general.id)) > before, timeout=WAIT_S)
    thread = h.discord.threads_in(h.general.id)[before]
    expected = reply if reply is not None else f"echo: alice: {text}"
    await wait_for_content(h.discord, thread.id, expected)
    return thread


async def wait_for_content(server: FakeDiscord, channel_id: int, content: str) -> StoredMessage:
    """Until one of the bot's messages in the channel holds exactly `content`."""

    def find() -> StoredMessage | None:
        return next((m for m in server.bot_messages(channel_id) if m.content == content), None)

    await server.wait_for(lambda: find() is not None, timeout=WAIT_S)
    found = find()
    assert found is not None
    return found


async def wait_for_warning(h: Harness, channel_id: int, after: int) -> StoredMessage:
    """The first of the bot's messages posted after the first `after` ones that carries a warning."""

    def find() -> StoredMessage | None:
        return next((m for m in h.discord.bot_messages(channel_id)[after:] if WARNING in m.content), None)

    await h.discord.wait_for(lambda: find() is not None, timeout=WAIT_S)
    found = find()
    assert found is not None
    return found


def warning_line(content: str) -> str:
    """The one warning line of a message (asserting there is exactly one)."""
    lines = [line for line in content.splitlines() if WARNING in line]
    assert len(lines) == 1, content
    return lines[0]


def assert_clear_sentence(line: str) -> None:
    """One short sentence a person can read: no traceback, no repr, no JSON, ends with a full stop."""
    text = line.split(WARNING, 1)[1].strip()
    assert text and text[0].isupper(), line
    assert text.endswith("."), line
    assert len(text) <= MAX_WARNING_CHARS, line
    for leak in ("Traceback", "Error(", "Exception", "{'", '{"', "None", "httpx", "aiohttp"):
        assert leak not in text, line


@contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound (so nobody else takes it) but not listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])
    finally:
        sock.close()
