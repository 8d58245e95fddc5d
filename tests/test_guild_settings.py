"""Per-guild settings in the core: parsing what admins type, validation, storage, cache and audit."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.config import DEFAULT_INSTRUCTIONS, GuildSettings, ProviderConfig
from bot.guild_settings import (
    SETTING_NAMES,
    InvalidSettingError,
    OpenAIModelCatalog,
    SettingsCache,
    SettingsService,
    parse_setting_value,
    setting_name,
    validate_setting,
)
from bot.storage import Storage
from standins.openai import FakeOpenAI
from tests.conftest import DATABASE_ENGINES as DATABASE_ENGINES  # the stores run on both engines

GUILD = 42
ADMIN = 7
ACME = ProviderConfig(serves="restaurants", base_url="https://acme.example")
CABS = ProviderConfig(serves="rides", base_url="https://cabs.example")


def service(storage: Storage, **options: Any) -> SettingsService:
    """A settings service with a cache of its own (a second one sees only what the database holds)."""
    return SettingsService(storage, SettingsCache(), GuildSettings(), **options)


# ------------------------------------------------------------------------------ typed text


@pytest.mark.parametrize(
    ("name", "typed", "value"),
    [
        ("mention_opens_thread", " Off ", False),
        ("images_enabled", "yes", True),
        ("daily_token_budget_user", "50k", 50_000),
        ("daily_token_budget_guild", "1.5M", 1_500_000),
        ("daily_token_budget_guild", "2,000,000", 2_000_000),
        ("daily_token_budget_user", "unlimited", 0),
        ("user_cooldown_s", "30s", 30.0),
        ("user_cooldown_s", "2 min", 120.0),
        ("user_cooldown_s", "off", 0),
        ("max_queued_turns_per_user", "5", 5),
        ("channels", "<#111>, <#222> 333", [111, 222, 333]),
        ("channels", "all", []),
        ("mod_log_channel", "<#555>", 555),
        ("mod_log_channel", "none", None),
        ("enabled_tools", "Rides, restaurants", ["rides", "restaurants"]),
        ("enabled_tools", "none", []),
        ("enabled_tools", "all", ["restaurants", "rides", "knowledge", "code_interpreter", "web_search"]),
        ("enabled_tools", "-rides +web-search", ["restaurants", "knowledge", "web_search"]),
        ("backend", "Chat", "chat"),
        ("timezone", "europe/paris", "Europe/Paris"),
        ("model", "  gpt-5.4-mini ", "gpt-5.4-mini"),
    ],
)
def test_typed_text_becomes_the_setting_value(name: str, typed: str, value: Any) -> None:
    parsed = parse_setting_value(name, typed, GuildSettings())
    assert parsed == value
    validated = getattr(validate_setting(GuildSettings(), name, parsed), name)
    assert validated == (tuple(value) if isinstance(value, list) else value)


def test_all_tools_on_the_chat_backend_leaves_out_hosted_ones() -> None:
    assert parse_setting_value("enabled_tools", "all", GuildSettings(backend="chat")) == [
        "restaurants",
        "rides",
        "knowledge",
    ]


@pytest.mark.parametrize(
    ("name", "typed", "says"),
    [
        ("user_cooldown_s", "soon", "`user_cooldown_s`: give a number from 0 to 3600 (seconds)."),
        ("user_cooldown_s", "2h", "from 0 to 3600"),
        ("max_queued_turns_per_user", "0", "give a whole number from 1 to 50."),
        ("daily_token_budget_user", "-5", "or 0 for unlimited"),
        ("images_enabled", "maybe", "say `on` or `off`"),
        ("backend", "claude", "choose one of responses, chat"),
        ("enabled_tools", "teleport", "unknown tool 'teleport'"),
        ("timezone", "Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
        ("timezone", "America", "unknown time zone 'America'"),  # a folder of zones, not a zone
        ("channels", "#general", "list channels like #general #help"),
        ("channels", "none", "say `all` to allow every channel"),
        ("model", "   ", "give text of 1 to 100 characters"),
        ("instructions", "x" * 8001, "give text of 1 to 8000 characters"),
    ],
)
def test_invalid_text_is_refused_in_one_sentence(name: str, typed: str, says: str) -> None:
    with pytest.raises(InvalidSettingError) as refused:
        validate_setting(GuildSettings(), name, parse_setting_value(name, typed, GuildSettings()))
    assert says in str(refused.value)
    assert str(refused.value).endswith(".")


def test_setting_names_are_forgiving_about_case_and_dashes() -> None:
    assert setting_name(" Image-Model ") == "image_model"
    with pytest.raises(InvalidSettingError, match="`colour` is not a setting"):
        setting_name("colour")


# Text shaped like what admins type, plus anything at all.
typed_text = st.one_of(
    st.text(max_size=300),
    st.sampled_from(["on", "off", "all", "none", "unlimited", "[]", "[", "{}", "null", "nan", "inf", "-0"]),
    st.from_regex(r"-?[0-9][0-9_,.]{0,25}\s?(k|m|s|min|h|tokens|x)?", fullmatch=True),
    st.lists(st.integers(min_value=-5, max_value=2**70).map(lambda n: f"<#{n}>"), max_size=4).map(" ".join),
    st.lists(st.sampled_from(["restaurants", "+rides", "-knowledge", "web_search", "x"]), max_size=4).map(
        ",".join
    ),
    st.from_regex(r"\[[\[\]0-9,\" a-z]{0,40}", fullmatch=True),
    st.integers(min_value=1, max_value=6000).map(lambda n: "[" * n),
    st.integers(min_value=4300, max_value=6000).map(lambda n: "9" * n),
)


@settings(max_examples=400, deadline=None)
@given(name=st.sampled_from(SETTING_NAMES), typed=typed_text, backend=st.sampled_from(["responses", "chat"]))
def test_any_text_validates_or_is_refused_with_a_sentence(name: str, typed: str, backend: str) -> None:
    current = GuildSettings(backend=backend, enabled_tools=())
    try:
        updated = validate_setting(current, name, parse_setting_value(name, typed, current))
    except InvalidSettingError as refused:
        message = str(refused)
        assert message.endswith((".", "…")) and 0 < len(message) <= 500
        assert "Traceback" not in message and "pydantic" not in message
        return
    stored = json.loads(json.dumps(updated.model_dump(mode="json")[name]))
    reloaded = GuildSettings.model_validate({**current.model_dump(), name: stored})
    assert getattr(reloaded, name) == getattr(updated, name)


@pytest.fixture
def guild_ids() -> Iterator[int]:
    """A new guild per hypothesis example (the fixture lives for the whole test function)."""
    return itertools.count(1000)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(SETTING_NAMES), typed=typed_text)
async def test_a_stored_value_comes_back_the_same_from_the_database(
    storage: Storage, guild_ids: Iterator[int], name: str, typed: str
) -> None:
    guild = next(guild_ids)
    writer = service(storage, providers={"acme": ACME, "cabs": CABS})
    try:
        change = await writer.set(guild, name, typed, user_id=ADMIN)
    except InvalidSettingError:
        assert await storage.settings.overrides(guild) == {}
        assert await storage.settings.audit(guild) == []
        return
    written = getattr(await writer.effective(guild), name)
    assert getattr(await service(storage).effective(guild), name) == written
    assert change.new_value == json.loads(json.dumps(change.new_value))
    assert [row.name for row in await storage.settings.audit(guild)] == [name]


# ------------------------------------------------------------------------------ the service


async def test_set_writes_through_the_cache_and_audits(storage: Storage) -> None:
    settings_ = service(storage)
    assert (await settings_.effective(GUILD)).model == "gpt-5.5"  # cached now
    await settings_.set(GUILD, "model", "gpt-5.4-mini", user_id=ADMIN)
    await settings_.set(GUILD, "daily_token_budget_user", "10k", user_id=ADMIN + 1)
    assert (await settings_.effective(GUILD)).model == "gpt-5.4-mini"
    assert (await settings_.effective(GUILD)).daily_token_budget_user == 10_000
    assert await storage.settings.overrides(GUILD) == {
        "model": "gpt-5.4-mini",
        "daily_token_budget_user": 10_000,
    }
    views = {view.name: view for view in await settings_.describe(GUILD)}
    assert views["model"].source == "server" and views["backend"].source == "default"
    audit = await settings_.audit(GUILD)
    assert [(c.user_id, c.name, c.old_value, c.new_value) for c in audit] == [
        (ADMIN + 1, "daily_token_budget_user", None, 10_000),
        (ADMIN, "model", None, "gpt-5.4-mini"),
    ]
    assert (await settings_.effective(GUILD + 1)).model == "gpt-5.5"  # other guilds are untouched
    assert await settings_.effective(None) == settings_.defaults  # DMs use the defaults


async def test_reset_restores_the_default_and_a_second_reset_changes_nothing(storage: Storage) -> None:
    settings_ = service(storage)
    await settings_.set(GUILD, "instructions", "Talk like a pirate.", user_id=ADMIN)
    change = await settings_.reset(GUILD, "instructions", user_id=ADMIN)
    assert change is not None and change.old_value == "Talk like a pirate." and change.new_value is None
    assert (await settings_.effective(GUILD)).instructions == DEFAULT_INSTRUCTIONS
    assert await settings_.reset(GUILD, "instructions", user_id=ADMIN) is None
    assert len(await settings_.audit(GUILD)) == 2


async def test_concurrent_changes_and_a_cold_cache_agree_with_the_database(storage: Storage) -> None:
    """A cache load racing with writes never leaves an older copy behind."""
    settings_ = service(storage)
    await asyncio.gather(
        settings_.effective(GUILD),
        settings_.set(GUILD, "model", "gpt-5.4", user_id=ADMIN),
        settings_.effective(GUILD),
        settings_.set(GUILD, "images_enabled", "off", user_id=ADMIN),
        settings_.set(GUILD, "user_cooldown_s", "5", user_id=ADMIN),
        settings_.effective(GUILD),
    )
    assert await settings_.effective(GUILD) == await service(storage).effective(GUILD)
    effective = await settings_.effective(GUILD)
    assert (effective.model, effective.images_enabled, effective.user_cooldown_s) == ("gpt-5.4", False, 5.0)


async def test_a_refused_value_stores_and_audits_nothing(storage: Storage) -> None:
    settings_ = service(storage)
    with pytest.raises(InvalidSettingError):
        await settings_.set(GUILD, "max_queued_turns_per_user", "lots", user_id=ADMIN)
    assert await storage.settings.overrides(GUILD) == {}
    assert await storage.settings.audit(GUILD) == []


async def test_hosted_tools_need_the_responses_backend_both_ways(storage: Storage) -> None:
    settings_ = service(storage)
    await settings_.set(GUILD, "enabled_tools", "+web_search", user_id=ADMIN)
    with pytest.raises(InvalidSettingError, match=r"Remove `web_search` from `enabled_tools` first"):
        await settings_.set(GUILD, "backend", "chat", user_id=ADMIN)
    await settings_.set(GUILD, "enabled_tools", "-web_search", user_id=ADMIN)
    await settings_.set(GUILD, "backend", "chat", user_id=ADMIN)
    with pytest.raises(InvalidSettingError, match=r"only work with the `responses` backend"):
        await settings_.set(GUILD, "enabled_tools", "restaurants, code_interpreter", user_id=ADMIN)
    assert (await settings_.effective(GUILD)).enabled_tools == ("restaurants", "rides", "knowledge")


async def test_a_rule_broken_by_an_older_choice_does_not_block_other_settings(storage: Storage) -> None:
    """A provider removed from config.toml after a guild picked it: the guild can still change the rest."""
    await service(storage, providers={"acme": ACME}).set(GUILD, "booking_provider", "acme", user_id=ADMIN)
    settings_ = service(storage)
    await settings_.set(GUILD, "model", "gpt-5.4", user_id=ADMIN)
    effective = await settings_.effective(GUILD)
    assert (effective.model, effective.booking_provider) == ("gpt-5.4", "acme")


async def test_providers_must_be_configured_for_their_family(storage: Storage) -> None:
    settings_ = service(storage, providers={"acme": ACME, "cabs": CABS})
    await settings_.set(GUILD, "booking_provider", "acme", user_id=ADMIN)
    await settings_.set(GUILD, "ride_provider", "cabs", user_id=ADMIN)
    with pytest.raises(InvalidSettingError, match=r"restaurants providers this bot has: `builtin`, `acme`"):
        await settings_.set(GUILD, "booking_provider", "cabs", user_id=ADMIN)
    with pytest.raises(InvalidSettingError, match=r"rides providers this bot has: `builtin`, `cabs`\."):
        await settings_.set(GUILD, "ride_provider", "uber", user_id=ADMIN)


async def test_unknown_model_names_are_refused_when_openai_says_so(
    storage: Storage, fake_openai: FakeOpenAI
) -> None:
    async with fake_openai.client() as client:
        settings_ = service(storage, models=OpenAIModelCatalog(client))
        await settings_.set(GUILD, "image_model", "gpt-image-1.5", user_id=ADMIN)
        with pytest.raises(InvalidSettingError, match=r"OpenAI has no model named `gpt-6-ultra`"):
            await settings_.set(GUILD, "model", "gpt-6-ultra", user_id=ADMIN)
        with pytest.raises(InvalidSettingError, match=r"no model named `text-embedding-9`\.$"):
            await settings_.set(GUILD, "embedding_model", "text-embedding-9", user_id=ADMIN)
        await settings_.set(GUILD, "backend", "chat", user_id=ADMIN)
        await settings_.set(GUILD, "model", "llama3.3:70b", user_id=ADMIN)  # another server's model
    checked = [r.path for r in fake_openai.requests_to("/v1/models")]
    assert checked == ["/v1/models/gpt-image-1.5", "/v1/models/gpt-6-ultra", "/v1/models/text-embedding-9"]


async def test_a_model_is_allowed_when_openai_cannot_be_asked(storage: Storage) -> None:
    async with openai.AsyncOpenAI(api_key="test", base_url="http://127.0.0.1:9/v1") as unreachable:
        settings_ = service(storage, models=OpenAIModelCatalog(unreachable))
        await settings_.set(GUILD, "model", "gpt-5.4-nano", user_id=ADMIN)
    assert (await settings_.effective(GUILD)).model == "gpt-5.4-nano"


async def test_a_stored_value_that_no_longer_validates_falls_back_to_the_default(storage: Storage) -> None:
    await storage.settings.set(GUILD, "max_queued_turns_per_user", 500, user_id=ADMIN)
    await storage.settings.set(GUILD, "model", "gpt-5.4", user_id=ADMIN)
    effective = await service(storage).effective(GUILD)
    assert (effective.max_queued_turns_per_user, effective.model) == (3, "gpt-5.4")
