"""Named assistants in the core: the profile's validation, storage on both engines, choices, resolution
and the audit."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.assistants import (
    KNOWLEDGE_TOOL,
    MAX_NAME_CHARS,
    MEMBERSHIP_TTL_S,
    Assistant,
    AssistantDirectory,
    AssistantError,
    AssistantProfile,
    MembershipCache,
    Removed,
    Resolved,
    check_avatar_url,
    check_name,
    effective,
    validate_profile,
)
from bot.config import ALL_TOOLS, GuildSettings
from bot.engine.turn import Speaker
from bot.guild_settings import SettingsCache, SettingsService
from bot.storage import Storage
from bot.storage.assistants import ChoiceScope, StoredChoice
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


# ------------------------------------------------------------------------------ review fixes


async def test_a_threads_first_turn_and_a_deletion_at_once_leave_no_dangling_choice(storage: Storage) -> None:
    """The channel's choice is read and the thread's row written under the guild's lock: a deletion
    in between used to make the insert fail on its foreign key (and the message go unanswered)."""
    assistants = directory(storage)
    for round_ in range(4):
        tutor = await assistants.create(GUILD, TUTOR, user_id=ADMIN)
        await assistants.use_in_channel(GUILD, CHANNEL_1, tutor, user_id=ADMIN)
        threads = [THREAD + 100 * round_ + n for n in range(8)]
        starts = [
            storage.assistants.start_conversation(t, GUILD, CHANNEL_1, started_by=MEMBER) for t in threads
        ]
        removed, *started = await asyncio.gather(  # the deletion first, the threads' reads meanwhile
            assistants.delete(GUILD, TUTOR.name, user_id=ADMIN), *starts
        )
        assert isinstance(removed, Removed)
        choices = [choice for choice in started if isinstance(choice, StoredChoice)]
        assert len(choices) == len(threads)
        on_tutor = [choice for choice in choices if choice.assistant is not None]
        assert removed.threads == len(on_tutor)  # those recorded first, moved to the default by it
        for thread in threads:
            choice = await storage.assistants.choice(ChoiceScope.CONVERSATION, thread)
            assert choice is not None and choice.assistant is None and choice.started_by == MEMBER


async def test_a_threads_starter_is_recorded_with_its_first_choice_and_kept(storage: Storage) -> None:
    assistants = directory(storage)
    tutor = await assistants.create(GUILD, TUTOR, user_id=ADMIN)
    await assistants.for_new_thread(GuildSettings(), GUILD, THREAD, CHANNEL_1, starter_id=MEMBER)
    await assistants.for_thread(GuildSettings(), GUILD, THREAD, CHANNEL_1, starter_id=ADMIN)  # a reply
    await assistants.use_in_thread(GUILD, THREAD, tutor, user_id=ADMIN)
    assert await assistants.starter_of(THREAD) == MEMBER
    await assistants.for_thread(GuildSettings(), GUILD, THREAD + 1, CHANNEL_1, starter_id=ADMIN)
    assert await assistants.starter_of(THREAD + 1) == ADMIN
    await assistants.use_in_thread(GUILD, THREAD + 2, tutor, user_id=ADMIN)  # never had a turn
    assert await assistants.starter_of(THREAD + 2) is None


def test_a_dm_picks_turn_runs_as_the_assistants_guild() -> None:
    tutor = Assistant(1, GUILD, TUTOR)
    assert Resolved(tutor, GuildSettings()).guild_for(None) == GUILD  # a DM pick: its server's turn
    assert Resolved(None, GuildSettings()).guild_for(None) is None
    assert Resolved(None, GuildSettings()).guild_for(OTHER_GUILD) == OTHER_GUILD


class Members:
    """Discord's answers about membership, as a test sets them; counts the questions."""

    def __init__(self) -> None:
        self.answers: dict[tuple[int, int], bool | None] = {}
        self.asked: list[int] = []

    async def __call__(self, guild_id: int, user_id: int) -> bool | None:
        self.asked.append(guild_id)
        return self.answers.get((guild_id, user_id), False)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_dm_pick_holds_while_the_person_is_in_its_server_and_is_dropped_once(
    storage: Storage,
) -> None:
    clock = Clock()
    settings = SettingsService(storage, SettingsCache(), GuildSettings())
    assistants = AssistantDirectory(
        storage.assistants, settings, members=MembershipCache(ttl_s=MEMBERSHIP_TTL_S, clock=clock)
    )
    tutor = await assistants.create(GUILD, TUTOR, user_id=ADMIN)
    await assistants.use_in_dm(MEMBER, tutor)
    members = Members()
    members.answers[(GUILD, MEMBER)] = True
    assert (await assistants.for_dm(MEMBER, members=members)).name == "Math Tutor"
    members.answers[(GUILD, MEMBER)] = False  # left the server (or was banned, or the bot left)
    assert (await assistants.for_dm(MEMBER, members=members)).name == "Math Tutor"  # answer kept
    assert members.asked == [GUILD]

    clock.now += MEMBERSHIP_TTL_S
    dropped = await assistants.for_dm(MEMBER, members=members)
    assert dropped.assistant is None and dropped.settings == GuildSettings()
    assert dropped.notice is not None and "**Math Tutor** no longer answers our DMs" in dropped.notice
    again = await assistants.for_dm(MEMBER, members=members)
    assert again.assistant is None and again.notice is None  # said once
    assert await assistants.chosen(ChoiceScope.DM, MEMBER) is None


async def test_discord_not_answering_keeps_a_dm_pick_and_is_not_remembered(storage: Storage) -> None:
    assistants = directory(storage)
    tutor = await assistants.create(GUILD, TUTOR, user_id=ADMIN)
    await assistants.use_in_dm(MEMBER, tutor)
    members = Members()
    members.answers[(GUILD, MEMBER)] = None
    assert (await assistants.for_dm(MEMBER, members=members)).name == "Math Tutor"
    assert (await assistants.for_dm(MEMBER, members=members)).name == "Math Tutor"
    assert members.asked == [GUILD, GUILD]


async def test_shared_guilds_asks_a_bounded_number_of_servers_and_reuses_answers(storage: Storage) -> None:
    assistants = directory(storage)
    members = Members()
    guilds = list(range(100, 130))
    members.answers.update({(g, MEMBER): True for g in (101, 105, 125)})
    first = await assistants.shared_guilds(MEMBER, guilds, members, max_lookups=10)
    assert first == {101, 105} and members.asked == guilds[:10]  # in the order given, at most 10
    second = await assistants.shared_guilds(MEMBER, [*guilds, 101], members, max_lookups=10)
    assert second == {101, 105} and members.asked[10:] == guilds[10:20]  # kept answers cost nothing
    third = await assistants.shared_guilds(MEMBER, guilds, members, max_lookups=10)
    assert third == {101, 105, 125}


async def test_the_membership_cache_forgets_after_its_time_and_stays_bounded() -> None:
    clock = Clock()
    cache = MembershipCache(ttl_s=60, max_answers=3, clock=clock)
    for guild_id in range(4):
        await cache.is_member(guild_id, MEMBER, Members())
    assert [cache.known(guild_id, MEMBER) for guild_id in range(4)] == [None, False, False, False]
    clock.now += 60
    assert cache.known(3, MEMBER) is None
