"""Shard settings: `[discord] shard_count` / `shard_ids`, BOT_SHARD_COUNT / BOT_SHARD_IDS and
`--shard-count` / `--shard-ids`, refused at start when Discord would refuse them; and the pacing of
the shards' IDENTIFYs."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from bot.config import AppConfig, DiscordConfig, load_config, with_shards
from bot.discord.app import AssistantBot
from bot.discord.shards import IdentifyPacing
from bot.errors import ConfigError
from tests.conftest import fake_secrets, make_config
from tests.test_cli import one_error_line, run_cli

ENV_NAMES = ("BOT_SHARD_COUNT", "BOT_SHARD_IDS")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_unset_means_discord_recommends_the_count_and_this_process_runs_all() -> None:
    assert (AppConfig().discord.shard_count, AppConfig().discord.shard_ids) == (None, None)


def test_the_file_sets_the_count_and_this_processs_shards(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, "[discord]\nshard_count = 4\nshard_ids = [2, 3]\n"), required=True, env={}
    )
    assert (config.discord.shard_count, config.discord.shard_ids) == (4, (2, 3))


@given(
    count=st.one_of(st.none(), st.integers(min_value=-2, max_value=12)),
    ids=st.one_of(st.none(), st.lists(st.integers(min_value=-2, max_value=14), max_size=6)),
)
def test_shard_settings_are_accepted_exactly_when_discord_would_accept_them(
    count: int | None, ids: list[int] | None
) -> None:
    valid_count = count is None or count >= 1
    valid_ids = ids is None or (
        count is not None and bool(ids) and all(0 <= i < count for i in ids) and len(set(ids)) == len(ids)
    )
    try:
        config = DiscordConfig.model_validate({"shard_count": count, "shard_ids": ids})
    except ValidationError:
        assert not (valid_count and valid_ids)
    else:
        assert valid_count and valid_ids
        assert config.shard_ids == (tuple(ids) if ids is not None else None)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("shard_ids = [0]", "discord.shard_ids needs discord.shard_count"),
        (
            "shard_count = 2\nshard_ids = [0, 2]",
            "discord.shard_ids names [2], outside 0..1 (shard_count is 2)",
        ),
        ("shard_count = 2\nshard_ids = [1, 1]", "discord.shard_ids names [1] more than once"),
        ("shard_count = 2\nshard_ids = []", "discord.shard_ids is empty"),
        ("shard_count = 0", "discord.shard_count"),
    ],
)
def test_a_wrong_shard_setting_is_one_line_naming_it(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, f"[discord]\n{text}\n"), required=True, env={})
    assert problem in str(caught.value)


def test_the_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[discord]\nshard_count = 4\nshard_ids = [2, 3]\n")
    both = load_config(path, required=True, env={"BOT_SHARD_COUNT": "2", "BOT_SHARD_IDS": " 0, 1 "})
    assert (both.discord.shard_count, both.discord.shard_ids) == (2, (0, 1))
    # A new count alone means every shard of it: the file's ids belong to the file's count.
    count_only = load_config(path, required=True, env={"BOT_SHARD_COUNT": "8"})
    assert (count_only.discord.shard_count, count_only.discord.shard_ids) == (8, None)
    ids_only = load_config(path, required=True, env={"BOT_SHARD_IDS": "0"})
    assert (ids_only.discord.shard_count, ids_only.discord.shard_ids) == (4, (0,))
    blank = load_config(path, required=True, env={"BOT_SHARD_COUNT": "", "BOT_SHARD_IDS": " "})
    assert (blank.discord.shard_count, blank.discord.shard_ids) == (4, (2, 3))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"BOT_SHARD_COUNT": "two"}, "environment: BOT_SHARD_COUNT is not a whole number (got 'two')"),
        (
            {"BOT_SHARD_IDS": "0;1", "BOT_SHARD_COUNT": "2"},
            "environment: BOT_SHARD_IDS is not a comma-separated",
        ),
        (
            {"BOT_SHARD_IDS": "0,3", "BOT_SHARD_COUNT": "2"},
            "environment: BOT_SHARD_IDS names [3], outside 0..1",
        ),
        ({"BOT_SHARD_IDS": "0"}, "environment: BOT_SHARD_IDS needs discord.shard_count"),
        ({"BOT_SHARD_COUNT": "0"}, "environment: BOT_SHARD_COUNT "),
    ],
)
def test_a_wrong_environment_value_names_the_variable(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.toml", required=False, env=env)
    assert str(caught.value).startswith(message)


def test_with_shards_keeps_the_config_when_nothing_is_given() -> None:
    config = make_config(Path("unused"), discord={"shard_count": 3, "shard_ids": [1]})
    kept = with_shards(config, shard_count=None, shard_ids=None, source="command line", names=ENV_NAMES)
    assert kept == config


def test_the_command_line_flags_are_listed_and_checked_like_the_file(tmp_path: Path) -> None:
    help_text = run_cli("--help", cwd=tmp_path).stdout
    assert "--shard-count N" in help_text and "--shard-ids IDS" in help_text
    line = one_error_line(run_cli("--check", "--shard-count", "2", "--shard-ids", "0,2", cwd=tmp_path))
    assert line == "error: command line: --shard-ids names [2], outside 0..1 (shard_count is 2)"
    # The flags win over the environment: a new count alone drops the environment's ids for it.
    overridden = run_cli(
        "--check", "--shard-count", "2", cwd=tmp_path, BOT_SHARD_COUNT="4", BOT_SHARD_IDS="3"
    )
    assert overridden.returncode == 0, overridden.stderr
    refused = run_cli("--check", "--shard-ids", "3", cwd=tmp_path, BOT_SHARD_COUNT="2")
    assert (
        one_error_line(refused)
        == "error: command line: --shard-ids names [3], outside 0..1 (shard_count is 2)"
    )


def test_the_bot_connects_the_configured_shards(tmp_path: Path) -> None:
    configured = AssistantBot(
        make_config(tmp_path, discord={"shard_count": 4, "shard_ids": [1, 3]}), fake_secrets()
    )
    assert (configured.shard_count, configured.shard_ids) == (4, [1, 3])
    unset = AssistantBot(make_config(tmp_path), fake_secrets())
    unset_count: int | None = unset.shard_count  # typed int by discord.py, None until it asks
    assert unset_count is None and unset.shard_ids is None  # discord.py asks GET /gateway/bot


def finishes_without_waiting(pacing: IdentifyPacing, shard_id: int) -> bool:
    """Whether `wait_turn` returns at its first step (no sleep), told without any clock."""
    turn = pacing.wait_turn(shard_id)
    try:
        turn.send(None)
    except StopIteration:
        return True
    turn.close()
    return False


async def test_shards_of_different_identify_buckets_identify_at_once_and_a_bucket_waits_its_turn() -> None:
    pacing = IdentifyPacing(max_concurrency=2)
    assert [pacing.bucket(shard) for shard in range(4)] == [0, 1, 0, 1]
    assert finishes_without_waiting(pacing, 0)
    assert finishes_without_waiting(pacing, 1)
    assert not finishes_without_waiting(pacing, 2)  # bucket 0 identified less than 5 s ago
    one_bucket = IdentifyPacing(max_concurrency=1)
    assert finishes_without_waiting(one_bucket, 0)
    assert not finishes_without_waiting(one_bucket, 1)
