"""Real MariaDB servers for the catalogue and task queue tests (session scope).

Server 1 is the machine's MariaDB at 127.0.0.1:3306 (root, empty password; elsewhere with
JALIEN_TEST_MARIADB=host:port), in a database
of this session's own, ``jalien_test_<pid>``. Server 2 is a ``mariadbd`` started here on a
free loopback port with its own datadir in a temp dir. Both are dropped/stopped at the end.

Without ``mariadbd`` or a reachable server 1, the MariaDB tests are skipped with a reason
outside CI and fail in CI (``CI`` set), so that CI never passes by not running them.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.ports import free_port

# the machine's server; JALIEN_TEST_MARIADB=host:port points elsewhere (root, no password)
SYSTEM_HOST, _, _port = os.environ.get("JALIEN_TEST_MARIADB", "127.0.0.1:3306").partition(":")
SYSTEM_PORT = int(_port or 3306)
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


@dataclass(frozen=True)
class Server:
    host: str
    port: int

    def dsn(self, database: str) -> str:
        return f"mysql://root:@{self.host}:{self.port}/{database}"

    def connect(self, database: str | None = None):
        import MySQLdb

        kw = {"database": database} if database else {}
        return MySQLdb.connect(
            host=self.host, port=self.port, user="root", password="", charset="utf8mb4",
            autocommit=True, connect_timeout=5, **kw,
        )  # fmt: skip


@dataclass(frozen=True)
class MariaDBServers:
    system: Server
    second: Server
    database: str  # this session's database name, on both servers

    def recreate(self) -> None:
        """An empty database on both servers (each test starts from nothing)."""
        for server in (self.system, self.second):
            conn = server.connect()
            try:
                cur = conn.cursor()
                _settle_stale_xa(cur)
                cur.execute(f"DROP DATABASE IF EXISTS {self.database}")
                cur.execute(f"CREATE DATABASE {self.database}")
            finally:
                conn.close()

    def drop(self) -> None:
        for server in (self.system, self.second):
            with contextlib.suppress(Exception):
                conn = server.connect()
                _settle_stale_xa(conn.cursor())
                conn.cursor().execute(f"DROP DATABASE IF EXISTS {self.database}")
                conn.close()


def _settle_stale_xa(cur) -> None:
    """Roll back the catalogue's prepared XA branches left by a crashed test (older than a
    minute: a live one never waits that long), which would block DROP DATABASE; and never
    wait long for a lock here."""
    cur.execute("SET SESSION lock_wait_timeout = 20")
    cur.execute("XA RECOVER")
    stale = time.time() * 1000 - 60_000
    for _fmt, glen, blen, data in cur.fetchall():
        data = data.decode() if isinstance(data, bytes) else data
        gtrid, bqual = data[:glen], data[glen : glen + blen]
        parts = gtrid.split("-")
        if parts[0] == "jalien" and len(parts) > 2 and parts[1].isdigit() and int(parts[1]) < stale:
            with contextlib.suppress(Exception):
                cur.execute(f"XA ROLLBACK '{gtrid}','{bqual}'")


def unavailable(reason: str) -> None:
    """Skip loudly outside CI; fail in CI."""
    message = f"MariaDB tests cannot run: {reason}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set: the MariaDB backend must be tested)")
    pytest.skip(message + " (set CI=true to make this an error)")


def _reachable(server: Server) -> str:
    try:
        server.connect().close()
    except Exception as exc:
        return f"{server.host}:{server.port}: {exc}"
    return ""


def _binary(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for d in ("/usr/sbin", "/usr/bin") if (p := Path(d, name)).exists()), None
    )


def _start_second(tmp: Path) -> tuple[subprocess.Popen, Server]:
    mariadbd = _binary("mariadbd")
    install = _binary("mariadb-install-db")
    if mariadbd is None or install is None:
        unavailable("mariadbd or mariadb-install-db is not installed (Debian: mariadb-server)")
    datadir = tmp / "data"
    log = tmp / "mariadbd.log"
    subprocess.run(
        [install, "--no-defaults", f"--datadir={datadir}", "--user=root",
         "--auth-root-authentication-method=normal", "--skip-test-db"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, timeout=120,
    )  # fmt: skip
    port = free_port()
    proc = subprocess.Popen(
        [mariadbd, "--no-defaults", f"--datadir={datadir}", f"--port={port}",
         "--bind-address=127.0.0.1", f"--socket={tmp / 'mysqld.sock'}",
         f"--pid-file={tmp / 'mysqld.pid'}", f"--log-error={log}", "--user=root",
         "--skip-grant-tables", "--skip-name-resolve", "--skip-log-bin",
         "--innodb-buffer-pool-size=128M", "--innodb-flush-log-at-trx-commit=2",
         "--max-connections=500"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent,
    )  # fmt: skip
    server = Server("127.0.0.1", port)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            unavailable(f"the second mariadbd exited with {proc.returncode}:\n{tail}")
        if not _reachable(server):
            return proc, server
        if time.monotonic() > deadline:
            _stop(proc)
            unavailable(f"the second mariadbd did not answer within {START_TIMEOUT:.0f} s")
        time.sleep(0.2)


def _die_with_parent() -> None:
    """In the child: SIGTERM when pytest dies, even by kill -9 (Linux's PR_SET_PDEATHSIG)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def _drop_orphans(server: Server) -> None:
    """Drop the databases of test sessions that died without dropping theirs."""
    conn = server.connect()
    try:
        cur = conn.cursor()
        cur.execute("SHOW DATABASES LIKE 'jalien\\_test\\_%'")
        for (name,) in cur.fetchall():
            pid = name.rsplit("_", 1)[-1]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                _settle_stale_xa(cur)
                cur.execute(f"DROP DATABASE IF EXISTS {name}")
    finally:
        conn.close()


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT)


@pytest.fixture(scope="session")
def mariadb_servers(tmp_path_factory):
    try:
        import MySQLdb  # noqa: F401
    except ImportError:
        unavailable("the mysqlclient driver is not installed (pip install -e '.[test]')")
    system = Server(SYSTEM_HOST, SYSTEM_PORT)
    problem = _reachable(system)
    if problem:
        unavailable(f"the system MariaDB is not reachable ({problem}); build/ensure_mariadb.sh")
    _drop_orphans(system)
    proc, second = _start_second(tmp_path_factory.mktemp("mariadb2"))
    servers = MariaDBServers(system, second, f"jalien_test_{os.getpid()}")
    try:
        yield servers
    finally:
        servers.drop()
        _stop(proc)


@pytest.fixture
def mariadb_dsns(mariadb_servers) -> list[str]:
    """A fresh, empty database on each server: [server 1 DSN, server 2 DSN]."""
    mariadb_servers.recreate()
    return [
        mariadb_servers.system.dsn(mariadb_servers.database),
        mariadb_servers.second.dsn(mariadb_servers.database),
    ]


@pytest.fixture(scope="session")
def mariadb_system():
    """Server 1 alone (the task queue needs one server), without starting server 2: yields
    (server, this session's database name there), dropped at the end."""
    try:
        import MySQLdb  # noqa: F401
    except ImportError:
        unavailable("the mysqlclient driver is not installed (pip install -e '.[test]')")
    system = Server(SYSTEM_HOST, SYSTEM_PORT)
    problem = _reachable(system)
    if problem:
        unavailable(f"the system MariaDB is not reachable ({problem}); build/ensure_mariadb.sh")
    _drop_orphans(system)
    database = f"jalien_test_one_{os.getpid()}"
    try:
        yield system, database
    finally:
        with contextlib.suppress(Exception):
            conn = system.connect()
            conn.cursor().execute(f"DROP DATABASE IF EXISTS {database}")
            conn.close()


@pytest.fixture
def mariadb_dsn(mariadb_system) -> str:
    """A fresh, empty database on server 1."""
    server, database = mariadb_system
    conn = server.connect()
    try:
        cur = conn.cursor()
        cur.execute("SET SESSION lock_wait_timeout = 20")
        cur.execute(f"DROP DATABASE IF EXISTS {database}")
        cur.execute(f"CREATE DATABASE {database}")
    finally:
        conn.close()
    return server.dsn(database)
