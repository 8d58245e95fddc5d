"""The chat backend against a real OpenAI-compatible server: llama.cpp's, from llama-cpp-python.

The real bot process (`python -m bot`, backend "chat", no OPENAI_API_KEY at all) answers in the
stand-in Discord through `python -m llama_cpp.server` serving a tiny model (tests/llama_server.py).
A small proxy between the two records what the bot sent and what the server streamed back, and can
name a tool in `tool_choice` (the tiny model would never choose one): llama.cpp then writes the call's
arguments under a grammar made from the tool's schema, and streams the call as it does for any model.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.command_support import Answer
from tests.faults.process_support import Rig, bot_process, open_thread, stand_ins, stop
from tests.faults.support import WAIT_S, wait_for_content
from tests.llama_server import (
    CHAT_MODEL,
    EMBEDDING_LENGTH,
    EMBEDDING_MODEL,
    REPLY,
    LlamaServer,
    running_llama_server,
    write_tiny_model,
)

pytestmark = pytest.mark.slow

CHAT_PATH = "/v1/chat/completions"
EMBEDDINGS_PATH = "/v1/embeddings"
SMALL_WINDOW = 1024
FORCED_TOOL = "list_reservations"  # read-only, no arguments: runs at once, no Confirm to click


@dataclass
class RecordingProxy:
    """Passes every request on to the llama.cpp server; keeps each chat request as the server got it
    and the chunks it streamed back. `force_tool` names a tool in the next chat request's
    `tool_choice` (once)."""

    upstream: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    embedding_requests: list[dict[str, Any]] = field(default_factory=list)
    streams: list[list[dict[str, Any]]] = field(default_factory=list)
    force_tool: str | None = None
    base_url: str = ""

    async def forward(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if request.path == CHAT_PATH:
            sent = json.loads(body)
            if self.force_tool is not None:
                sent["tool_choice"] = {"type": "function", "function": {"name": self.force_tool}}
                self.force_tool = None
            self.requests.append(sent)
            body = json.dumps(sent).encode()
        elif request.path == EMBEDDINGS_PATH:
            self.embedding_requests.append(json.loads(body))
        headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method, self.upstream + request.path_qs, data=body, headers=headers
            ) as got,
        ):
            response = web.StreamResponse(status=got.status)
            response.content_type = got.content_type
            await response.prepare(request)
            chunks: list[dict[str, Any]] = []
            async for line in got.content:
                await response.write(line)
                text = line.decode().strip()
                if text.startswith("data: {"):
                    chunks.append(json.loads(text.removeprefix("data: ")))
            if request.path == CHAT_PATH:
                self.streams.append(chunks)
            await response.write_eof()
            return response

    def deltas(self, number: int) -> list[dict[str, Any]]:
        """The deltas of the `number`-th chat request's stream."""
        return [choice["delta"] for chunk in self.streams[number] for choice in chunk["choices"]]


@contextlib.asynccontextmanager
async def recording_proxy(server: LlamaServer) -> AsyncIterator[RecordingProxy]:
    proxy = RecordingProxy(server.base_url.removesuffix("/v1"))
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy.forward)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    proxy.base_url = f"http://{host}:{port}/v1"
    try:
        yield proxy
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def bot_on_llama(
    tmp_path: Path,
    server: LlamaServer,
    *,
    embeddings: bool = False,
    server_fails: bool = False,
    window_known: bool = True,
    tools: bool = True,
) -> AsyncIterator[tuple[Rig, RecordingProxy]]:
    """The bot process on the chat backend, through the proxy to the llama.cpp server, with no OpenAI key;
    `embeddings`: knowledge embeds on that server too; `server_fails`: the test expects the server to
    log a failure (else its log must have none); `window_known`: `context_tokens` is set to the
    server's window; `tools`: the guild's default tools (else none)."""
    async with stand_ins(tmp_path, "chat") as rig, recording_proxy(server) as proxy:
        rig.openai_api_key = None
        config = tmp_path / "config.toml"
        defaults = f'[defaults]\nmodel = "{CHAT_MODEL}"\n' + ("" if tools else "enabled_tools = []\n")
        text = config.read_text(encoding="utf-8").replace("[defaults]\n", defaults)
        text += f'\n[chat_backend]\nbase_url = "{proxy.base_url}"\n'
        if window_known:
            text += f"context_tokens = {server.context_tokens}\n"
        if embeddings:
            text += f'embedding_model = "{EMBEDDING_MODEL}"\n'
        config.write_text(text, encoding="utf-8")
        server_lines = len(server.output)
        async with bot_process(rig) as process:
            yield rig, proxy
            await stop(process)  # the turns close, their usage is counted, and the bot exits 0
        if not server_fails:
            assert server.troubles_since(server_lines) == []  # the server took every request
        assert "OPENAI_API_KEY" not in rig.env()
        assert rig.openai.requests == []  # nothing went to OpenAI


def streamed_text(proxy: RecordingProxy, number: int) -> str:
    return "".join(delta.get("content") or "" for delta in proxy.deltas(number))


def history(rig: Rig) -> list[dict[str, Any]]:
    """The stored history (each test has one conversation)."""
    return [json.loads(payload) for (payload,) in rig.rows("SELECT payload FROM chat_messages ORDER BY id")]


async def test_a_mention_is_answered_from_the_server_stream_and_the_follow_up_carries_the_history(
    tmp_path: Path, llama_server: LlamaServer
) -> None:
    async with bot_on_llama(tmp_path, llama_server) as (rig, proxy):
        thread = await open_thread(rig, "hello there")
        answer = await wait_for_content(rig.discord, thread.id, REPLY)
        assert streamed_text(proxy, 0) == REPLY
        assert len([d for d in proxy.deltas(0) if d.get("content")]) > 1  # it came in pieces
        [first] = proxy.requests
        assert (
            first["model"] == CHAT_MODEL
            and first["stream"] is True
            and [m["role"] for m in first["messages"]] == ["system", "user"]
        )
        assert first["messages"][1]["content"] == "alice: hello there"
        assert {tool["function"]["name"] for tool in first["tools"]} >= {FORCED_TOOL}

        await rig.discord.user_message(thread.id, rig.world.alice, "and again?")
        await rig.discord.wait_for(
            lambda: [m.content for m in rig.discord.bot_messages(thread.id)] == [REPLY, REPLY], timeout=WAIT_S
        )
        second = proxy.requests[1]["messages"]
        assert second[1:] == [
            {"role": "user", "content": "alice: hello there"},
            {"role": "assistant", "content": REPLY},
            {"role": "user", "content": "alice: and again?"},
        ]
        assert answer.content == REPLY
    assert rig.rows("SELECT status FROM turns ORDER BY id") == [("completed",), ("completed",)]
    assert [m["content"] for m in history(rig)] == [
        "alice: hello there",
        REPLY,
        "alice: and again?",
        REPLY,
    ]
    [(turns, input_tokens)] = rig.rows("SELECT SUM(turns), SUM(input_tokens) FROM usage_daily")
    assert turns == 2 and input_tokens > 0  # estimated: the server reports no usage in a stream


async def test_a_tool_call_streamed_by_the_server_is_run_and_its_result_sent_back(
    tmp_path: Path, llama_server: LlamaServer
) -> None:
    async with bot_on_llama(tmp_path, llama_server) as (rig, proxy):
        proxy.force_tool = FORCED_TOOL
        thread = await open_thread(rig, "what are my reservations?")
        await wait_for_content(rig.discord, thread.id, REPLY)
        called = [call for delta in proxy.deltas(0) for call in delta.get("tool_calls") or []]
        assert called and {call["function"]["name"] for call in called} == {FORCED_TOOL}
        arguments = "".join(call["function"]["arguments"] or "" for call in called)
        assert json.loads(arguments) == {}  # the grammar from the tool's schema: no arguments

        assert len(proxy.requests) == 2 and "tool_choice" not in proxy.requests[1]
        sent = proxy.requests[1]["messages"]
        assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool"]
        [call] = sent[2]["tool_calls"]
        assert call["function"] == {"name": FORCED_TOOL, "arguments": arguments}
        assert sent[3]["tool_call_id"] == call["id"]
        assert json.loads(sent[3]["content"]) == {"ok": True, "reservations": []}
        assert streamed_text(proxy, 1) == REPLY

        # The next turn sends the stored call and its result back: the server takes them as history.
        await rig.discord.user_message(thread.id, rig.world.alice, "thanks")
        await rig.discord.wait_for(
            lambda: [m.content for m in rig.discord.bot_messages(thread.id)] == [REPLY, REPLY], timeout=WAIT_S
        )
        answered = {"role": "assistant", "content": REPLY}
        thanks = {"role": "user", "content": "alice: thanks"}
        assert proxy.requests[2]["messages"][1:] == [*sent[1:], answered, thanks]
    [(call_id, name, status)] = rig.rows("SELECT call_id, name, status FROM tool_calls")
    assert (call_id, name, status) == (call["id"], FORCED_TOOL, "done")
    assert rig.rows("SELECT status FROM turns") == [("completed",), ("completed",)]
    assert [m["role"] for m in history(rig)] == [
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
        "assistant",
    ]


async def command(rig: Rig, name: str, options: dict[str, Any]) -> Answer:
    """Alice runs `/name` in #general; the message that answered it."""
    record = await rig.discord.slash_command(
        name, options, user=rig.world.alice, channel_id=rig.world.general.id
    )
    await rig.discord.wait_for(lambda: bool(record.followup_ids), timeout=WAIT_S)
    return Answer(record, rig.discord.message(record.followup_ids[-1]))


async def test_remember_and_search_embed_on_the_same_server(
    tmp_path: Path, llama_server: LlamaServer
) -> None:
    async with bot_on_llama(tmp_path, llama_server, embeddings=True) as (rig, proxy):
        saved = await command(rig, "remember", {"text": "The wifi password is hunter2."})
        assert not saved.ephemeral and "Remembered entry" in saved.text, saved.text
        found = await command(rig, "search", {"query": "wifi password"})
        assert not found.ephemeral and "hunter2" in found.text, found.text
        assert EMBEDDING_MODEL in found.text  # the footer names the model
        assert [request["model"] for request in proxy.embedding_requests] == [EMBEDDING_MODEL] * 2
        # The answer in a thread still comes from the chat model (the server swaps models per request).
        thread = await open_thread(rig, "hello")
        await wait_for_content(rig.discord, thread.id, REPLY)
    [(model, dims)] = rig.rows("SELECT model, dims FROM knowledge_entries")
    assert EMBEDDING_MODEL in model and dims == EMBEDDING_LENGTH  # the tiny model's vectors


@pytest.fixture(scope="module")
def small_llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """A server with a window of 1,024 tokens (the tiny model's text costs about a token a byte)."""
    model = tmp_path_factory.mktemp("small-llama") / "tiny-llama.gguf"
    write_tiny_model(model)
    with running_llama_server(model, context_tokens=SMALL_WINDOW) as server:
        yield server


async def test_a_prompt_longer_than_the_window_ends_the_turn_with_the_context_size_hint(
    tmp_path: Path, small_llama_server: LlamaServer
) -> None:
    # llama-cpp-python checks the prompt's length only once the stream has begun: the bot gets HTTP 200
    # and a stream with no chunk at all, never a context-length error it could learn the window from.
    # The bot reads that as the context error it is; with no history to leave out, it is not retried.
    server = small_llama_server
    lines = len(server.output)
    async with bot_on_llama(tmp_path, server, server_fails=True) as (rig, proxy):
        thread = await open_thread(rig, "word " * 300)
        failed = await rig.discord.wait_for_message(
            lambda m: "context window" in m.content, channel_id=thread.id, timeout=WAIT_S
        )
        assert proxy.streams == [[]]
        assert rig.log is not None and rig.log.matching(lambda line: "without sending anything" in line)
    assert failed.content.startswith("⚠️") and "too long for the model's context" in failed.content
    assert any(f"exceed context window of {SMALL_WINDOW}" in line for line in server.output[lines:])
    assert rig.rows("SELECT status FROM turns") == [("failed",)]
    assert history(rig) == []  # a failed turn leaves no history


async def test_a_history_over_an_undeclared_window_is_retried_shorter_and_answered(
    tmp_path: Path, small_llama_server: LlamaServer
) -> None:
    # No `context_tokens`: the bot learns nothing from llama-cpp-python's empty stream but that the
    # request was too long, and retries it once with a quarter of the history.
    server = small_llama_server
    async with bot_on_llama(tmp_path, server, server_fails=True, window_known=False, tools=False) as (
        rig,
        proxy,
    ):
        thread = await open_thread(rig, "a " * 150)
        await wait_for_content(rig.discord, thread.id, REPLY)

        def answered(count: int) -> bool:
            shown = [m.content[: len(REPLY)] for m in rig.discord.bot_messages(thread.id)]
            return shown == [REPLY] * count

        for round_number in range(1, 4):
            await rig.discord.user_message(thread.id, rig.world.alice, f"{round_number} " * 150)
            await rig.discord.wait_for(functools.partial(answered, round_number + 1), timeout=WAIT_S)
    replies = [m.content for m in rig.discord.bot_messages(thread.id)]  # final: the bot has stopped
    emptied = [n for n, chunks in enumerate(proxy.streams) if not chunks]
    assert emptied, "the history never outgrew the window: make the messages longer"
    retried = emptied[0] + 1
    assert len(proxy.requests[retried]["messages"]) < len(proxy.requests[emptied[0]]["messages"])
    assert proxy.requests[retried]["messages"][-1] == proxy.requests[emptied[0]]["messages"][-1]
    assert all(reply.startswith(REPLY) for reply in replies) and len(replies) == 4, (replies, emptied)
    assert any("Earlier messages" in reply for reply in replies), replies  # the history note
    assert rig.rows("SELECT status FROM turns") == [("completed",)] * 4
