"""Requests that fit a chat server's window: the instructions, the tools that fit, the history left,
and room for the answer; the window from the setting, the server's model list or its first refusal."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.engine.context_fit import answer_reserve, fit_request, schema_tokens
from standins.openai import FakeOpenAI
from tests.conftest import settings
from tests.faults.support import open_thread, wait_for_content
from tests.harness import running_bot

MODEL = settings().model
WORDS = " ".join(["word"] * 200)


def tool(name: str, words: int) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": name, "description": "word " * words, "parameters": {"type": "object"}},
    }


@given(
    window=st.integers(512, 32_000),
    fixed=st.integers(0, 4_000),
    history_budget=st.integers(0, 20_000),
    sizes=st.lists(st.integers(1, 600), max_size=12),
)
def test_what_is_sent_fits_the_window_and_keeps_the_tools_order(
    window: int, fixed: int, history_budget: int, sizes: list[int]
) -> None:
    tools = [tool(f"tool_{i}", size) for i, size in enumerate(sizes)]
    fit = fit_request(window=window, history_budget=history_budget, fixed_tokens=fixed, tools=tools)
    room = max(0, window - answer_reserve(window) - fixed)
    assert schema_tokens(fit.tools) <= room // 2
    assert fit.history_budget <= history_budget
    assert fixed + schema_tokens(fit.tools) + fit.history_budget + answer_reserve(window) <= max(
        window, fixed + answer_reserve(window)
    )
    assert [t for t in tools if t in fit.tools] == fit.tools  # order kept
    assert set(fit.left_out) == {t["function"]["name"] for t in tools if t not in fit.tools}


def test_without_a_known_window_every_tool_goes_and_the_history_gets_the_rest() -> None:
    tools = [tool("a", 100), tool("b", 100)]
    fit = fit_request(window=None, history_budget=8000, fixed_tokens=50, tools=tools)
    assert fit.tools == tools and fit.left_out == ()
    assert fit.history_budget == 8000 - schema_tokens(tools)


async def converse(tmp_path: Path, fake_openai: FakeOpenAI, **chat_backend: Any) -> list[int]:
    """A mention and two follow-ups on the chat backend with every function tool on; the statuses of
    the server's answers."""
    async with running_bot(
        tmp_path,
        fake_openai,
        defaults={"backend": "chat", "enabled_tools": ["restaurants", "rides", "knowledge"]},
        chat_backend=chat_backend,
    ) as h:
        thread = await open_thread(h, f"first {WORDS}")
        for text in (f"second {WORDS}", f"third {WORDS}"):
            await h.discord.user_message(thread.id, h.alice, text)
            await wait_for_content(h.discord, thread.id, f"echo: alice: {text}")
    return [r.status or 0 for r in fake_openai.requests_to("/v1/chat/completions")]


@pytest.mark.parametrize("source", ["setting", "model list"])
async def test_a_small_window_is_known_before_the_first_request_and_tools_that_do_not_fit_stay_home(
    tmp_path: Path, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture, source: str
) -> None:
    fake_openai.context_windows[MODEL] = 2048
    fake_openai.chat_dialect = "vllm" if source == "model list" else "llama.cpp"
    settings = {"context_tokens": 2048} if source == "setting" else {}
    with caplog.at_level(logging.INFO):
        statuses = await converse(tmp_path, fake_openai, **settings)
    assert statuses == [200, 200, 200]  # never refused: each request was cut to fit first
    first = fake_openai.requests_to("/v1/chat/completions")[0].json
    assert 0 < len(first["tools"]) < 9
    warnings = [r.getMessage() for r in caplog.records if "cannot hold every tool" in r.getMessage()]
    assert len(warnings) == 1 and "2048 tokens" in warnings[0] and "-c" in warnings[0]


async def test_a_window_learned_from_the_first_refusal_holds_for_the_next_turns(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    fake_openai.context_windows[MODEL] = 2048  # said only in its refusal (as llama.cpp's server does)
    fake_openai.chat_dialect = "llama.cpp"
    statuses = await converse(tmp_path, fake_openai)
    assert statuses == [400, 200, 200, 200]  # one refusal, retried with the tools that fit; never again
