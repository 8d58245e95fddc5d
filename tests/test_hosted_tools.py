"""OpenAI-hosted tools (code interpreter, web search): declared, streamed, shown in Discord.

Engine tests run the core against the stand-in OpenAI server, which answers with the real shapes
(`code_interpreter_call` / `web_search_call` items and their SSE events, `url_citation` and
`container_file_citation` annotations, container file downloads); the end-to-end tests add the real
bot and the stand-in Discord.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TypeVar

import pytest

from bot.config import HOSTED_TOOLS, GuildSettings, load_config
from bot.engine import ConversationEngine, UserTurn
from bot.engine.events import (
    Citation,
    CodeRun,
    Completed,
    GeneratedFile,
    ToolFinished,
    ToolStarted,
    TurnEvent,
)
from bot.engine.responses_backend import ResponsesBackend
from bot.errors import ConfigError
from bot.hosted_tools import ALL_HOSTED_TOOLS
from bot.tooling import ConfirmationOutcome
from standins.discord import FakeDiscord, StoredMessage
from standins.openai import (
    CodeInterpreterCall,
    ContainerFile,
    FakeOpenAI,
    FunctionCall,
    Reply,
    UrlCitation,
    WebSearchCall,
)
from standins.png import encode_png
from tests.command_support import answer_id_of, run
from tests.conftest import ServicesFactory, settings
from tests.harness import Harness, running_bot
from tests.test_stream import FakeSink, done, run_virtual, stream
from tests.tool_support import (
    Clock,
    ScriptedConfirmer,
    run_turn,
    sent_outputs,
    services_with_tools,
    turn_context,
)

WAIT_S = 10.0
CODE = "import csv\nrows = [(x, x * x) for x in range(5)]\nprint(sum(y for _, y in rows))\n"
LOGS = "30\n"
CSV = b"x,y\n0,0\n1,1\n2,4\n3,9\n4,16\n"
PNG = encode_png(4, 4, (0, 128, 255))
SALES_URL = "https://example.com/sales?utm_source=openai"
NEWS_URL = "https://news.example.org/2026/retail"
BOTH = ("code_interpreter", "web_search")


def hosted_settings(*tools: str, **overrides: object) -> GuildSettings:
    return settings(enabled_tools=tools, **overrides)


E = TypeVar("E")


def of_type(events: list[TurnEvent], kind: type[E]) -> list[E]:
    return [e for e in events if isinstance(e, kind)]


def final(events: list[TurnEvent]) -> Completed:
    last = events[-1]
    assert isinstance(last, Completed), last
    return last


# ------------------------------------------------------------------------------ declaring them


def test_each_hosted_tool_is_a_setting_and_has_its_api_definition() -> None:
    assert tuple(tool.name for tool in ALL_HOSTED_TOOLS) == HOSTED_TOOLS
    definitions = {tool.name: tool.definition() for tool in ALL_HOSTED_TOOLS}
    assert definitions == {
        "code_interpreter": {"type": "code_interpreter", "container": {"type": "auto"}},
        "web_search": {"type": "web_search"},
    }
    assert not set(HOSTED_TOOLS) & set(GuildSettings().enabled_tools), (
        "hosted tools cost money: off by default"
    )


async def test_hosted_tools_are_sent_only_when_enabled_and_never_on_the_chat_backend(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    await run_turn(services, "plain", turn_context(families=()))
    await run_turn(services, "search", turn_context(families=("web_search",)))
    await run_turn(services, "both", turn_context(families=BOTH))
    plain, search, both = (r.json for r in fake_openai.requests_to("/v1/responses"))
    assert "tools" not in plain and "include" not in plain
    assert search["tools"] == [{"type": "web_search"}] and "include" not in search
    assert both["tools"] == [
        {"type": "code_interpreter", "container": {"type": "auto"}},
        {"type": "web_search"},
    ]
    assert both["include"] == ["code_interpreter_call.outputs"]

    # Settings that break the rule (e.g. built in code) still never reach a Chat Completions server.
    chat_context = turn_context(families=BOTH, backend="chat")
    final_event = (await run_turn(services, "chat", chat_context))[-1]
    assert isinstance(final_event, Completed)
    assert "tools" not in fake_openai.requests_to("/v1/chat/completions")[0].json


def test_a_config_file_with_hosted_tools_on_the_chat_backend_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[defaults]\nbackend = "chat"\nenabled_tools = ["knowledge", "web_search"]\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, required=True, env={})
    assert str(info.value) == (
        f"{path}: defaults.enabled_tools has web_search, a tool OpenAI hosts that needs "
        'backend = "responses" (not "chat")'
    )
    path.write_text('[defaults]\nbackend = "responses"\nenabled_tools = ["web_search", "code_interpreter"]\n')
    assert load_config(path, required=True, env={}).defaults.enabled_tools == (
        "web_search",
        "code_interpreter",
    )


# ------------------------------------------------------------------------------ through the engine


async def test_code_run_with_its_logs_and_files_arrives_on_completed(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    fake_openai.responses.push(
        Reply(
            "The sum of squares is 30; the table and the chart are attached.",
            hosted=[
                CodeInterpreterCall(
                    CODE,
                    LOGS,
                    files=[ContainerFile("squares.csv", CSV)],
                    images=[ContainerFile("chart.png", PNG)],
                )
            ],
        )
    )
    events = await run_turn(
        services, "sum of squares to 4, as a table and a chart", turn_context(families=BOTH)
    )

    [started] = of_type(events, ToolStarted)
    assert (started.name, started.label) == ("code_interpreter", "Running code…")
    [finished] = of_type(events, ToolFinished)
    assert finished.ok and finished.call_id == started.call_id
    run_event = CodeRun(started.call_id, CODE, LOGS)
    assert of_type(events, CodeRun) == [run_event]
    assert events.index(started) < events.index(finished) < events.index(run_event)

    completed = final(events)
    assert completed.code_runs == (run_event,)
    # chart.png is both cited and an image output: downloaded once, never twice.
    assert completed.files == (GeneratedFile("squares.csv", CSV), GeneratedFile("chart.png", PNG))
    downloads = [r.path for r in fake_openai.requests_to("/v1/containers", "GET")]
    assert len(downloads) == 2 and all(path.endswith("/content") for path in downloads)
    assert completed.text.startswith("The sum of squares is 30")


async def test_web_search_citations_become_sources_on_completed(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    fake_openai.responses.push(
        Reply(
            "Retail sales rose 5% in 2026.",
            hosted=[
                WebSearchCall(
                    "retail sales 2026",
                    citations=[
                        UrlCitation(SALES_URL, "Sales report", anchor="rose 5%"),
                        UrlCitation(NEWS_URL, "Retail news"),
                        UrlCitation(SALES_URL, "Sales report (again)"),
                    ],
                )
            ],
        )
    )
    events = await run_turn(services, "how did retail do?", turn_context(families=("web_search",)))
    [started] = of_type(events, ToolStarted)
    assert started.label == "Searching the web…"
    [finished] = of_type(events, ToolFinished)
    assert finished.summary == "Searched the web for “retail sales 2026”"
    completed = final(events)
    assert completed.citations == (Citation("Sales report", SALES_URL), Citation("Retail news", NEWS_URL))
    assert completed.files == () and completed.code_runs == ()


async def test_files_too_large_or_gone_are_named_not_downloaded(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await make_services()
    backend = ResponsesBackend(
        services.openai,
        services.storage,
        services.tools,
        services.state.model_gate,
        max_tool_rounds=2,
        max_file_bytes=1000,
    )
    engine = ConversationEngine(
        storage=services.storage,
        state=services.state,
        backends={"responses": backend},
        config=services.config.engine,
    )
    missing = {
        "type": "container_file_citation",
        "container_id": "cntr_gone",
        "file_id": "cfile_gone",
        "filename": "/mnt/data/ghost.txt",
        "start_index": 0,
        "end_index": 0,
    }
    fake_openai.responses.push(
        Reply(
            "Done.",
            hosted=[CodeInterpreterCall(CODE, files=[ContainerFile("big.bin", b"\0" * 5000)])],
            annotations=[missing],
        )
    )
    context = turn_context(families=("code_interpreter",))
    user_turn = UserTurn(text="make a big file", author_id=7, author_name="Ada")
    events = [e async for e in engine.reply("channel:77", user_turn, context)]
    assert final(events).files == (
        GeneratedFile("ghost.txt", b"", "unavailable"),
        GeneratedFile("big.bin", b"", "too_large", size_bytes=5000),
    )


async def test_web_search_then_a_confirmed_booking_in_one_turn(
    make_services: ServicesFactory, fake_openai: FakeOpenAI
) -> None:
    services = await services_with_tools(make_services, Clock())
    confirmer = ScriptedConfirmer(ConfirmationOutcome.APPROVED)
    booking = {"restaurant": "Trattoria Roma", "party_size": 4, "time": "2026-05-05T20:00", "notes": None}
    fake_openai.responses.push(
        Reply(
            "Trattoria Roma has great reviews.",
            hosted=[WebSearchCall("best trattoria reviews", citations=[UrlCitation(NEWS_URL, "Reviews")])],
            calls=[FunctionCall("book_restaurant", booking)],
        ),
        Reply("Booked for 4 at 20:00 tomorrow."),
    )
    context = turn_context(confirmer, families=("restaurants", "web_search"))
    events = await run_turn(
        services, "find a well reviewed trattoria and book it for 4 tomorrow 8pm", context
    )

    assert [e.name for e in of_type(events, ToolStarted)] == ["web_search", "book_restaurant"]
    assert all(e.ok for e in of_type(events, ToolFinished))
    assert len(confirmer.asked) == 1
    completed = final(events)
    assert (
        completed.text
        == "Trattoria Roma has great reviews. ([news.example.org]("
        + NEWS_URL
        + "))\n\nBooked for 4 at 20:00 tomorrow."
    )
    assert completed.citations == (Citation("Reviews", NEWS_URL),)
    first = fake_openai.requests_to("/v1/responses")[0].json
    assert {t["type"] for t in first["tools"]} == {"function", "web_search"}
    [output] = sent_outputs(fake_openai, "responses", 1)
    assert output["ok"] is True
    assert len(await services.storage.bookings.reservations_for(7, 42, since=0)) == 1


# ------------------------------------------------------------------------------ how the reply shows them


def test_files_that_could_not_be_fetched_are_named_in_the_reply() -> None:
    completed = done(
        "Here you go.",
        files=(
            GeneratedFile("ok.txt", b"fine"),
            GeneratedFile("huge.bin", b"", "too_large", size_bytes=30 * 1024 * 1024),
            GeneratedFile("gone.txt", b"", "unavailable"),
            GeneratedFile("eleventh.png", b"", "too_many"),
        ),
    )
    result, sink = run_virtual(lambda: stream([completed]))
    [message] = sink.messages()
    assert "`huge.bin` (30.0 MB) is too large to fetch" in message
    assert "`gone.txt` could not be fetched" in message
    assert "`eleventh.png` not attached: too many files" in message
    assert sink.attachments[result.message_ids[0]] == ("ok.txt",)


def test_cited_links_in_the_answer_lose_their_embeds_and_sandbox_links_their_path() -> None:
    text = (
        f"Sales rose ([example.com]({SALES_URL})). More: {NEWS_URL}. Unrelated: https://other.example/x. "
        "Chart: [chart.png](sandbox:/mnt/data/chart.png)"
    )
    citations = (Citation("Sales", SALES_URL), Citation("News", NEWS_URL))
    _, sink = run_virtual(lambda: stream([done(text, citations=citations)], sink=FakeSink()))
    [message] = sink.messages()
    assert message.startswith(
        f"Sales rose ([example.com](<{SALES_URL}>)). More: <{NEWS_URL}>. Unrelated: https://other.example/x. "
        "Chart: `chart.png`\n\n-# Sources\n"
    )
    assert "sandbox:" not in message


# ------------------------------------------------------------------------------ end to end


async def ask_in_a_thread(h: Harness, text: str, *, until: str) -> list[StoredMessage]:
    """Alice mentions the bot; waits until the bot's messages in the new thread contain `until`."""
    await h.discord.user_message(h.general.id, h.alice, f"{h.bot_mention} {text}", mentions_bot=True)
    await h.discord.wait_for(
        lambda: any(c.is_thread and c.parent_id == h.general.id for c in h.discord.channels.values()),
        timeout=WAIT_S,
    )
    thread = next(c for c in h.discord.channels.values() if c.is_thread and c.parent_id == h.general.id)
    await h.discord.wait_for(
        lambda: until in "\n".join(m.content for m in h.discord.bot_messages(thread.id)), timeout=WAIT_S
    )
    return h.discord.bot_messages(thread.id)


def unwrapped_links(text: str) -> list[str]:
    """Links Discord would embed: any http(s) URL not inside <...>."""
    return re.findall(r"(?<!<)https?://\S+", text)


def assert_no_pings(server: FakeDiscord) -> None:
    writes = server.calls_of("message_create") + server.calls_of("message_edit")
    assert writes
    for call in writes:
        mentions = call.allowed_mentions
        assert mentions is not None and mentions.get("parse") == [] and not mentions.get("replied_user"), (
            mentions
        )


async def test_code_run_is_shown_with_its_output_and_file_attached(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    fake_openai.responses.push(
        Reply(
            "The sum of squares is 30. Here is the chart:",
            hosted=[CodeInterpreterCall(CODE, LOGS, images=[ContainerFile("chart.png", PNG)])],
            delta_delay_s=0.02,
        )
    )
    async with running_bot(tmp_path, fake_openai, defaults={"enabled_tools": ["code_interpreter"]}) as h:
        [message] = await ask_in_a_thread(h, "chart the squares", until="-# Output")
        content = message.content
        assert content.startswith(
            "The sum of squares is 30. Here is the chart: `chart.png`\n\n-# 🐍 Code run\n"
        )
        assert f"```python\n{CODE.strip()}\n```" in content
        assert f"-# Output\n```\n{LOGS.strip()}\n```" in content
        [attachment] = message.data["attachments"]
        assert attachment["filename"] == "chart.png"
        assert h.discord.file_bytes(int(attachment["id"])) == PNG
        first_post = h.discord.calls_of("message_create")[0].json["content"]
        assert "Running code…" in first_post  # the activity line while the code ran
        assert_no_pings(h.discord)


async def test_web_sources_are_numbered_links_without_embeds_or_pings(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    fake_openai.responses.push(
        Reply(
            "Retail sales rose 5% in 2026, says @everyone.",
            hosted=[
                WebSearchCall(
                    "retail sales 2026",
                    citations=[
                        UrlCitation(SALES_URL, "Sales report", anchor="rose 5%"),
                        UrlCitation(NEWS_URL, "News for @everyone <@123>"),
                    ],
                )
            ],
        )
    )
    async with running_bot(tmp_path, fake_openai, defaults={"enabled_tools": ["web_search"]}) as h:
        [message] = await ask_in_a_thread(h, "how did retail do?", until="-# 2.")
        content = message.content
        assert content.endswith(
            f"-# Sources\n-# 1. [Sales report](<{SALES_URL}>)\n"
            f"-# 2. [News for @everyone <@123>](<{NEWS_URL}>)"
        )
        assert f"([news.example.org](<{NEWS_URL}>))" in content  # the inline source too
        assert unwrapped_links(content) == []
        assert message.data["mentions"] == [] and not message.data["mention_everyone"]
        assert_no_pings(h.discord)


async def test_search_then_book_with_a_click_in_one_turn(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    # Open every day from 11:30 to 23:00, so "tomorrow at 8pm" is bookable whatever the real date.
    booking = {"restaurant": "Pizzeria Napoli", "party_size": 2, "time": "tomorrow at 8pm", "notes": None}
    fake_openai.responses.push(
        Reply(
            "Pizzeria Napoli is the best rated.",
            hosted=[WebSearchCall("best pizza", citations=[UrlCitation(NEWS_URL, "Pizza guide")])],
            calls=[FunctionCall("book_restaurant", booking)],
        ),
        Reply("Your table is booked."),
    )
    tools = ["restaurants", "web_search"]
    async with running_bot(tmp_path, fake_openai, defaults={"enabled_tools": tools}) as h:
        await h.discord.user_message(
            h.general.id, h.alice, f"{h.bot_mention} find the best pizza and book for 2", mentions_bot=True
        )
        prompt = await h.discord.wait_for_message(lambda m: bool(m.components), timeout=WAIT_S)
        await h.discord.click_button(prompt.id, answer_id_of(prompt, "confirm"), user=h.alice)
        await h.discord.wait_for(
            lambda: any("-# Sources" in m.content for m in h.discord.bot_messages(prompt.channel_id)),
            timeout=WAIT_S,
        )
        answer = next(m for m in h.discord.bot_messages(prompt.channel_id) if "-# Sources" in m.content)
        assert answer.content.startswith("Pizzeria Napoli is the best rated.")
        assert "Your table is booked." in answer.content
        assert answer.content.endswith(f"-# 1. [Pizza guide](<{NEWS_URL}>)")
        assert unwrapped_links(answer.content) == []
        reservations = await h.services.storage.bookings.reservations_for(
            h.alice.id, h.world.guild.id, since=0
        )
        assert len(reservations) == 1
        assert_no_pings(h.discord)


async def test_the_chat_backend_refuses_hosted_tools_in_one_sentence(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with running_bot(tmp_path, fake_openai, defaults={"backend": "chat"}) as h:
        answer = await run(
            h, "config set", {"setting": "enabled_tools", "value": "+code_interpreter"}, user=h.world.admin
        )
        assert answer.ephemeral
        assert "only work with the `responses` backend" in answer.text
        assert answer.text.count(". ") == 0, "one sentence"
        assert await h.services.storage.settings.overrides(h.world.guild.id) == {}


async def test_help_lists_the_hosted_tools_a_guild_switched_on(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    async with running_bot(tmp_path, fake_openai, defaults={"enabled_tools": ["knowledge", *BOTH]}) as h:
        answer = await run(h, "help", user=h.alice)
        assert "run Python code" in answer.text and "search the web" in answer.text
