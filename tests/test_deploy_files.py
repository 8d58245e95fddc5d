"""The deployment files say what the bot does: the image installs as the README says, the compose file
splits the shards between its processes without gaps or overlaps, and keeps secrets in `.env`.

No Docker engine runs here (or in CI), so the files are checked as data against the bot's own config.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from bot.config import ENVIRONMENT_VARIABLES, load_config

ROOT = Path(__file__).resolve().parent.parent
SECRETS = ("DISCORD_TOKEN", "OPENAI_API_KEY")


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def shard_services() -> dict[str, dict[str, Any]]:
    return {
        name: spec
        for name, spec in compose()["services"].items()
        if "BOT_SHARD_IDS" in spec.get("environment", {})
    }


def readme_setup_command() -> str:
    """The README's command that sets up and runs the bot (the first fenced line with `pip install -q .`)."""
    commands = re.findall(
        r"^(python3 -m venv .*pip install -q \..*)$", (ROOT / "README.md").read_text(), re.M
    )
    assert commands, "the README lost its set-up-and-run command"
    return str(commands[0])


def test_image_installs_with_the_readmes_command() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    install, _, run = readme_setup_command().rpartition(" && ")
    assert f"RUN {install}" in dockerfile
    cmd = re.search(r"^CMD (\[.*\])$", dockerfile, re.M)
    assert cmd is not None
    assert " ".join(yaml.safe_load(cmd.group(1))).startswith(run)


def test_every_copied_path_exists_and_the_package_is_complete() -> None:
    copied = re.findall(r"^COPY (.+) \S+$", (ROOT / "Dockerfile").read_text(), re.M)
    sources = [source for line in copied for source in shlex.split(line)]
    for source in sources:
        assert (ROOT / source).exists(), source
    assert {"bot", "cogs", "tools", "pyproject.toml"} <= set(sources)


def test_container_settings_are_valid_and_listen_for_the_scraper() -> None:
    config = load_config(ROOT / "deploy" / "container.toml", required=True, env={})
    assert config.metrics.host == "0.0.0.0"


def test_shard_processes_split_the_shards_without_gap_or_overlap() -> None:
    services = shard_services()
    assert len(services) >= 2
    counts = {spec["environment"]["BOT_SHARD_COUNT"] for spec in services.values()}
    assert len(counts) == 1, "every process must be given the same shard count"
    count = int(counts.pop())
    shard_ids = [
        int(part)
        for spec in services.values()
        for part in str(spec["environment"]["BOT_SHARD_IDS"]).split(",")
    ]
    assert sorted(shard_ids) == list(range(count))
    for spec in services.values():
        assert int(spec["environment"]["BOT_PROCESS_COUNT"]) == len(services)


def test_processes_share_one_database_and_one_budget() -> None:
    services = shard_services()
    for variable in ("BOT_DATABASE", "BOT_REDIS_URL"):
        values = {spec["environment"][variable] for spec in services.values()}
        assert len(values) == 1, variable
    database = next(iter(services.values()))["environment"]["BOT_DATABASE"]
    assert database.startswith("postgresql://")
    ports = [port for spec in services.values() for port in spec.get("ports", [])]
    assert len(ports) == len(set(ports)), "two processes publish the same metrics port"
    for spec in services.values():
        waits_for = spec["depends_on"]
        assert waits_for["postgres"]["condition"] == waits_for["redis"]["condition"] == "service_healthy"


def test_compose_sets_only_variables_the_bot_reads() -> None:
    known = {entry.name for entry in ENVIRONMENT_VARIABLES}
    for name, spec in shard_services().items():
        unknown = set(spec["environment"]) - known
        assert not unknown, f"{name} sets {sorted(unknown)}, which the bot does not read"


def test_secrets_stay_in_the_env_file() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for secret in SECRETS:
        assert not re.search(rf"^\s*{secret}\s*:", text, re.M), f"{secret} is written in the compose file"
    for spec in shard_services().values():
        assert spec["env_file"] == ".env"
    example = (ROOT / ".env.example").read_text()
    for name in (*SECRETS, "POSTGRES_PASSWORD"):
        assert re.search(rf"^{name}=", example, re.M), name
    ignored = (ROOT / ".gitignore").read_text().split()
    assert ".env" in ignored
