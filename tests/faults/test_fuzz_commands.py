"""Every slash option fuzzed: first the core path behind each command with many values, then the
commands themselves through the stand-in Discord with a few dozen each.

Values stay inside what Discord itself lets through (string lengths, integer ranges, choices), since
Discord validates options before the bot sees them; inside that, anything goes: whitespace, control
characters, unicode, mentions, markdown, numbers in every spelling, sizes at the limits.

What must hold: nothing raises but the bot's own `UserFacingError` (a sentence for the user); through
Discord, every interaction is acknowledged once, in time, and answered either with the command's
result or with an ephemeral sentence, and nothing is logged at ERROR (an unhandled exception).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from bot.config import GuildSettings
from bot.errors import UserFacingError
from bot.extraction import EXTRACTION_KINDS, extract
from bot.guild_settings import SETTING_NAMES, InvalidSettingError, parse_setting_value, setting_name
from bot.images import MAX_IMAGES, MAX_PROMPT_CHARS, SIZE_CHOICES, generate_images
from bot.knowledge import MAX_QUERY_CHARS, MAX_SEARCH_RESULTS
from bot.services import Services
from standins.discord import (
    CALLBACK_AUTOCOMPLETE,
    CALLBACK_MESSAGE,
    CALLBACK_MODAL,
    FakeChannel,
    FakeDiscord,
    FakeUser,
    InteractionRecord,
    StoredMessage,
    Upload,
)
from standins.openai import FakeOpenAI, HttpError, ImageReply, Reply
from tests.conftest import fake_secrets, make_config
from tests.harness import Harness, running_bot
from tests.test_extraction import SAMPLES

GUILD = 42
ADMIN = 1
MAX_TEXT_OPTION_CHARS = 6000  # Discord's limit for a string option
MAX_INTEGER_OPTION = 2**53  # Discord's integer options are JSON-safe integers
MAX_SETTING_ERROR_CHARS = 500
MAX_CHOICES = 25
MAX_CHOICE_NAME_CHARS = 100
WAIT_S = 15.0
GENERIC_FAILURE = "Something went wrong on the bot's side"
SENTENCE_ENDS = (".", "!", "?", "…", ")", "`", "*")
FAST = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# -- values a person could type ---------------------------------------------------------------------

TYPED = [
    " ",
    ".",
    "..",
    "%2e",
    "\t\n",
    "yes",
    "no",
    "on",
    "off",
    "true",
    "0",
    "1",
    "-1",
    "007",
    "1e308",
    "nan",
    "inf",
    "-inf",
    "9" * 40,
    "50k",
    "1M",
    "1,000",
    "1_000",
    "2.5",
    "10s",
    "5m",
    "1h",
    "3 hours",
    "unlimited",
    "all",
    "none",
    "everywhere",
    "+web_search",
    "-rides",
    "+",
    "restaurants, rides",
    '["knowledge"]',
    "[",
    "[1, 2]",
    "responses",
    "chat",
    "flag",
    "block",
    "builtin",
    "gpt-5.5",
    "gpt-image-2",
    "text-embedding-3-small",
    "Europe/Paris",
    "europe/paris",
    "Mars/Olympus_Mons",
    "<#123>",
    "<#99999999999999999999999>",
    "#general",
    "123 456",
    "@everyone",
    "<@1>",
    "**bold** `code` ```block```",
    "\u0000",
    "\u202e",
    "🦆",
    "Robert'); DROP TABLE guild_settings;--",
]


def option_text(max_size: int) -> st.SearchStrategy[str]:
    """What fits in a string option of at most `max_size` characters (Discord checks the length)."""
    long_text = st.builds(
        lambda piece, times: (piece * times)[:max_size],
        st.text(min_size=1, max_size=6),
        st.integers(1, max_size),
    )
    return st.one_of(
        st.sampled_from(TYPED),
        st.text(min_size=1, max_size=min(60, max_size)),
        st.text(st.characters(codec="ascii"), min_size=1, max_size=min(30, max_size)),
        long_text,
    ).filter(lambda text: 1 <= len(text) <= max_size)


def assert_sentence(text: str, *, limit: int = 2000) -> None:
    """A message for a person: not empty, not huge, no traceback, ending like a sentence."""
    stripped = text.strip()
    assert stripped, repr(text)
    assert len(text) <= limit, (len(text), text[:200])
    assert "Traceback" not in text and GENERIC_FAILURE not in text, text
    assert stripped.endswith(SENTENCE_ENDS), text


# -- the core paths, in process --------------------------------------------------------------------


@dataclass
class Core:
    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(f"{type(self).__name__}(...)")  # how hypothesis shows the fixture of a failing example

    runner: asyncio.Runner
    services: Services
    openai: FakeOpenAI

    def run(self, coroutine: Any) -> Any:
        return self.runner.run(coroutine)


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Core]:
    tmp_path: Path = tmp_path_factory.mktemp("fuzz-core")
    runner = asyncio.Runner()
    openai = FakeOpenAI()
    openai.images.default = lambda body: ImageReply(size=(1, 1))

    async def start() -> Services:
        await openai.start()
        return await Services.start(make_config(tmp_path), fake_secrets(), openai_base_url=openai.base_url)

    services = runner.run(start())
    try:
        yield Core(runner, services, openai)
    finally:
        runner.run(services.close())
        runner.run(openai.close())
        runner.close()
    assert openai.server_errors == []


@settings(FAST, max_examples=600)
@given(name=st.sampled_from(SETTING_NAMES), value=option_text(MAX_TEXT_OPTION_CHARS))
def test_any_typed_value_for_any_setting_is_stored_or_refused_in_one_sentence(
    core: Core, name: str, value: str
) -> None:
    service = core.services.settings

    async def attempt() -> str | None:
        try:
            change = await service.set(GUILD, name, value, user_id=ADMIN)
        except InvalidSettingError as exc:
            return str(exc)
        overrides = await service.overrides(GUILD)
        effective = await service.effective(GUILD)
        if name in overrides:
            assert change.new_value == overrides[name]
            assert (
                GuildSettings.model_validate({**effective.model_dump(), name: overrides[name]}) == effective
            )
        else:  # the value typed was the "unset" of an optional setting: the default again
            assert getattr(effective, name) == getattr(service.defaults, name)
        await service.reset(GUILD, name, user_id=ADMIN)
        assert name not in await service.overrides(GUILD)
        return None

    refusal = core.run(attempt())
    event("refused" if refusal is not None else "stored")
    if refusal is not None:
        assert_sentence(refusal, limit=MAX_SETTING_ERROR_CHARS)


@settings(FAST, max_examples=300)
@given(typed=option_text(200), current=st.sampled_from([None, GuildSettings(backend="chat")]))
def test_setting_names_and_values_parse_or_refuse_clearly(typed: str, current: GuildSettings | None) -> None:
    try:
        name = setting_name(typed)
    except InvalidSettingError as exc:
        assert_sentence(str(exc), limit=MAX_SETTING_ERROR_CHARS)
        name = SETTING_NAMES[len(typed) % len(SETTING_NAMES)]
    try:
        parse_setting_value(name, typed, current)
    except InvalidSettingError as exc:
        assert_sentence(str(exc), limit=MAX_SETTING_ERROR_CHARS)


@settings(FAST, max_examples=200)
@given(
    text=option_text(MAX_TEXT_OPTION_CHARS),
    query=option_text(MAX_QUERY_CHARS),
    count=st.integers(1, MAX_SEARCH_RESULTS),
    entry=st.one_of(st.integers(-MAX_INTEGER_OPTION, MAX_INTEGER_OPTION), st.just(None)),
    author=st.sampled_from([7, 8]),
    is_admin=st.booleans(),
)
def test_remember_search_and_forget_take_any_option_values(
    core: Core, text: str, query: str, count: int, entry: int | None, author: int, is_admin: bool
) -> None:
    knowledge = core.services.knowledge
    model = core.services.config.defaults.embedding_model

    async def attempt() -> list[str]:
        refusals: list[str] = []
        remembered_id: int | None = None
        try:
            remembered = await knowledge.remember(guild_id=GUILD, author_id=7, text=text, model=model)
            remembered_id = remembered.entry.id
        except UserFacingError as exc:
            refusals.append(str(exc))
        try:
            results = await knowledge.search(guild_id=GUILD, query=query, count=count, model=model, user_id=8)
            assert len(results.hits) <= count
        except UserFacingError as exc:
            refusals.append(str(exc))
        target = entry if entry is not None else remembered_id
        if target is not None:
            try:
                removed = await knowledge.forget(
                    guild_id=GUILD, entry_id=target, user_id=author, is_admin=is_admin
                )
                assert removed.id == target and (author == 7 or is_admin)
            except UserFacingError as exc:
                refusals.append(str(exc))
        return refusals

    refusals = core.run(attempt())
    event(f"{len(refusals)} refusals")
    for refusal in refusals:
        assert_sentence(refusal)


@settings(FAST, max_examples=120)
@given(
    prompt=option_text(MAX_PROMPT_CHARS),
    size=st.sampled_from(SIZE_CHOICES),
    count=st.integers(1, MAX_IMAGES),
    model=st.sampled_from(["gpt-image-2", "dall-e-2", "no-such-model"]),
)
def test_imagine_takes_any_prompt_size_and_count(
    core: Core, prompt: str, size: Any, count: int, model: str
) -> None:
    async def attempt() -> str | None:
        try:
            result = await generate_images(
                core.services.openai, model=model, prompt=prompt, size=size, count=count
            )
        except UserFacingError as exc:
            return str(exc)
        assert len(result.images) == count
        return None

    refusal = core.run(attempt())
    event("refused" if refusal is not None else "generated")
    if refusal is not None:
        assert_sentence(refusal)


PATTERNED_FIELDS = frozenset({"date", "start_time", "end_time", "time", "due_date"})


def extracted(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    """A well-formed answer of the model for `kind`, its texts replaced by anything (long, empty, odd)."""
    sample = SAMPLES[kind][1]  # type: ignore[index]

    def vary(value: Any, texts: st.SearchStrategy[str], key: str = "") -> st.SearchStrategy[Any]:
        if (isinstance(value, str) or value is None) and key not in PATTERNED_FIELDS:
            return texts if value is not None else st.none() | texts  # every free-text field
        if isinstance(value, list):
            items = st.one_of(*(vary(item, texts, key) for item in value)) if value else texts
            return st.lists(items, max_size=30)
        if isinstance(value, dict):
            return st.fixed_dictionaries({name: vary(item, texts, name) for name, item in value.items()})
        return st.just(value)

    anything = st.one_of(st.sampled_from(["", "x", "Dana Scully"]), option_text(3000))
    everything_long = st.builds(
        lambda piece, size: (piece * size)[:size], st.text(min_size=1, max_size=3), st.integers(900, 3000)
    )
    return vary(sample, anything) | vary(sample, everything_long)


model_answers = st.one_of(
    st.just(None),  # the stand-in's echo: not JSON at all
    st.builds(
        lambda data: Reply(json.dumps(data)),
        st.dictionaries(st.text(max_size=10), st.none() | st.text(max_size=10) | st.booleans(), max_size=4),
    ),
    st.just(Reply(json.dumps({"found": False}))),
    st.just(Reply(refusal="I cannot help with that.")),
    st.just(Reply("{", status="incomplete")),
    st.just(HttpError(400, "Invalid schema for response_format.")),
)


@settings(FAST, max_examples=200)
@given(
    kind=st.sampled_from(EXTRACTION_KINDS),
    text=option_text(MAX_TEXT_OPTION_CHARS),
    backend=st.sampled_from(["responses", "chat"]),
    answer=model_answers,
)
def test_extract_takes_any_kind_and_text(core: Core, kind: Any, text: str, backend: Any, answer: Any) -> None:
    script = core.openai.responses if backend == "responses" else core.openai.chat
    script.clear()
    if answer is not None:
        script.push(answer)

    async def attempt() -> str | None:
        try:
            await extract(core.services.openai, backend=backend, model="gpt-5.5", kind=kind, text=text)
        except UserFacingError as exc:
            return str(exc)
        return None

    refusal = core.run(attempt())
    script.clear()
    event("refused" if refusal is not None else "extracted")
    if refusal is not None:
        assert_sentence(refusal)


# -- the commands, through the stand-in Discord ----------------------------------------------------


class _ErrorLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Live:
    """The real bot against both stand-ins, on one event loop that hypothesis drives example by example."""

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(f"{type(self).__name__}(...)")  # how hypothesis shows the fixture of a failing example

    runner: asyncio.Runner
    h: Harness
    errors: _ErrorLog
    dm: FakeChannel
    seen: dict[str, int] = field(default_factory=dict)

    @property
    def discord(self) -> FakeDiscord:
        return self.h.discord

    def run(self, coroutine: Any) -> Any:
        return self.runner.run(coroutine)

    def assert_no_errors(self) -> None:
        assert [record.getMessage() for record in self.errors.records] == []


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp_path: Path = tmp_path_factory.mktemp("fuzz-live")
    runner = asyncio.Runner()
    openai = FakeOpenAI()
    openai.images.default = lambda body: ImageReply(size=(1, 1))
    runner.run(openai.start())
    errors = _ErrorLog()
    for name in ("discord", "bot", "cogs", "tools"):
        logging.getLogger(name).addHandler(errors)
    bot = running_bot(tmp_path, openai)
    try:
        h = runner.run(bot.__aenter__())
        dm = h.discord.dm_channel(h.alice)
        yield Live(runner, h, errors, dm)
        runner.run(bot.__aexit__(None, None, None))  # fails if anything was logged at ERROR
    finally:
        for name in ("discord", "bot", "cogs", "tools"):
            logging.getLogger(name).removeHandler(errors)
        with contextlib.suppress(Exception):
            runner.run(openai.close())
        runner.close()


@dataclass(frozen=True)
class Answer:
    content: str
    ephemeral: bool
    embeds: int = 0
    files: int = 0
    modal: bool = False


def settled(record: InteractionRecord, server: FakeDiscord | None = None) -> bool:
    """Answered: at once, by a followup, or (given the server) by the placeholder edited into the answer."""
    if any(callback.status >= 300 for callback in record.callbacks):
        return True
    response = record.response
    if response is None:
        return False
    return (
        response.type in (CALLBACK_MESSAGE, CALLBACK_MODAL, CALLBACK_AUTOCOMPLETE)
        or bool(record.followup_ids)
        or (server is not None and _edited_placeholder(server, record) is not None)
    )


def _edited_placeholder(server: FakeDiscord, record: InteractionRecord) -> StoredMessage | None:
    """The deferred "thinking…" message once the bot edited it into its answer."""
    original = server.messages.get(record.original_message_id or 0)
    return original if original is not None and not original.deleted and not original.loading else None


def answer_of(server: FakeDiscord, record: InteractionRecord) -> Answer:
    assert [c.status for c in record.callbacks if c.status >= 300] == [], record.callbacks
    response = record.response
    assert response is not None  # in time: the stand-in refuses a late answer (10062)
    if response.type == CALLBACK_MODAL:
        return Answer("", ephemeral=True, modal=True)
    if response.type == CALLBACK_MESSAGE:
        data = response.data
        return Answer(data.get("content") or "", response.ephemeral, len(data.get("embeds") or []))
    message = (
        server.message(record.followup_ids[0]) if record.followup_ids else _edited_placeholder(server, record)
    )
    assert message is not None
    return Answer(
        message.content, message.ephemeral, len(message.data["embeds"]), len(message.data["attachments"])
    )


async def invoke(
    live: Live, name: str, options: Mapping[str, Any], *, user: FakeUser, channel: FakeChannel
) -> Answer:
    record = await live.discord.slash_command(name, options, user=user, channel_id=channel.id)
    await live.discord.wait_for(lambda: settled(record, live.discord), timeout=WAIT_S)
    return answer_of(live.discord, record)


def fresh_conversation_shown(public: bool, answer: Answer) -> bool:
    return public and "fresh conversation" in answer.content


def check_answer(answer: Answer, public_success: Callable[[Answer], bool]) -> None:
    """The command's own result in public, or something private: a sentence, embeds or a form."""
    if currently_in_test_context():
        event("public" if not answer.ephemeral else "modal" if answer.modal else "private")
    assert GENERIC_FAILURE not in answer.content, answer
    if not answer.ephemeral:
        assert public_success(answer), answer
        return
    if answer.modal or answer.embeds:
        return
    assert_sentence(answer.content)


def users(live: Live) -> st.SearchStrategy[FakeUser]:
    return st.sampled_from([live.h.alice, live.h.world.bob, live.h.world.admin])


LIVE = settings(
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)


@settings(LIVE, max_examples=30)
@given(data=st.data())
def test_imagine_through_discord(live: Live, data: st.DataObject) -> None:
    options: dict[str, Any] = {"prompt": data.draw(option_text(MAX_PROMPT_CHARS), label="prompt")}
    if data.draw(st.booleans(), label="with size"):
        options["size"] = data.draw(st.sampled_from(SIZE_CHOICES), label="size")
    if data.draw(st.booleans(), label="with count"):
        options["count"] = data.draw(st.integers(1, MAX_IMAGES), label="count")
    channel = data.draw(st.sampled_from([live.h.general, live.dm]), label="channel")
    user = live.h.alice if channel is live.dm else data.draw(users(live), label="user")
    answer = live.run(invoke(live, "imagine", options, user=user, channel=channel))
    count = options.get("count", 1)
    check_answer(answer, lambda a: a.files == count and a.content.startswith("**Prompt:**"))
    live.assert_no_errors()


@settings(LIVE, max_examples=40)
@given(data=st.data())
def test_remember_search_and_forget_through_discord(live: Live, data: st.DataObject) -> None:
    general = live.h.general
    user = data.draw(users(live), label="user")
    command = data.draw(
        st.sampled_from(["remember", "search", "forget", "forget autocomplete"]), label="command"
    )
    if command == "remember":
        options: dict[str, Any] = {}
        if data.draw(st.booleans(), label="with text"):
            options["text"] = data.draw(option_text(MAX_TEXT_OPTION_CHARS), label="text")
        if data.draw(st.booleans(), label="with file"):
            name = data.draw(
                st.sampled_from(["notes.txt", "README.md", "x.MD", "photo.png", "noext", "a" * 80 + ".txt"])
            )
            body = data.draw(
                st.one_of(
                    st.text(max_size=200).map(lambda t: t.encode("utf-8")),
                    st.binary(max_size=200),
                    st.just(b"\xef\xbb\xbfwith a BOM"),
                    st.just(b""),
                ),
                label="file",
            )
            options["file"] = Upload(name, body, content_type="text/plain")
        answer = live.run(invoke(live, "remember", options, user=user, channel=general))
        check_answer(answer, lambda a: a.content.startswith("Remembered entry"))
    elif command == "search":
        options = {"query": data.draw(option_text(MAX_QUERY_CHARS), label="query")}
        if data.draw(st.booleans(), label="with count"):
            options["count"] = data.draw(st.integers(1, MAX_SEARCH_RESULTS), label="count")
        answer = live.run(invoke(live, "search", options, user=user, channel=general))
        check_answer(answer, lambda a: a.embeds == 1)
    elif command == "forget":
        entry = data.draw(
            st.integers(-MAX_INTEGER_OPTION, MAX_INTEGER_OPTION) | st.integers(0, 5), label="entry"
        )
        answer = live.run(invoke(live, "forget", {"entry": entry}, user=user, channel=general))
        check_answer(answer, lambda a: False)
    else:
        typed = data.draw(st.text(max_size=100), label="typed")
        choices = live.run(
            autocomplete(live, "forget", {"entry": typed}, "entry", user=user, channel=general)
        )
        assert all(isinstance(choice["value"], str) for choice in choices)
    live.assert_no_errors()


@settings(LIVE, max_examples=50)
@given(data=st.data())
def test_extract_through_discord(live: Live, data: st.DataObject) -> None:
    options = {
        "kind": data.draw(st.sampled_from(EXTRACTION_KINDS), label="kind"),
        "text": data.draw(option_text(MAX_TEXT_OPTION_CHARS), label="text"),
    }
    answer_json = data.draw(st.one_of(st.none(), st.just({"found": False}), extracted(options["kind"])))
    if answer_json is not None:
        live.h.openai.responses.push(Reply(json.dumps(answer_json)))
    channel = data.draw(st.sampled_from([live.h.general, live.dm]), label="channel")
    answer = live.run(invoke(live, "extract", options, user=live.h.alice, channel=channel))
    live.h.openai.responses.clear()
    check_answer(answer, lambda a: a.embeds == 1)
    live.assert_no_errors()


async def autocomplete(
    live: Live, name: str, options: Mapping[str, Any], focused: str, *, user: FakeUser, channel: FakeChannel
) -> list[dict[str, Any]]:
    record = await live.discord.autocomplete(name, options, focused=focused, user=user, channel_id=channel.id)
    await live.discord.wait_for(lambda: settled(record), timeout=WAIT_S)
    assert [c.status for c in record.callbacks] == [200]
    choices = record.autocomplete_choices or []
    assert len(choices) <= MAX_CHOICES
    for choice in choices:
        assert 1 <= len(choice["name"]) <= MAX_CHOICE_NAME_CHARS, choice
    return choices


@settings(LIVE, max_examples=60)
@given(data=st.data())
def test_config_through_discord(live: Live, data: st.DataObject) -> None:
    general = live.h.general
    user = data.draw(st.sampled_from([live.h.world.admin, live.h.world.admin, live.h.alice]), label="user")
    setting = data.draw(st.one_of(st.sampled_from(SETTING_NAMES), option_text(100)), label="setting")
    action = data.draw(st.sampled_from(["set", "set", "set", "reset", "autocomplete"]), label="action")
    if action == "set":
        options: dict[str, Any] = {"setting": setting}
        if setting != "instructions" or data.draw(st.booleans(), label="with value"):
            options["value"] = data.draw(option_text(MAX_TEXT_OPTION_CHARS), label="value")
        answer = live.run(invoke(live, "config set", options, user=user, channel=general))
        check_answer(answer, lambda a: False)
        if answer.ephemeral and answer.content.startswith("✅"):
            assert user is live.h.world.admin
    elif action == "reset":
        answer = live.run(invoke(live, "config reset", {"setting": setting}, user=user, channel=general))
        check_answer(answer, lambda a: False)
    else:
        focused = data.draw(st.sampled_from(["setting", "value"]), label="focused")
        typed = data.draw(st.text(max_size=100), label="typed")
        options = {"setting": typed} if focused == "setting" else {"setting": setting, "value": typed}
        live.run(autocomplete(live, "config set", options, focused, user=user, channel=general))
    live.run(_reset_overrides(live))
    live.assert_no_errors()


async def _reset_overrides(live: Live) -> None:
    """Put every setting back, so one example's cooldown or budget does not decide the next ones."""
    service = live.h.services.settings
    guild_id = live.h.world.guild.id
    for name in await service.overrides(guild_id):
        await service.reset(guild_id, name, user_id=ADMIN)


def test_commands_without_options_answer_everyone_everywhere(live: Live) -> None:
    for name in ("usage", "help", "config show", "config audit", "stop", "reset"):
        for user in (live.h.alice, live.h.world.admin):
            for channel in (live.h.general, live.dm):
                if channel is live.dm and (name.startswith("config") or user is not live.h.alice):
                    continue
                answer = live.run(invoke(live, name, {}, user=user, channel=channel))
                public = name == "reset"
                check_answer(answer, functools.partial(fresh_conversation_shown, public))
    live.assert_no_errors()


def test_the_largest_answers_still_fit_in_a_discord_embed(live: Live) -> None:
    """Options at their limits meet data at its largest: ten long passages, six long contact fields."""
    general = live.h.general
    for number in range(12):
        text = f"Entry {number}. " + " ".join(f"word{number}x{i}" for i in range(400))
        answer = live.run(
            invoke(
                live, "remember", {"text": text[:MAX_TEXT_OPTION_CHARS]}, user=live.h.alice, channel=general
            )
        )
        check_answer(answer, lambda a: a.content.startswith("Remembered entry"))
    query = ("word1x1 " * 400)[:MAX_QUERY_CHARS]
    answer = live.run(
        invoke(
            live, "search", {"query": query, "count": MAX_SEARCH_RESULTS}, user=live.h.alice, channel=general
        )
    )
    assert not answer.ephemeral and answer.embeds == 1, answer

    contact = {key: key[0] * 3000 for key in SAMPLES["contact"][1]} | {"found": True}  # every field long
    live.h.openai.responses.push(Reply(json.dumps(contact)))
    answer = live.run(
        invoke(live, "extract", {"kind": "contact", "text": "call me"}, user=live.h.alice, channel=general)
    )
    assert not answer.ephemeral and answer.embeds == 1, answer
    live.assert_no_errors()


RESTAURANT_NAMES = ["Trattoria Roma", "trattoria roma", "Sakura", "🦆 Duck House", "x" * 100]
OPENING_HOURS = [
    "daily 11:00-22:00",
    "mon-fri 12:00-14:30,18:00-23:00; sat-sun 12:00-23:00",
    "sun 23:00-01:00",
    "mon 25:00-26:00",
    "always",
]


@settings(LIVE, max_examples=60)
@given(data=st.data())
def test_restaurants_through_discord(live: Live, data: st.DataObject) -> None:
    general = live.h.general
    user = data.draw(st.sampled_from([live.h.world.admin, live.h.world.admin, live.h.alice]), label="user")
    text = option_text(MAX_TEXT_OPTION_CHARS)
    name = data.draw(st.one_of(st.sampled_from(RESTAURANT_NAMES), option_text(200)), label="name")
    action = data.draw(
        st.sampled_from(["add", "add", "edit", "remove", "import", "list", "audit", "autocomplete"]),
        label="action",
    )
    if action == "add":
        options: dict[str, Any] = {
            "name": name,
            "cuisine": data.draw(st.one_of(st.just("italian"), text), label="cuisine"),
            "area": data.draw(st.one_of(st.just("Old Town"), text), label="area"),
            "opening_hours": data.draw(st.one_of(st.sampled_from(OPENING_HOURS), text), label="hours"),
            "tables_per_slot": data.draw(st.integers(0, 50), label="tables"),
        }
        if data.draw(st.booleans(), label="with timezone"):
            options["timezone"] = data.draw(st.one_of(st.sampled_from(TYPED), text), label="timezone")
    elif action == "edit":
        options = {"name": name}
        for field_name in ("new_name", "cuisine", "area", "opening_hours", "timezone"):
            if data.draw(st.booleans(), label=f"with {field_name}"):
                options[field_name] = data.draw(text, label=field_name)
        if data.draw(st.booleans(), label="with tables"):
            options["tables_per_slot"] = data.draw(st.integers(0, 50), label="tables")
    elif action == "remove":
        options = {"name": name}
    elif action == "import":
        header = "name,cuisine,area,opening_hours,tables_per_slot\n"
        body = data.draw(
            st.one_of(
                st.just((header + "Pizza Uno,italian,Docks,daily 11:00-22:00,3\n").encode()),
                st.text(max_size=300).map(lambda t: (header + t).encode("utf-8")),
                st.binary(max_size=300),
                st.just(b""),
            ),
            label="csv",
        )
        options = {"file": Upload("restaurants.csv", body, content_type="text/csv")}
    else:
        options = {}
    if action == "autocomplete":
        typed = data.draw(st.text(max_size=100), label="typed")
        command = data.draw(st.sampled_from(["restaurants edit", "restaurants remove"]), label="command")
        live.run(autocomplete(live, command, {"name": typed}, "name", user=user, channel=general))
    else:
        answer = live.run(invoke(live, f"restaurants {action}", options, user=user, channel=general))
        assert answer.ephemeral, answer  # everything /restaurants says is private
        if answer.content.startswith(("✅ Added ", "✏️ ")):
            event("changed")  # the restaurant's record line, not a sentence
            assert GENERIC_FAILURE not in answer.content and len(answer.content) <= 2000, answer
        else:
            check_answer(answer, lambda a: False)
        if action in ("add", "edit", "remove", "import", "audit") and user is live.h.alice:
            assert "Manage Server" in answer.content or "permission" in answer.content.lower(), answer
    live.assert_no_errors()


ASSISTANT_NAMES = ["Math Tutor", "math tutor", "Concierge", "default", "Clyde", "🦆", "x" * 32, "y" * 40]
AVATARS = ["https://cdn.example.org/a.png", "http://insecure.example.org/a.png", "none", "javascript:x"]


@settings(LIVE, max_examples=60)
@given(data=st.data())
def test_assistants_through_discord(live: Live, data: st.DataObject) -> None:
    user = data.draw(st.sampled_from([live.h.world.admin, live.h.world.admin, live.h.alice]), label="user")
    channel = data.draw(st.sampled_from([live.h.general, live.h.general, live.dm]), label="channel")
    if channel is live.dm:
        user = live.h.alice
    text = option_text(MAX_TEXT_OPTION_CHARS)
    name = data.draw(st.one_of(st.sampled_from(ASSISTANT_NAMES), option_text(100)), label="name")
    action = data.draw(
        st.sampled_from(
            ["create", "create", "edit", "delete", "list", "show", "use", "audit", "autocomplete"]
        ),
        label="action",
    )
    options: dict[str, Any] = {}
    if action == "create":
        options = {
            "name": name,
            "model": data.draw(st.one_of(st.just("gpt-5.5"), option_text(100)), label="model"),
        }
        if data.draw(st.booleans(), label="with instructions"):
            options["instructions"] = data.draw(text, label="instructions")
        if data.draw(st.booleans(), label="with tools"):
            options["tools"] = data.draw(st.one_of(st.sampled_from(TYPED), text), label="tools")
        if data.draw(st.booleans(), label="with knowledge"):
            options["knowledge"] = data.draw(st.booleans(), label="knowledge")
        if data.draw(st.booleans(), label="with avatar"):
            options["avatar"] = data.draw(st.one_of(st.sampled_from(AVATARS), text), label="avatar")
    elif action == "edit":
        options = {"name": name}
        if data.draw(st.booleans(), label="with tools"):
            options["tools"] = data.draw(st.one_of(st.sampled_from(TYPED), text), label="tools")
        if data.draw(st.booleans(), label="with avatar"):
            options["avatar"] = data.draw(st.one_of(st.sampled_from(AVATARS), text), label="avatar")
        if data.draw(st.booleans(), label="with new name"):
            options["new_name"] = data.draw(option_text(100), label="new name")
    elif action in ("delete", "show", "use"):
        options = {"name": name}
    if action == "autocomplete":
        typed = data.draw(st.text(max_size=100), label="typed")
        command = data.draw(
            st.sampled_from(["assistant use", "assistant show", "assistant edit", "assistant delete"]),
            label="command",
        )
        live.run(autocomplete(live, command, {"name": typed}, "name", user=user, channel=channel))
    else:
        answer = live.run(invoke(live, f"assistant {action}", options, user=user, channel=channel))
        event(f"{action}: {answer.content[:14]}")
        assert GENERIC_FAILURE not in answer.content, answer
        if answer.ephemeral and not answer.modal and not answer.embeds:
            if not answer.content.startswith(("✅", "✏️", "🗑️", "🔁", "Nothing changed")):
                assert_sentence(answer.content)
            if action in ("create", "delete", "audit") and user is live.h.alice:
                assert "Manage Server" in answer.content or "server" in answer.content.lower(), answer
    live.assert_no_errors()
