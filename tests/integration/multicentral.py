"""Several jcentrals as separate hosts on this machine (issue 21): each with its own home
(its own LMDB cache, audit log, ports), sharing the envelope key and the token CA (a copy
of the first home's), the catalogue and the task queue in MariaDB - the machine's server
(databases of the test's own) or one node each of the Galera cluster (tests/galera.py).
A VoBox running fork JobAgents connects to one of them (or to the list of them)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from jalien.auth.tls import client_context
from jalien.net.client import Client
from jalien.storage.envelope import EnvelopeSigner
from tests.integration.conftest import free_port, jalien_bin, run_setup, start_central, stop

STATE = ("cache", "log", "se", "catalogue.db", "taskqueue.db", "routes.db", "lfnexpiry.db")


@dataclass
class Central:
    name: str
    home: Path
    binary: int
    ws: int
    log: Path
    proc: subprocess.Popen | None = None
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        if self.log.exists():  # a restart: "jcentral ready" is waited for in a new log
            self.log.rename(self.log.with_suffix(f".{time.monotonic_ns()}.log"))
        self.proc = start_central(self.home, self.log, self.ws, self.binary, env=self.env)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    def logs(self) -> str:
        return f"--- {self.name}\n{self.log.read_text(errors='replace')[-4000:]}"


class Grid:
    """*n* jcentrals on shared databases (*dsns(i)*: the catalogue's and the task queue's
    DSN for central i; None: each home's SQLite files), the first with the embedded SE
    unless *se* is None."""

    def __init__(
        self,
        tmp: Path,
        n: int,
        dsns,
        *,
        se: int | None = 0,
        env: dict[str, str] | None = None,
        galera: bool = False,
    ) -> None:
        self.tmp = tmp
        self.globus = tmp / "globus"
        first = tmp / "home0"
        done = run_setup(first, self.globus)
        assert done.returncode == 0, done.stderr
        EnvelopeSigner.load_or_create(first / "envelope")  # shared by every central
        self.centrals: list[Central] = []
        for i in range(n):
            home = tmp / f"home{i}"
            if i:
                shutil.copytree(first, home)
            for name in STATE:
                with contextlib.suppress(FileNotFoundError):
                    (shutil.rmtree if (home / name).is_dir() else os.unlink)(home / name)
            config = tmp / f"jalien{i}.toml"
            if dsns is None:  # the home's SQLite files (one host, e.g. its workers)
                config.write_text("")
            else:
                catalogue, queue = dsns(i)
                # on Galera every central reaches the catalogue through its own node: the
                # index names the host "galera" for all (docs/multihost.md)
                named = 'names = ["galera"]\n' if galera else ""
                config.write_text(
                    'catalogue_backend = "mariadb"\ntaskqueue_backend = "mariadb"\n'
                    f"[catalogue_mariadb]\nhosts = {json.dumps([catalogue])}\n{named}"
                    f'[taskqueue_mariadb]\ndsn = "{queue}"\n'
                )
            central = Central(f"central{i}", home, free_port(), free_port(), tmp / f"jc{i}.log")
            central.env = {
                "JALIEN_CONFIG": str(config),
                "JALIEN_PEER_POLL_INTERVAL": "0.2",
                "JALIEN_CACHE_HTTP_PORT": "-1",
                "JALIEN_JOB_HEARTBEAT_TIMEOUT": "6",
                "JALIEN_JOB_ZOMBIE_TIMEOUT": "2",
                "JALIEN_JOB_WATCHDOG_INTERVAL": "0.5",
                **(env or {}),
            }
            if i == se:
                central.env.update(JALIEN_EMBEDDED_SE="1", JALIEN_SE_PORT=str(free_port()))
            self.centrals.append(central)
        self.vobox: subprocess.Popen | None = None
        self.vobox_dir = tmp / "vobox"
        self.vobox_log = tmp / "vobox.log"

    def start(self) -> None:
        for central in self.centrals:
            central.start()

    def user(self, i: int, reconnect: bool = False, **kw) -> Client:
        context = client_context(
            self.globus / "usercert.pem",
            self.globus / "userkey.pem",
            self.centrals[i].home / "certificates",
        )
        return Client("127.0.0.1", self.centrals[i].binary, context, reconnect=reconnect, **kw)

    def start_vobox(self, central: str, ce: str, **env_extra: str) -> None:
        """A fork VoBox (the first home's host certificate) connected to *central*
        ("host:port", or the list S's endpoints take)."""
        tmpdir = self.tmp / "tmpdir"
        tmpdir.mkdir(exist_ok=True)
        (self.tmp / "wn").mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JALIEN_", "X509_"))}
        env.update(
            PYTHONUNBUFFERED="1",
            TMPDIR=str(tmpdir),
            JALIEN_VOBOX_DIR=str(self.vobox_dir),
            JALIEN_CE=ce,
            JALIEN_BATCH="fork",
            JALIEN_SUBMIT_INTERVAL="0.5",
            JALIEN_AGENT_START_GRACE="5",
            JALIEN_JOBAGENT_TTL="300",
            JALIEN_WORKDIR=str(self.tmp / "wn"),
            JALIEN_JOBAGENT_ENV="JALIEN_MONITOR_INTERVAL=0.5",
        )
        env.update(env_extra)
        if "JALIEN_NO_EXTENSIONS" in os.environ:
            env["JALIEN_NO_EXTENSIONS"] = os.environ["JALIEN_NO_EXTENSIONS"]
        out = open(self.vobox_log, "ab")  # noqa: SIM115 - closed with the process
        self.vobox = subprocess.Popen(
            [*jalien_bin(), "--role", "vobox", "--home", str(self.centrals[0].home),
             "--central", central, "--listen", "127.0.0.1"],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip

    def stop_vobox(self) -> None:
        if self.vobox is not None:
            stop(self.vobox)
            self.vobox = None
        self._end_agents()

    def _end_agents(self) -> None:
        # fork agents outlive their VoBox (as batch jobs do): end what is left of them
        for proc in psutil.process_iter(["environ"]):
            with contextlib.suppress(psutil.Error, TypeError):
                if str(self.tmp) in (proc.info["environ"] or {}).get("JALIEN_WORKDIR", ""):
                    proc.kill()

    def agent_logs(self) -> str:
        text = []
        for log in sorted(self.vobox_dir.glob("agents/*/*.log"))[-4:]:
            text.append(f"--- {log}\n{log.read_text(errors='replace')[-3000:]}")
        return "\n".join(text)

    def logs(self) -> str:
        text = [c.logs() for c in self.centrals]
        if self.vobox_log.exists():
            text.append(f"--- vobox\n{self.vobox_log.read_text(errors='replace')[-4000:]}")
        text.append(self.agent_logs())
        return "\n".join(text)

    def close(self) -> None:
        self.stop_vobox()
        for central in self.centrals:
            central.stop()


def mariadb_databases(server) -> tuple[str, str, callable]:
    """Two new databases on *server* (tests.catalogue.mariadb_servers.Server): the
    catalogue's and the task queue's; returns their names and a dropper."""
    tag = uuid.uuid4().hex[:8]
    names = (f"jalien_mc_{tag}_cat", f"jalien_mc_{tag}_tq")
    conn = server.connect()
    try:
        for name in names:
            conn.cursor().execute(f"CREATE DATABASE {name}")
    finally:
        conn.close()

    def drop() -> None:
        with contextlib.suppress(Exception):
            conn = server.connect()
            for name in names:
                conn.cursor().execute(f"DROP DATABASE IF EXISTS {name}")
            conn.close()

    return names[0], names[1], drop


class Databases:
    """Where the centrals' catalogue and task queue live: the machine's MariaDB (one
    server for all), or the Galera cluster, central i on node ``node(i)`` (2, 3, 1, ...:
    each host its own node; node 1, where the fixture makes databases, is the SE's)."""

    def __init__(self, request, kind: str) -> None:
        self.kind = kind
        self.galera = kind == "galera"
        self.cluster = None
        if self.galera:
            self.cluster = request.getfixturevalue("galera_cluster")
            self.names = (self.cluster.database("jalien_mc_cat"),
                          self.cluster.database("jalien_mc_tq"))  # fmt: skip
            self._drop = lambda: None  # the fixture drops its databases
        else:
            self.server, _ = request.getfixturevalue("mariadb_system")
            cat, tq, self._drop = mariadb_databases(self.server)
            self.names = (cat, tq)

    def node(self, i: int) -> int:
        """The Galera node of central i."""
        return (i + 1) % 3 + 1

    def dsns(self, i: int) -> tuple[str, str]:
        if self.cluster is not None:
            node = self.node(i)
            # the other nodes as failover servers: a central outlives its node
            others = ",".join(f"127.0.0.1:{p}" for n, p in enumerate(self.cluster.ports, 1)
                              if n != node)  # fmt: skip
            return tuple(  # type: ignore[return-value]
                f"{self.cluster.dsn(node, name)}?failover={others}" for name in self.names
            )
        return self.server.dsn(self.names[0]), self.server.dsn(self.names[1])

    def connect_queue(self, i: int = 0):
        if self.cluster is not None:
            return self.cluster.connect(self.node(i), self.names[1])
        return self.server.connect(self.names[1])

    def drop(self) -> None:
        self._drop()


def until(check, seconds: float, what: str, logs=lambda: ""):
    """Poll *check* (a sync callable) until it returns something true."""
    deadline = time.monotonic() + seconds
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{logs()}")
        time.sleep(0.1)
