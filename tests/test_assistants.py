"""Named assistants in the core: the profile's validation, storage on both engines, choices, resolution
and the audit."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.assistants import (
    KNOWLEDGE_TOOL,
    MAX_NAME_CHARS,
    AssistantDirectory,
    AssistantError,
    AssistantProfile,
    check_avatar_url,
    check_name,
    effective,
    validate_profile,
)
from bot.config import ALL_TOOLS, GuildSettings
from bot.engine.turn import Speaker
from bot.guild_settings import SettingsCache, SettingsService
from bot.storage import Storage
from bot.storage.assistants import ChoiceScope
from tests.conftest import DATABASE_ENGINES as DATABASE_ENGINES  # the stores run on both engines

GUILD = 42
OTHER_GUILD = 43
ADMIN = 7
MEMBER = 8
CHANNEL_1 = 1001
CHANNEL_2 = 1002
THREAD = 2001
TUTOR = AssistantProfile(
    name="Math Tutor",
    model="gpt-5.4-mini",
    instructions="You teach mathematics step by step.",
    enabled_tools=("code_interpreter",),
    knowledge=False,
    avatar_url="https://example.com/tutor.png",
)


def directory(storage: Storage, defaults: GuildSettings | None = None) -> AssistantDirectory:
    settings = SettingsService(storage, SettingsCache(), defaults or GuildSettings())
    return AssistantDirectory(storage.assistants, settings)


# ------------------------------------------------------------------------------ the profile


@given(st.text(max_size=60))
def test_a_name_is_accepted_only_as_a_discord_webhook_may_show_it(text: str) -> None:
    try:
        name = check_name(text)
    except ValueError as exc:
        assert str(exc)  # always a reason
        return
    assert 1 <= len(name) <= MAX_NAME_CHARS
    assert name == " ".join(name.split())
    lowered = name.lower()
    assert "discord" not in lowered and "clyde" not in lowered
    assert lowered not in ("everyone", "here", "default")
    assert not any(char in name for char in "@#:")


@pytest.mark.parametrize(
    ("typed", "problem"),
    [
        ("", "give it a name"),
        ("x" * 33, "at most 32 characters"),
        ("Discord Helper", "'discord'"),
        ("ClydeBot", "'clyde'"),
        ("everyone", "reserved"),
        ("Here", "reserved"),
        ("default", "reserved"),
        ("@admins", "'@'"),
        ("a:b", "':'"),
    ],
)
def test_unusable_names_are_refused_with_a_reason(typed: str, problem: str) -> None:
    with pytest.raises(AssistantError) as caught:
        validate_profile({"name": typed, "model": "gpt-5.5"})
    assert str(caught.value).startswith("`name`: ") and problem in str(caught.value)


@given(st.text(max_size=80))
def test_an_avatar_is_an_https_url_or_refused(text: str) -> None:
    try:
        url = check_avatar_url(text)
    except ValueError:
        assert not text.strip().lower().startswith("https://") or any(c.isspace() for c in text.strip())
        return
    assert url is None or url.lower().startswith("https://")


@given(
    st.sampled_from(["http", "ftp", "javascript", "data"]), st.from_regex(r"[a-z]{1,10}\.com", fullmatch=True)
)
def test_an_avatar_that_is_not_https_is_refused(scheme: str, host: str) -> None:
    with pytest.raises(ValueError, match="https"):
        check_avatar_url(f"{scheme}://{host}/a.png")


def test_tools_use_the_guild_settings_names_and_knowledge_has_its_own_switch() -> None:
    with pytest.raises(AssistantError) as caught:
        validate_profile({"name": "A", "model": "m", "enabled_tools": "rides, teleport"})
    assert "unknown tool 'teleport'" in str(caught.value)
    profile = validate_profile({"name": "A", "model": "m", "enabled_tools": list(ALL_TOOLS)})
    assert profile.enabled_tools == tuple(t for t in ALL_TOOLS if t != KNOWLEDGE_TOOL)


def test_effective_settings_take_the_assistants_model_instructions_and_tools() -> None:
    guild = GuildSettings(instructions="Be brief.", enabled_tools=("restaurants", "knowledge"))
    settings = effective(guild, TUTOR)
    assert (settings.model, settings.instructions) == ("gpt-5.4-mini", TUTOR.instructions)
    assert settings.enabled_tools == ("code_interpreter",)
    assert settings.timezone == guild.timezone  # everything else stays the guild's
    inherits = effective(guild, AssistantProfile(name="Echo", model="gpt-5.4"))
    assert inherits.instructions == "Be brief." and inherits.enabled_tools == ("restaurants", "knowledge")
    assert effective(guild, None) is guild
    chat_guild = GuildSettings(backend="chat", enabled_tools=())
    assert effective(chat_guild, TUTOR).enabled_tools == ()  # hosted tools cannot run there


# ------------------------------------------------------------------------------ storage


async def test_create_list_get_edit_and_delete_are_audited(storage: Storage) -> None:
    assistants = directory(storage)
    created = await assistants.create(GUILD, TUTOR, user_id=ADMIN)
    assert (await assistants.get(GUILD, "math tutor")).profile == TUTOR  # any case
    with pytest.raises(AssistantError, match="already has an assistant called `MATH tutor`"):
        await assistants.create(GUILD, TUTOR.model_copy(update={"name": "MATH tutor"}), user_id=ADMIN)
    await assistants.create(OTHER_GUILD, TUTOR, user_id=ADMIN)  # names are per guild
    await assistants.create(GUILD, AssistantProfile(name="Concierge", model="gpt-5.5"), user_id=ADMIN)
    assert [a.name for a in await assistants.in_guild(GUILD)] == ["Concierge", "Math Tutor"]

    before, after = await assistants.edit(
        GUILD, "Math Tutor", {"name": "Maths Tutor", "knowledge": True}, user_id=ADMIN
    )
    assert before.profile == TUTOR and after.id == created.id and after.profile.knowledge
    with pytest.raises(AssistantError, match="already has an assistant called `Concierge`"):
        await assistants.edit(GUILD, "maths tutor", {"name": "Concierge"}, user_id=ADMIN)
    with pytest.raises(AssistantError, match="`avatar_url`: the avatar must be an https:// URL"):
        await assistants.edit(GUILD, "maths tutor", {"avatar_url": "http://x.com/a.png"}, user_id=ADMIN)

    removed = await assistants.delete(GUILD, "Concierge", user_id=ADMIN)
    assert (removed.channels, removed.threads) == (0, 0)
    with pytest.raises(AssistantError, match="no assistant called `Concierge`"):
        await assistants.get(GUILD, "Concierge")

    audit = await assistants.audit(GUILD)
    assert [(c.action, c.name, c.user_id) for c in audit] == [
        ("delete", "Concierge", ADMIN),
        ("edit", "Maths Tutor", ADMIN),
        ("create", "Concierge", ADMIN),
        ("create", "Math Tutor", ADMIN),
    ]
    assert audit[1].old is not None and audit[1].old["name"] == "Math Tutor"
    assert audit[1].new is not None and audit[1].new["name"] == "Maths Tutor" and audit[1].new["knowledge"]
    assert audit[0].new is None and audit[3].old is None


async def test_hosted_tools_are_refused_where_the_guild_runs_the_chat_backend(storage: Storage) -> None:
    assistants = directory(storage, GuildSettings(backend="chat", enabled_tools=()))
    with pytest.raises(AssistantError, match=r"Hosted tools \(`code_interpreter`\) run at OpenAI"):
        await assistants.create(GUILD, TUTOR, user_id=ADMIN)
    assert await assistants.in_guild(GUILD) == []


async def test_a_thread_keeps_the_assistant_its_channel_had_at_its_first_turn(storage: Storage) -> None:
    assistants = directory(storage)
    guild = GuildSettings()
    tutor = await assistants.create(GUILD, TUTOR, user_id=ADMIN)
    assert (await assistants.for_channel(guild, CHANNEL_1)).speaker is None  # the default: no speaker

    await assistants.use_in_channel(GUILD, CHANNEL_1, tutor, user_id=ADMIN)
    in_channel = await assistants.for_channel(guild, CHANNEL_1)
    assert in_channel.speaker == Speaker("Math Tutor", "https://example.com/tutor.png")
    assert in_channel.settings.model == "gpt-5.4-mini"
    assert (await assistants.for_channel(guild, CHANNEL_2)).assistant is None

    first = await assistants.for_thread(guild, GUILD, THREAD, CHANNEL_1)
    assert first.name == "Math Tutor"
    await assistants.use_in_channel(GUILD, CHANNEL_1, None, user_id=ADMIN)  # the channel goes back
    assert (await assistants.for_channel(guild, CHANNEL_1)).assistant is None
    assert (await assistants.for_thread(guild, GUILD, THREAD, CHANNEL_1)).name == "Math Tutor"

    # A thread begun on the default keeps the default when the channel switches afterwards.
    await assistants.for_thread(guild, GUILD, THREAD + 1, CHANNEL_1)
    await assistants.use_in_channel(GUILD, CHANNEL_1, tutor, user_id=ADMIN)
    assert (await assistants.for_thread(guild, GUILD, THREAD + 1, CHANNEL_1)).assistant is None
    await assistants.use_in_thread(GUILD, THREAD + 1, tutor, user_id=MEMBER)
    assert (await assistants.for_thread(guild, GUILD, THREAD + 1, CHANNEL_1)).name == "Math Tutor"

    uses = [c for c in await assistants.audit(GUILD) if c.action == "use"]
    assert (uses[0].user_id, uses[0].new) == (
        MEMBER,
        {"scope": "conversation", "target": THREAD + 1, "assistant": "Math Tutor"},
    )
    assert len(uses) == 4  # channel on, channel off, channel on, thread on


async def test_deleting_an_assistant_puts_its_channels_threads_and_dms_on_the_default(
    storage: Storage,
) -> None:
    assistants = directory(storage)
    guild = GuildSettings()
    tutor = await assistants.create(GUILD, TUTOR, user_id=ADMIN)
    await assistants.use_in_channel(GUILD, CHANNEL_1, tutor, user_id=ADMIN)
    await assistants.use_in_channel(GUILD, CHANNEL_2, tutor, user_id=ADMIN)
    await assistants.for_thread(guild, GUILD, THREAD, CHANNEL_1)
    await assistants.use_in_dm(MEMBER, tutor)
    assert await assistants.channels_using(GUILD) == {CHANNEL_1: "Math Tutor", CHANNEL_2: "Math Tutor"}
    assert (await assistants.for_dm(MEMBER)).name == "Math Tutor"

    removed = await assistants.delete(GUILD, "math tutor", user_id=ADMIN)
    assert (removed.channels, removed.threads) == (2, 1)
    assert (await assistants.for_channel(guild, CHANNEL_1)).assistant is None
    assert (await assistants.for_thread(guild, GUILD, THREAD, CHANNEL_1)).assistant is None
    assert (await assistants.for_dm(MEMBER)).assistant is None
    assert await assistants.channels_using(GUILD) == {}
    assert await assistants.chosen(ChoiceScope.CHANNEL, CHANNEL_1) is None


async def test_a_dm_pick_runs_on_its_guilds_settings_with_the_assistants_overrides(storage: Storage) -> None:
    settings = SettingsService(storage, SettingsCache(), GuildSettings())
    await settings.set(GUILD, "timezone", "Europe/Paris", user_id=ADMIN)
    assistants = AssistantDirectory(storage.assistants, settings)
    assert (await assistants.for_dm(MEMBER)).settings == GuildSettings()
    tutor = await assistants.create(GUILD, TUTOR, user_id=ADMIN)
    await assistants.use_in_dm(MEMBER, tutor)
    resolved = await assistants.for_dm(MEMBER)
    assert resolved.settings.timezone == "Europe/Paris" and resolved.settings.model == TUTOR.model
    assert [a.guild_id for a in await assistants.named("MATH TUTOR")] == [GUILD]
    assert [a.name for a in await assistants.matching("tut", limit=5)] == ["Math Tutor"]
    assert await assistants.matching("100%", limit=5) == []  # LIKE's wildcards are taken literally
    await assistants.use_in_dm(MEMBER, None)
    assert (await assistants.for_dm(MEMBER)).assistant is None


TYPED = st.one_of(
    st.text(max_size=80),
    st.sampled_from(
        ["none", "server", "all", "code_interpreter", "rides, web_search", "https://x.io/a.png", ""]
    ),
    st.text(min_size=1, max_size=6).map(lambda piece: piece * 1000),
)


@given(
    name=TYPED, model=TYPED, instructions=st.none() | TYPED, tools=st.none() | TYPED, avatar=st.none() | TYPED
)
def test_any_typed_options_make_a_profile_or_one_short_sentence(
    name: str, model: str, instructions: str | None, tools: str | None, avatar: str | None
) -> None:
    fields = {"name": name, "model": model, "instructions": instructions, "enabled_tools": tools}
    try:
        profile = validate_profile({**fields, "avatar_url": avatar})
    except AssistantError as exc:
        message = str(exc)
        assert message.startswith("`") and len(message) <= 500 and message.endswith((".", "…")), message
        return
    assert profile.name == check_name(name) and 1 <= len(profile.model) <= 100
    assert profile.enabled_tools is None or set(profile.enabled_tools) <= set(ALL_TOOLS) - {KNOWLEDGE_TOOL}
    effective(GuildSettings(), profile)  # always usable as settings
