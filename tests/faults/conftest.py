"""The fault suite's marker and the load test's duration.

`slow` tests (real processes, the load test) run by default and in CI; `-m "not slow"` leaves them out
for a quick local run.
"""

from __future__ import annotations

import pytest

DEFAULT_LOAD_S = 60.0
"""The load test's duration when `--load-seconds` is not given."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: runs real processes or a long load; part of the default run")


@pytest.fixture
def load_seconds(request: pytest.FixtureRequest) -> float:
    chosen: float | None = request.config.getoption("--load-seconds")
    return DEFAULT_LOAD_S if chosen is None else chosen
