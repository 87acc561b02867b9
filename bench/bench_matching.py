"""Matching on a MariaDB task queue, the real path: claims batched in the database.

    python bench/bench_matching.py [--scale 1.0] [--backend mariadb|galera|both]
                                   [--rounds 5] [--inflight 32]

A `jalien-bin --role jcentral` process (a fresh `jalien-bin setup` home) whose task queue
is in MariaDB and holds 100k waiting jobs (written straight into the tables before it
starts), pinned to one core, serving over mutual TLS; a JobAgent-like client in this
process (another process), pinned to the other core, holding a jobagent token, calls
`getMatchJob` with a fixed number in flight over several connections. Each match is the
broker's choice, the claim committed in the database (TaskQueue.claim: the claims of
every agent that asked meanwhile in one operation of a group commit), the JDL and a job
token (EC key + certificate) in the reply. Figures, the median of --rounds rounds:
matches/s, matches/s per server core (the jcentral's CPU time, every thread, from /proc;
the database server's own CPU is not counted), p50/p99 latency.

Backends: "mariadb" is the machine's server at 127.0.0.1:3306 (root, no password;
JALIEN_BENCH_MARIADB=host:port elsewhere), in a scratch database dropped at the end;
"galera" a 3-node cluster started on loopback by build/galera/start.sh (jcentral on node 1,
every commit certified by the three), stopped at the end. Each is skipped with one line
when it cannot run.

Baseline in the same run: the same jcentral with the claim made as before (one
SELECT ... FOR UPDATE, UPDATE and INSERT transition per job, each in its own operation of
the group commit: what issue 21 measured at 353-487 matches/s). Target (issue 21):
>= 2,000 matches/s per server core with job tokens. The machine has two cores shared with
other work (and, here, the database servers): the figures move between runs, give ranges.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_jobs import LOAD_SLOT, SERVER_SLOT, job_texts, match_rounds  # noqa: E402 - bench/
from bench_net import spinning  # noqa: E402 - bench/
from loadlib import pin  # noqa: E402 - bench/

MARIADB = os.environ.get("JALIEN_BENCH_MARIADB", "127.0.0.1:3306")
# jcentral as `python -m jalien`; "unbatched": claims as before (a transition per job)
PATCHED_SERVER = (
    "import runpy, sys\n"
    "from jalien.jobs.mariadb_store import MariaDBTaskQueue\n"
    "from jalien.jobs.states import JobState\n"
    "from jalien.wire.errors import RequestError\n"
    "mode = sys.argv.pop(1)\n"
    "if mode == 'unbatched':\n"
    "    async def claim(self, claims):\n"
    "        out = []\n"
    "        for c in claims:\n"
    "            try:\n"
    "                _, row = await self.transition(c.job_id, JobState.ASSIGNED,\n"
    "                    expect=frozenset({JobState.WAITING}), message=c.message,\n"
    "                    fields={'site': c.site, 'ce': c.ce, 'node': c.node,\n"
    "                            'heartbeat': c.heartbeat})\n"
    "                out.append(row)\n"
    "            except RequestError:\n"
    "                out.append(None)\n"
    "        return out\n"
    "    MariaDBTaskQueue.claim = claim\n"
    "sys.argv[0] = 'jalien'\n"
    "runpy.run_module('jalien', run_name='__main__', alter_sys=True)\n"
)


def _admin(address: str) -> Any:
    from jalien.sqlstore.mysql import connect, parse_dsn

    return connect(parse_dsn(f"mysql://root:@{address}/mysql"))


def mariadb_problem(address: str) -> str:
    try:
        from jalien.sqlstore.mysql import close_quietly
    except ImportError as exc:
        return f"the mysqlclient driver is missing ({exc})"
    try:
        close_quietly(_admin(address))
    except Exception as exc:
        return f"no MariaDB at {address} as root without a password ({exc})"
    return ""


class Unavailable(Exception):
    """The Galera cluster cannot start here (galera-4 missing, ...)."""


@contextlib.contextmanager
def galera() -> Iterator[str]:
    """A 3-node cluster on loopback; yields node 1's address (Unavailable: it cannot)."""
    with tempfile.TemporaryDirectory(prefix="bench-galera-") as tmp:
        done = subprocess.run(
            [str(ROOT / "build" / "galera" / "start.sh"), tmp],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        try:
            if done.returncode:
                raise Unavailable(done.stderr.strip().splitlines()[-1] if done.stderr else "failed")
            env = dict(
                line.split("=", 1) for line in Path(tmp, "cluster.env").read_text().splitlines()
            )
            yield f"127.0.0.1:{env['PORT_1']}"
        finally:
            subprocess.run(
                [str(ROOT / "build" / "galera" / "stop.sh"), tmp],
                capture_output=True, timeout=120, check=False,
            )  # fmt: skip


USERS = 4  # the jobs' owners: a user runs 10,000 jobs at most (the default job quota)


def prefill(dsn: str, n_jobs: int) -> float:
    """*n_jobs* waiting jobs of USERS users written straight into the task queue's tables
    (multi-row INSERTs of 2,000, explicit ids), after its schema; the seconds it took."""
    from jalien.jobs.mariadb_store import SCHEMA
    from jalien.sqlstore.mysql import close_quietly, connect, parse_dsn

    texts = job_texts()
    conn = connect(parse_dsn(dsn), autocommit=False)
    t0 = time.perf_counter()
    try:
        cur = conn.cursor()
        for statement in SCHEMA:
            cur.execute(statement)
        stamp = int(time.time() * 1000)
        for first in range(1, n_jobs + 1, 2000):
            ids = range(first, min(first + 2000, n_jobs + 1))
            queue, jdls, traces = [], [], []
            for i in ids:
                jdl, text = texts[i % len(texts)]
                queue += [
                    i,
                    f"bench{i % USERS}",
                    "WAITING",
                    jdl.requirements,
                    ",".join(jdl.packages),
                    jdl.ttl,
                    stamp,
                ]
                jdls += [i, text]
                traces += [i, stamp]
            cur.execute(
                "INSERT INTO QUEUE (queueId, user, state, requirements, packages, ttl, submitted) "
                "VALUES " + ",".join(["(%s,%s,%s,%s,%s,%s,%s)"] * len(ids)),
                queue,
            )
            cur.execute(
                "INSERT INTO QUEUEJDL (queueId, jdl) VALUES " + ",".join(["(%s,%s)"] * len(ids)),
                jdls,
            )
            cur.execute(
                "INSERT INTO QUEUETRACE (queueId, time, state, message) VALUES "
                + ",".join(["(%s,%s,'WAITING','submitted')"] * len(ids)),
                traces,
            )
            conn.commit()
    finally:
        close_quietly(conn)
    return time.perf_counter() - t0


class MariaDBGrid:
    """A jcentral on a fresh home whose task queue is *database* at *address*, pinned to one
    core; the attributes bench_jobs.match_rounds reads (home, globus, port, proc, tokens)."""

    tokens = "ec"

    def __init__(self, tmp: Path, address: str, n_jobs: int, mode: str) -> None:
        self.tmp, self.address, self.n_jobs, self.mode = tmp, address, n_jobs, mode
        self.home, self.globus = tmp / "home", tmp / "globus"
        self.database = f"jalien_bench_match_{os.getpid()}_{mode}"
        self.proc: Any = None
        self.port = 0
        self.prefill_s = self.start_s = 0.0

    def __enter__(self) -> MariaDBGrid:
        from tests.integration.conftest import free_port, run_setup

        done = run_setup(self.home, self.globus)
        if done.returncode:
            raise SystemExit(f"jalien-bin setup failed: {done.stderr}")
        admin = _admin(self.address)
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {self.database}")
        admin.cursor().execute(f"CREATE DATABASE {self.database}")
        admin.close()
        dsn = f"mysql://root:@{self.address}/{self.database}"
        self.prefill_s = prefill(dsn, self.n_jobs)
        config = self.tmp / "jalien.toml"
        config.write_text(f'taskqueue_backend = "mariadb"\n[taskqueue_mariadb]\ndsn = "{dsn}"\n')
        self.port = free_port()
        log = self.tmp / "jcentral.log"
        cpus = sorted(os.sched_getaffinity(0))
        core = {cpus[SERVER_SLOT]} if len(cpus) >= 2 else set(cpus)
        ports = ["--ws-port", str(free_port()), "--binary-port", str(self.port)]
        t0 = time.perf_counter()
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", PATCHED_SERVER, self.mode,
                 "--role", "jcentral", "--home", str(self.home), *ports],
                stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", "JALIEN_CONFIG": str(config)},
                preexec_fn=lambda: os.sched_setaffinity(0, core),
            )  # fmt: skip
        deadline = time.monotonic() + 600
        while "jcentral ready" not in log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise SystemExit(f"jcentral did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
        self.start_s = time.perf_counter() - t0
        return self

    def __exit__(self, *exc: object) -> None:
        from tests.integration.conftest import stop

        if self.proc is not None:
            stop(self.proc)
        with contextlib.suppress(Exception):
            admin = _admin(self.address)
            admin.cursor().execute(f"DROP DATABASE IF EXISTS {self.database}")
            admin.close()


def run_backend(
    name: str, address: str, scale: float, inflight: int, rounds: int, spin: bool
) -> dict[str, dict[str, float]]:
    n_jobs = max(500, int(100_000 * scale))
    per_round = max(50, int(4_000 * scale))
    connections = min(inflight, 8)
    print(
        f"== {name}: jcentral over TLS, task queue with {n_jobs:,} waiting jobs at {address}; "
        f"{inflight} getMatchJob in flight over {connections} connections, median of {rounds}",
        flush=True,
    )
    print(f"  {'':40}{'matches/s':>10} {'per core':>10} {'srv CPU':>8} {'p50 ms':>8} {'p99 ms':>8}")
    medians: dict[str, dict[str, float]] = {}
    for label, mode in (
        ("claims batched in the database", "batched"),
        ("baseline: a transition per match", "unbatched"),
    ):
        with (
            tempfile.TemporaryDirectory() as tmp,
            MariaDBGrid(Path(tmp), address, n_jobs, mode) as grid,
            spinning(spin, 3600),
        ):
            results = asyncio.run(match_rounds(grid, rounds, per_round, inflight, connections))
        med = {key: statistics.median(r[key] for r in results) for key in results[0]}
        low = min(r["per_core"] for r in results)
        high = max(r["per_core"] for r in results)
        medians[label] = med
        print(
            f"  {label:40}{med['rate']:10,.0f} {med['per_core']:10,.0f} "
            f"{med['server_cpu'] * 100:7.0f}% {med['p50']:8.2f} {med['p99']:8.2f}"
            f"   (per core {low:,.0f}-{high:,.0f}; prefill {grid.prefill_s:.1f} s, "
            f"start {grid.start_s:.1f} s)",
            flush=True,
        )
    batched, before = medians.values()
    print(
        f"  batched / before: {batched['per_core'] / before['per_core']:.1f}x per server core, "
        f"{batched['rate'] / before['rate']:.1f}x matches/s; target >= 2,000 matches/s per "
        f"core ({batched['per_core']:,.0f})",
        flush=True,
    )
    return medians


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="size factor (CI: 0.001)")
    parser.add_argument("--backend", choices=["mariadb", "galera", "both"], default="both")
    parser.add_argument("--inflight", type=int, default=32, help="getMatchJob calls in flight")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds")
    parser.add_argument("--no-spin", action="store_true", help="no SCHED_IDLE spinners")
    args = parser.parse_args()
    if args.inflight < 1 or args.rounds < 1 or args.scale <= 0:
        parser.error("--inflight and --rounds must be >= 1, --scale > 0")
    rounds = args.rounds if args.scale >= 0.01 else min(args.rounds, 2)
    where = pin(LOAD_SLOT)
    print(f"server pinned to slot {SERVER_SLOT}, load generator {where}", flush=True)
    if args.backend in ("mariadb", "both"):
        problem = mariadb_problem(MARIADB)
        if problem:
            print(f"== mariadb: skipped: {problem}", flush=True)
        else:
            run_backend("mariadb", MARIADB, args.scale, args.inflight, rounds, not args.no_spin)
    if args.backend in ("galera", "both"):
        try:
            with galera() as address:
                run_backend(
                    "galera (3 nodes, jcentral on node 1)",
                    address,
                    args.scale,
                    args.inflight,
                    rounds,
                    not args.no_spin,
                )
        except Unavailable as exc:
            print(f"== galera: skipped: {exc}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
