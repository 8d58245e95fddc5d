"""The house's boundaries, checked: the core knows nothing of Discord, and arrows point inward.

- The core (`bot/` but for `bot/discord/` and the entry point) imports neither discord.py nor the
  Discord side (`bot.discord`), nor `cogs` or `tools`, which build on it.
- `tools/` are function-calling tools over the core: no discord.py, no Discord side, no cogs.
- The entry point (`bot/__main__.py`) loads discord.py only to run the bot, so `--help` and `--check`
  answer without it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DISCORD_SIDE = ROOT / "bot" / "discord"
ENTRY_POINT = ROOT / "bot" / "__main__.py"
CORE_MAY_NOT_IMPORT = ("discord", "bot.discord", "cogs", "tools")
TOOLS_MAY_NOT_IMPORT = ("discord", "bot.discord", "cogs")


def imported_modules(source: str) -> Iterator[str]:
    """Every module an `import` or `from ... import` names, wherever it stands (also inside functions
    and `if TYPE_CHECKING:`); relative imports are not used in this project and are named as written."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            yield base
            if node.module is None or node.module in ("bot",):  # `from bot import discord`
                yield from (f"{base}.{alias.name}".lstrip(".") for alias in node.names)


def is_within(module: str, packages: tuple[str, ...]) -> bool:
    """`module` is one of `packages` or inside one (`discord.ext` is in `discord`; `discordant` is not)."""
    return any(module == name or module.startswith(name + ".") for name in packages)


def forbidden_imports(path: Path, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(ROOT)} imports {module}"
        for module in imported_modules(path.read_text(encoding="utf-8"))
        if is_within(module, forbidden)
    ]


def core_modules() -> list[Path]:
    return [
        path
        for path in sorted((ROOT / "bot").rglob("*.py"))
        if DISCORD_SIDE not in path.parents and path != ENTRY_POINT
    ]


def test_the_core_never_imports_discord_or_what_builds_on_it() -> None:
    modules = core_modules()
    assert len(modules) > 20  # the walk found the core (config, storage, engine, ...)
    offenders = [line for path in modules for line in forbidden_imports(path, CORE_MAY_NOT_IMPORT)]
    assert offenders == []


def test_tools_never_import_discord_or_cogs() -> None:
    modules = sorted((ROOT / "tools").rglob("*.py"))
    assert modules
    offenders = [line for path in modules for line in forbidden_imports(path, TOOLS_MAY_NOT_IMPORT)]
    assert offenders == []


@pytest.mark.parametrize(
    "source",
    [
        "import discord",
        "import discord.ext.commands as commands",
        "from discord import app_commands",
        "from bot.discord.app import AssistantBot",
        "from bot import discord",
        "def late():\n    from cogs.chat import ChatCog",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from tools.owned import RecordKind",
    ],
)
def test_the_check_sees_every_way_of_importing(source: str) -> None:
    assert [name for name in imported_modules(source) if is_within(name, CORE_MAY_NOT_IMPORT)]


def test_a_discord_free_name_is_not_mistaken_for_discord() -> None:
    names = imported_modules("import discordant\nfrom bot.discord_free import x\nimport toolsmith")
    assert not [name for name in names if is_within(name, CORE_MAY_NOT_IMPORT)]


def test_the_entry_point_loads_discord_only_to_run_the_bot() -> None:
    probe = (
        "import sys, bot.__main__\n"
        "loaded = sorted(m for m in sys.modules if m == 'discord' or m.startswith('discord.'))\n"
        "print(loaded)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
