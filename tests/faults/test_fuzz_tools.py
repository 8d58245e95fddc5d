"""Every tool's arguments fuzzed: whatever the model sends, the registry answers with a result it can read.

Arguments are arbitrary JSON (objects, arrays, scalars), the tool's own fields with values of every type
(wrong types, nulls, huge and unicode strings, extreme numbers, plausible times and places), extra
fields, and text that is not JSON at all. `ToolRegistry.run` must never raise; a rejection carries a
code and a message the model can act on; nothing ends as the "tool failed unexpectedly" error that an
unhandled exception becomes. Runs in-process on one event loop (no Discord), thousands of calls.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.config import FUNCTION_TOOL_FAMILIES, IMAGE_TOOL, GuildSettings
from bot.services import Services
from bot.tooling import ConfirmationOutcome, ConfirmationRequest, ToolContext, ToolResult
from standins.openai import FakeOpenAI, ImageReply
from tests.conftest import fake_secrets, make_config
from tools import register_builtin_tools
from tools.images import register_image_tools

EXAMPLES_PER_TOOL = 220
MAX_MESSAGE_CHARS = 1000  # what the model reads back about a rejection: a sentence, not an echo of the input
NOW = dt.datetime(2026, 5, 4, 10, 0, tzinfo=dt.UTC)  # a Monday morning: the demo restaurants open later
GUILD = 42
ZONES = ("UTC", "Europe/Paris", "America/Los_Angeles", "Asia/Kathmandu", "Pacific/Kiritimati")


class AnyAnswerConfirmer:
    """Answers every confirmation with the next drawn outcome (the user clicks, declines or never answers)."""

    def __init__(self, outcome: ConfirmationOutcome) -> None:
        self.outcome = outcome
        self.asked: list[ConfirmationRequest] = []

    async def confirm(self, request: ConfirmationRequest, *, timeout_s: float) -> ConfirmationOutcome:
        self.asked.append(request)
        return self.outcome


@dataclass
class ToolRig:
    """The core with the built-in tools, on its own event loop so hypothesis can drive it synchronously."""

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(f"{type(self).__name__}(...)")  # how hypothesis shows the fixture of a failing example

    runner: asyncio.Runner
    services: Services

    def call(self, name: str, raw: str, context: ToolContext, confirmer: AnyAnswerConfirmer) -> ToolResult:
        return self.runner.run(self.services.tools.call(name, raw, context, confirmer))


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ToolRig]:
    tmp_path: Path = tmp_path_factory.mktemp("fuzz-tools")
    runner = asyncio.Runner()
    openai = FakeOpenAI()
    openai.images.default = lambda body: ImageReply(size=(1, 1))  # a drawing costs no time

    async def start() -> Services:
        await openai.start()
        config = make_config(tmp_path)
        services = await Services.start(config, fake_secrets(), openai_base_url=openai.base_url)
        register_builtin_tools(
            services.tools,
            storage=services.storage,
            config=config,
            secrets_env={},
            clock=lambda: NOW,
            knowledge=services.knowledge,
        )
        register_image_tools(services)
        for note in ("The wifi password is hunter2.", "Meetings are on Tuesdays at 10:00 in room B."):
            await services.knowledge.remember(
                guild_id=GUILD, author_id=7, text=note, model=config.defaults.embedding_model
            )
        return services

    services = runner.run(start())
    try:
        yield ToolRig(runner, services)
    finally:
        runner.run(services.close())
        runner.run(openai.close())
        runner.close()
    assert openai.server_errors == []


TOOL_NAMES = (
    "find_restaurants",
    "book_restaurant",
    "list_reservations",
    "cancel_reservation",
    "estimate_ride",
    "order_ride",
    "list_rides",
    "cancel_ride",
    "search_knowledge",
    "generate_image",
)

# -- strategies ------------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),  # NaN and infinities too: Python's json reads them
    st.text(max_size=40),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
huge_text = st.builds(
    lambda piece, times: piece * times, st.text(min_size=1, max_size=8), st.integers(100, 40_000)
)
plausible_text = st.sampled_from(
    [
        "",
        " ",
        "tomorrow at 8pm",
        "today at 19:30",
        "in 20 minutes",
        "now",
        "next friday 7pm",
        "2026-05-05T20:00",
        "2026-05-05T20:15",
        "2026-02-30T20:00",
        "1999-01-01T00:00",
        "9999-12-31T23:59",
        "december 31 9999 at 11pm",
        "2026-05-05T20:00+14:00",
        "25:99",
        "Pizzeria Napoli",
        "pizzeria napoli",
        "Trattoria Roma",
        "1",
        "0",
        "-1",
        "#1",
        "99999999999999999999999",
        "italian",
        "sushi",
        "Old Town",
        "Airport",
        "Central Station",
        "standard",
        "xl",
        "limousine",
        "\u0000",
        "🍕🍕🍕",
        "ﷺ" * 50,
        "Robert'); DROP TABLE reservations;--",
        "<@everyone>",
    ]
)
field_values = st.one_of(json_values, huge_text, plausible_text, st.integers(-5, 30))


def field_names(tool: str, rig: ToolRig) -> list[str]:
    registered = rig.services.tools.get(tool)
    assert registered is not None, tool
    return list(registered.arguments.model_fields)


def raw_arguments(fields: list[str]) -> st.SearchStrategy[str]:
    """What a model (or a broken model server) might put in a call's `arguments` string."""
    own_fields = st.fixed_dictionaries({}, optional={name: field_values for name in fields})
    with_extra = st.builds(lambda d, k, v: {**d, k: v}, own_fields, st.text(max_size=12), json_values)
    as_json = st.one_of(own_fields, own_fields, own_fields, with_extra, json_values).map(json.dumps)
    truncated = st.builds(lambda text, cut: text[:cut], as_json, st.integers(0, 30))
    return st.one_of(as_json, as_json, as_json, truncated, st.text(max_size=60), st.just(""))


def check(result: object) -> None:
    """A result the model can read; a rejection with a stable code and a short sentence."""
    assert isinstance(result, ToolResult)
    payload = json.loads(result.to_output())
    assert isinstance(payload, dict) and payload["ok"] is result.ok
    if result.ok:
        return
    assert result.error_code and result.error_code != "internal", result
    message = result.error_message or ""
    assert message.strip(), result
    assert len(message) <= MAX_MESSAGE_CHARS, (result.error_code, message[:200], len(message))
    assert "Traceback" not in message


@pytest.mark.parametrize("tool", TOOL_NAMES)
@settings(
    max_examples=EXAMPLES_PER_TOOL,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_any_arguments_give_a_readable_result_never_an_exception(
    rig: ToolRig, tool: str, data: st.DataObject
) -> None:
    raw = data.draw(raw_arguments(field_names(tool, rig)), label="arguments")
    guild_settings = GuildSettings(
        enabled_tools=(*FUNCTION_TOOL_FAMILIES, IMAGE_TOOL),
        images_enabled=data.draw(st.booleans(), label="images"),
        confirm_side_effects=data.draw(st.booleans(), label="confirm"),
        timezone=data.draw(st.sampled_from(ZONES), label="timezone"),
    )
    guild_id = data.draw(st.sampled_from([GUILD, None]), label="guild")
    user_id = data.draw(st.sampled_from([7, 8, 2**63 - 1]), label="user")
    context = ToolContext(
        user_id=user_id,
        user_name=data.draw(st.sampled_from(["Ada", "", "🦆" * 40]), label="name"),
        guild_id=guild_id,
        channel_id=1001,
        conversation_key="channel:1001",
        call_id=f"call_fuzz_{uuid.uuid4().hex}",
        settings=guild_settings,
    )
    confirmer = AnyAnswerConfirmer(data.draw(st.sampled_from(list(ConfirmationOutcome)), label="answer"))
    check(rig.call(tool, raw, context, confirmer))


@settings(max_examples=100, deadline=None)
@given(
    name=st.text(max_size=40),
    raw=st.text(max_size=40),
    families=st.sets(st.sampled_from(FUNCTION_TOOL_FAMILIES)),
)
def test_unknown_or_disabled_tools_are_refused_by_name(
    rig: ToolRig, name: str, raw: str, families: set[str]
) -> None:
    context = ToolContext(
        user_id=7,
        user_name="Ada",
        guild_id=GUILD,
        channel_id=1001,
        conversation_key="channel:1001",
        call_id=f"call_fuzz_{uuid.uuid4().hex}",
        settings=GuildSettings(enabled_tools=tuple(families)),
    )
    result = rig.call(name, raw, context, AnyAnswerConfirmer(ConfirmationOutcome.DECLINED))
    check(result)
    tool = rig.services.tools.get(name)
    if tool is None or tool.family not in families:
        assert result.error_code == "unknown_tool"


def test_a_repeated_call_id_is_answered_from_the_ledger_not_run_again(rig: ToolRig) -> None:
    """The fuzzing above books tables; a call id seen before must never book twice."""
    context = ToolContext(
        user_id=9,
        user_name="Bo",
        guild_id=GUILD,
        channel_id=1001,
        conversation_key="channel:1001",
        call_id="call_fuzz_repeat",
        settings=GuildSettings(enabled_tools=FUNCTION_TOOL_FAMILIES),
    )
    raw = json.dumps(
        {"restaurant": "Trattoria Roma", "party_size": 2, "time": "2026-05-05T20:00", "notes": None}
    )
    confirmer = AnyAnswerConfirmer(ConfirmationOutcome.APPROVED)
    first = rig.call("book_restaurant", raw, context, confirmer)
    second = rig.call("book_restaurant", raw, context, confirmer)
    assert first.ok and second.ok and second.data == first.data
    assert len(confirmer.asked) == 1
    reservations = rig.runner.run(rig.services.storage.bookings.reservations_for(9, GUILD, since=0))
    assert len(reservations) == 1
