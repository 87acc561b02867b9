"""A 3-node MariaDB Galera cluster on loopback for the multi-host tests (session scope),
started and stopped by the project's own scripts (build/galera/start.sh, stop.sh).

Use: ``from tests.galera import galera_cluster  # noqa: F401`` in a conftest, then ask for
``galera_cluster`` (a `Galera`: ports, DSNs per node, stop/kill/start of one node). Each
test makes a database of its own with ``galera_cluster.database()``.

Without mariadbd, galera-4 or rsync the tests are skipped with the reason outside CI and
fail in CI (``CI`` set), so that CI never passes by not running them.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "build" / "galera"
PROVIDER = Path(os.environ.get("GALERA_PROVIDER", "/usr/lib/galera/libgalera_smm.so"))
START_TIMEOUT = 180  # the script's own waits are bounded (GALERA_START_TIMEOUT per node)
_numbers = itertools.count(1)


def unavailable(reason: str) -> None:
    """Skip loudly outside CI; fail in CI."""
    message = f"Galera tests cannot run: {reason}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set: the Galera topology must be tested)")
    pytest.skip(message + " (apt-get install galera-4 rsync; set CI=true to make this an error)")


def _missing() -> str:
    for name in ("mariadbd", "mariadb-install-db"):
        if not (shutil.which(name) or Path("/usr/sbin", name).exists()):
            return f"{name} is not installed (Debian: mariadb-server)"
    if not PROVIDER.exists():
        return f"{PROVIDER} is missing (Debian: galera-4)"
    if not shutil.which("rsync"):
        return "rsync is missing (Galera's state transfer)"
    try:
        import MySQLdb  # noqa: F401
    except ImportError:
        return "the mysqlclient driver is not installed (pip install -e '.[test,mariadb]')"
    return ""


def read_env(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


@dataclass
class Galera:
    dir: Path
    ports: list[int]  # mysqld port of nodes 1, 2, 3

    def dsn(self, node: int, database: str) -> str:
        """mysql:// DSN of *node* (1-based) for *database*."""
        return f"mysql://root:@127.0.0.1:{self.ports[node - 1]}/{database}"

    def connect(self, node: int = 1, database: str | None = None):
        import MySQLdb

        kw = {"database": database} if database else {}
        return MySQLdb.connect(
            host="127.0.0.1", port=self.ports[node - 1], user="root", password="",
            charset="utf8mb4", autocommit=True, connect_timeout=5, **kw,
        )  # fmt: skip

    def database(self, prefix: str = "jalien_galera") -> str:
        """A new empty database (replicated to every node), dropped at the session's end."""
        name = f"{prefix}_{os.getpid()}_{next(_numbers)}"
        conn = self.connect()
        try:
            conn.cursor().execute(f"CREATE DATABASE {name}")
        finally:
            conn.close()
        return name

    def status(self, node: int, variable: str) -> str:
        conn = self.connect(node)
        try:
            cur = conn.cursor()
            cur.execute("SHOW GLOBAL STATUS LIKE %s", (variable,))
            row = cur.fetchone()
            return str(row[1]) if row else ""
        finally:
            conn.close()

    def pid(self, node: int) -> int:
        return int((self.dir / f"node{node}" / "mysqld.pid").read_text())

    def kill(self, node: int) -> None:
        """kill -9 of one node (its grastate says it crashed; start() brings it back)."""
        with contextlib.suppress(OSError, ValueError):
            os.kill(self.pid(node), signal.SIGKILL)

    def stop(self, node: int) -> None:
        _script("stop.sh", self.dir, str(node))

    def start(self, node: int) -> None:
        """Node *node* back into the running cluster (IST or SST), waited for."""
        _script("start.sh", self.dir, str(node))


def _script(name: str, *args: object) -> None:
    done = subprocess.run(
        [str(SCRIPTS / name), *map(str, args)],
        capture_output=True, text=True, timeout=START_TIMEOUT, check=False,
    )  # fmt: skip
    if done.returncode:
        raise RuntimeError(f"{name} {' '.join(map(str, args))}: {done.stderr[-3000:]}")


@pytest.fixture(scope="session")
def galera_cluster(tmp_path_factory):
    """The cluster, started once for the session by build/galera/start.sh, stopped at the end."""
    problem = _missing()
    if problem:
        unavailable(problem)
    where = tmp_path_factory.mktemp("galera")
    try:
        _script("start.sh", where)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        with contextlib.suppress(Exception):
            _script("stop.sh", where)
        unavailable(f"build/galera/start.sh failed: {exc}")
    values = read_env(where / "cluster.env")
    cluster = Galera(where, [int(values[f"PORT_{n}"]) for n in (1, 2, 3)])
    try:
        yield cluster
    finally:
        with contextlib.suppress(Exception):
            _script("stop.sh", where)
