"""Lint, format and type checks run with the tests, so CI's one command checks them too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECK_TIMEOUT_S = 300


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=CHECK_TIMEOUT_S
    )


def test_ruff_lint() -> None:
    result = run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format() -> None:
    result = run("ruff", "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.timeout(CHECK_TIMEOUT_S)
def test_mypy_strict_on_the_application_the_tests_and_the_stand_ins() -> None:
    result = run("mypy", "bot", "cogs", "tools", "standins", "tests", "bench")
    assert result.returncode == 0, result.stdout + result.stderr
