"""Task queue and broker benchmarks, one run, on SQLite and on MariaDB; then the real match path.

    python bench/bench_jobs.py [--scale 1.0] [--backend sqlite|mariadb|both] [--part all|real]

With 100k waiting jobs: broker matches/s and p99 match time (targets >= 2,000/s per core,
p99 <= 50 ms), the same through the service (each match is also an ASSIGNED transition
committed in the task queue), a "pilot storm" of 150k agent requests compressed in time
(most find nothing), and the submit rates (batched inserts; one job per submit, 100 at a
time). The baseline beside each: a plain SQL query doing the same selection.

The real path (last): a `jalien-bin --role jcentral` process (a fresh `jalien-bin setup` home,
SQLite task queue holding 100k waiting jobs written into its database before it starts),
pinned to one core, serving over mutual TLS; a JobAgent-like client in this process, pinned to
the other core, holding a jobagent token, calls `getMatchJob` with a fixed number in flight.
Each match is the broker's choice, the ASSIGNED transition committed, the JDL and a job token
(key + certificate) in the reply. Figures, the median of several rounds: matches/s, matches/s
per server core (the server's CPU time, every thread, read from /proc), p50/p99 latency.
Baselines in the same run: the same jcentral with JAliEn's RSA-2048 token keys and an RSA
token CA (the path before EC keys), the same path answering without a job token (what the
token costs there), and the CPU of one token alone, each key type. SCHED_IDLE spinners keep
both cores awake as in bench_net (--no-spin: without). A busy machine (other processes on
the two cores) raises every CPU figure: the server's caches are shared with them.
Targets (issue 14): >= 2,000 matches/s per server core, p99 <= 50 ms.

The MariaDB run uses the server at 127.0.0.1:3306 (root, empty password; elsewhere with
JALIEN_BENCH_MARIADB=host:port) in a scratch database jalien_bench_<pid>, dropped at the
end. By default both run when that server answers; when it does not, one line says so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_net import spinning  # noqa: E402 - bench/
from loadlib import cpu_seconds, pin  # noqa: E402 - bench/

from jalien.jobs.broker import Agent, Broker  # noqa: E402
from jalien.jobs.jdl import parse_jdl, render_jdl  # noqa: E402
from jalien.jobs.queue import NewJob, TaskQueue  # noqa: E402
from jalien.jobs.service import JobService  # noqa: E402
from jalien.jobs.store import TaskQueueStore  # noqa: E402

MARIADB = os.environ.get("JALIEN_BENCH_MARIADB", "127.0.0.1:3306")


class Site:
    login = "vobox"
    roles = ("proxy",)
    token = ""
    job_id = ""
    serial = 0  # no certificate: the match is remembered for no JobAgent token


class User:
    login = "jdoe"
    roles = ("users",)


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98] if len(samples) >= 100 else max(samples)


# a baseline query: (SQL select of the first fitting WAITING job) -> seconds per call
Baseline = Callable[[], float]


@contextlib.contextmanager
def sqlite_queue() -> Iterator[tuple[TaskQueue, Baseline]]:
    with tempfile.TemporaryDirectory() as tmp:
        raw = sqlite3.connect(Path(tmp) / "tq.db")

        def select() -> float:
            s = time.perf_counter()
            raw.execute(
                "SELECT id FROM jobs WHERE state='WAITING' AND ttl <= ? ORDER BY id LIMIT 1",
                (86400,),
            ).fetchone()
            return time.perf_counter() - s

        try:
            yield TaskQueueStore(Path(tmp) / "tq.db"), select
        finally:
            raw.close()


def mariadb_problem() -> str:
    """Why the MariaDB run cannot happen, or ''."""
    try:
        from jalien.sqlstore.mysql import close_quietly, connect, parse_dsn
    except ImportError as exc:
        return f"the mysqlclient driver is missing ({exc})"
    try:
        close_quietly(connect(parse_dsn(f"mysql://root:@{MARIADB}/mysql")))
    except Exception as exc:
        return f"no MariaDB at {MARIADB} as root without a password ({exc})"
    return ""


@contextlib.contextmanager
def mariadb_queue() -> Iterator[tuple[TaskQueue, Baseline]]:
    from jalien.jobs.mariadb_store import MariaDBTaskQueue
    from jalien.sqlstore.mysql import close_quietly, connect, parse_dsn

    database = f"jalien_bench_{os.getpid()}"
    admin = connect(parse_dsn(f"mysql://root:@{MARIADB}/mysql"))
    admin.cursor().execute(f"CREATE DATABASE IF NOT EXISTS {database}")
    dsn = f"mysql://root:@{MARIADB}/{database}"
    raw = None
    try:
        store = MariaDBTaskQueue(dsn)

        def select() -> float:
            nonlocal raw
            raw = raw or connect(parse_dsn(dsn))
            cur = raw.cursor()
            s = time.perf_counter()
            cur.execute(
                "SELECT queueId FROM QUEUE WHERE state='WAITING' AND ttl <= %s "
                "ORDER BY queueId LIMIT 1",
                (86400,),
            )
            cur.fetchone()
            return time.perf_counter() - s

        yield store, select
    finally:
        close_quietly(raw)
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {database}")
        close_quietly(admin)


async def run(name: str, store: TaskQueue, baseline: Baseline, scale: float) -> None:
    n_jobs = max(500, int(100_000 * scale))
    n_storm = max(500, int(150_000 * scale))
    rng = random.Random(1)
    await store.start()
    try:
        jobs = JobService(store, Broker())
        shapes = [
            ("other.TTL > 3600", "VO_ALICE@O2::1", 7200),
            ('member(other.GridPartitions, "prod")', "VO_ALICE@O2::2", 3600),
            ("", "", 600),
        ]
        texts = []
        for req, pkg, ttl in shapes:
            jdl = parse_jdl(
                f'Executable = "x.sh"; TTL = {ttl}; Packages = {{"{pkg}"}}; '
                f"Requirements = {req or 'true'};"
            )
            texts.append((jdl, render_jdl(jdl)))
        new = []
        for i in range(n_jobs):
            jdl, text = texts[i % 3]
            new.append(
                NewJob(
                    user=f"user{i % 40}",
                    jdl=text,
                    requirements=jdl.requirements,
                    packages=",".join(jdl.packages),
                    ttl=jdl.ttl,
                )
            )
        t0 = time.perf_counter()
        for i in range(0, n_jobs, 2000):
            await store.insert(new[i : i + 2000])
        t_submit = time.perf_counter() - t0
        print(f"== task queue on {name} with {n_jobs:,} waiting jobs")
        print(f"  submit (batched inserts)   {n_jobs / t_submit:12,.0f} jobs/s")
        t0 = time.perf_counter()
        await jobs.start()
        print(
            f"  broker index built in      {(time.perf_counter() - t0) * 1e3:9.1f} ms, "
            f"{len(jobs.broker._buckets)} buckets"
        )

        agents = [
            Agent(
                site="CERN",
                ce="ALICE::CERN::CE",
                ttl=86400,
                cores=8,
                partitions=frozenset({"prod"}),
            ),
            Agent(site="FZK", ce="ALICE::FZK::CE", ttl=3000, cores=1),
            Agent(site="X", ce="ALICE::X::CE", ttl=100, cores=1),  # too short for any job
        ]
        # broker only: the in-memory decision
        n_match = min(n_jobs // 2, max(200, int(50_000 * scale)))
        broker_times = []
        t0 = time.perf_counter()
        for _ in range(n_match):
            s = time.perf_counter()
            jobs.broker.match(agents[rng.randrange(2)])
            broker_times.append(time.perf_counter() - s)
        t_broker = time.perf_counter() - t0
        print(
            f"  broker match               {n_match / t_broker:12,.0f} matches/s   p99 "
            f"{p99(broker_times) * 1e3:7.3f} ms"
        )

        # through the service: match + ASSIGNED transition committed in the task queue
        n_service = min((n_jobs - n_match) // 2, max(100, int(5_000 * scale)))
        service_times = []
        t0 = time.perf_counter()
        for _ in range(n_service):
            s = time.perf_counter()
            await jobs.match(Site(), agents[0], None)
            service_times.append(time.perf_counter() - s)
        t_service = time.perf_counter() - t0
        sql_times = [baseline() for _ in range(200)]
        print(
            f"  service match + ASSIGNED   {n_service / t_service:12,.0f} matches/s   p99 "
            f"{p99(service_times) * 1e3:7.3f} ms   (targets >= 2,000/s, p99 <= 50 ms)"
        )
        print(
            f"  baseline: one SQL select   {1 / statistics.mean(sql_times):12,.0f} /s       "
            f"p99 {p99(sql_times) * 1e3:7.3f} ms"
        )

        # the same with 100 agents asking at once (the writer commits them together)
        conc_times: list[float] = []

        async def timed_match() -> None:
            s = time.perf_counter()
            await jobs.match(Site(), agents[0], None)
            conc_times.append(time.perf_counter() - s)

        t0 = time.perf_counter()
        for i in range(0, n_service, 100):
            await asyncio.gather(*(timed_match() for _ in range(min(100, n_service - i))))
        t_conc = time.perf_counter() - t0
        print(
            f"  the same, 100 in flight    {n_service / t_conc:12,.0f} matches/s   p99 "
            f"{p99(conc_times) * 1e3:7.3f} ms"
        )

        # pilot storm: many agents asking at once, most of them for nothing
        async def pilot(i: int) -> bool:
            agent = agents[2] if i % 10 else agents[1]
            if jobs.count_waiting(agent) == 0:
                return False
            return await jobs.match(Site(), agent, None) is not None

        t0 = time.perf_counter()
        done = 0
        for i in range(0, n_storm, 1000):
            results = await asyncio.gather(*(pilot(j) for j in range(i, min(i + 1000, n_storm))))
            done += sum(results)
        t_storm = time.perf_counter() - t0
        print(
            f"  pilot storm: {n_storm:,} requests in {t_storm:6.2f} s = "
            f"{n_storm / t_storm:10,.0f} req/s, {done:,} got a job"
        )

        # submissions as users make them: one job per submit, 100 in flight
        n_submit = max(200, int(5_000 * scale))
        text = texts[0][1]
        t0 = time.perf_counter()
        for i in range(0, n_submit, 100):
            await asyncio.gather(
                *(jobs.submit(User(), text, []) for _ in range(min(100, n_submit - i)))
            )
        t_single = time.perf_counter() - t0
        print(
            f"  submit (1 job each, 100 in flight) {n_submit / t_single:6,.0f} jobs/s "
            f"({n_submit:,} jobs)"
        )
    finally:
        await store.close()


QUEUES: dict[str, Callable[[], Any]] = {"sqlite": sqlite_queue, "mariadb": mariadb_queue}


# -- the real path: a jcentral process over TLS, a JobAgent-like client in this process ----

SERVER_SLOT, LOAD_SLOT = 0, 1  # index into the allowed CPUs (loadlib.pin)
MATCH_WORDS = ["site=CERN", "ce=ALICE::CERN::CE", "ttl=86400", "cores=8", "partitions=prod"]
# jcentral as `python -m jalien`, changed for a baseline: "rsa" issues JAliEn's RSA-2048 token
# keys, "none" answers matches without a job token (what the token costs on this path)
PATCHED_SERVER = (
    "import runpy, sys\n"
    "from jalien.auth.tokens import TokenAuthority, TokenKeyType\n"
    "from jalien.jobs.service import JobService\n"
    "mode = sys.argv.pop(1)\n"
    "if mode == 'rsa':\n"
    "    TokenAuthority.key_type = TokenKeyType.RSA_2048\n"
    "if mode == 'none':\n"
    "    async def no_token(self, row):\n"
    "        return '', ''\n"
    "    JobService._token = no_token\n"
    "sys.argv[0] = 'jalien'\n"
    "runpy.run_module('jalien', run_name='__main__', alter_sys=True)\n"
)


def job_texts() -> list[tuple[Any, str]]:
    """Three job shapes (broker buckets), each matched by the agent of MATCH_WORDS."""
    texts = []
    for req, pkg, ttl in (
        ("other.TTL > 3600", "VO_ALICE@O2::1", 7200),
        ('member(other.GridPartitions, "prod")', "VO_ALICE@O2::2", 3600),
        ("", "VO_ALICE@O2::3", 600),
    ):
        jdl = parse_jdl(
            f'Executable = "/bin/true"; TTL = {ttl}; Packages = {{"{pkg}"}}; '
            f'Requirements = {req or "true"}; OutputFile = {{"stdout", "stderr"}};'
        )
        texts.append((jdl, render_jdl(jdl)))
    return texts


async def prefill(db: Path, n_jobs: int, user: str) -> float:
    """*n_jobs* waiting jobs written into the task queue database (batches of 2,000), before
    the server opens it; the seconds it took."""
    store = TaskQueueStore(db)
    await store.start()
    texts = job_texts()
    t0 = time.perf_counter()
    try:
        for first in range(0, n_jobs, 2000):
            batch = []
            for i in range(first, min(first + 2000, n_jobs)):
                jdl, text = texts[i % len(texts)]
                batch.append(
                    NewJob(
                        user=user,
                        jdl=text,
                        requirements=jdl.requirements,
                        packages=",".join(jdl.packages),
                        ttl=jdl.ttl,
                    )
                )
            await store.insert(batch)
    finally:
        await store.close()
    return time.perf_counter() - t0


def token_cost(n: int) -> dict[str, float]:
    """CPU microseconds of one job token (key, certificate, both PEMs), each key type."""
    import datetime as dt

    from cryptography.hazmat.primitives.serialization import Encoding

    from jalien.auth.certs import make_ca, new_ec_key
    from jalien.auth.tokens import (
        TOKEN_CA_NAME,
        TokenAuthority,
        TokenKeyType,
        TokenKind,
        TokenSubject,
        token_key_pem,
    )

    subject = TokenSubject(TokenKind.JOB, login="jdoe", extension="1")
    expiry = dt.datetime.now(dt.UTC) + dt.timedelta(hours=24)
    out = {}
    for name, ca_key, key_type, count in (
        ("EC key, EC CA", new_ec_key(), TokenKeyType.EC_P256, n),
        ("EC key, RSA CA", None, TokenKeyType.EC_P256, n),
        ("RSA-2048 key, RSA CA", None, TokenKeyType.RSA_2048, max(3, n // 100)),
    ):
        authority = TokenAuthority(*make_ca(TOKEN_CA_NAME, key=ca_key), key_type=key_type)
        costs = []
        for _ in range(count):
            t0 = time.process_time()
            cert, key = authority.issue(subject, expiry)
            cert.public_bytes(Encoding.PEM).decode(), token_key_pem(key).decode()
            costs.append(time.process_time() - t0)
        out[name] = statistics.median(costs) * 1e6
    return out


class RealGrid:
    """A jcentral process on a fresh home with *n_jobs* waiting jobs, pinned to one core."""

    def __init__(self, tmp: Path, n_jobs: int, *, tokens: str) -> None:
        self.tmp, self.n_jobs, self.tokens = tmp, n_jobs, tokens  # "ec", "rsa", "none"
        self.home, self.globus = tmp / "home", tmp / "globus"
        self.proc: Any = None
        self.port = 0
        self.prefill_s = 0.0
        self.start_s = 0.0

    def __enter__(self) -> RealGrid:
        from tests.integration.conftest import free_port, jalien_bin, run_setup

        if (
            self.tokens == "rsa"
        ):  # a token CA made before EC keys: kept by setup, loaded by jcentral
            from jalien.auth.certs import make_ca, write_pem_cert, write_pem_key
            from jalien.auth.tokens import TOKEN_CA_CERT, TOKEN_CA_KEY, TOKEN_CA_NAME

            cert, key = make_ca(TOKEN_CA_NAME)
            (self.home / "ca").mkdir(parents=True)
            write_pem_key(self.home / "ca" / TOKEN_CA_KEY, key)
            write_pem_cert(self.home / "ca" / TOKEN_CA_CERT, cert)
        done = run_setup(self.home, self.globus)
        if done.returncode:
            raise SystemExit(f"jalien-bin setup failed: {done.stderr}")
        self.prefill_s = asyncio.run(prefill(self.home / "taskqueue.db", self.n_jobs, "jdoe"))
        self.port = free_port()
        patched = [sys.executable, "-c", PATCHED_SERVER, self.tokens]
        command = jalien_bin() if self.tokens == "ec" else patched
        log = self.tmp / "jcentral.log"
        cpus = sorted(os.sched_getaffinity(0))
        core = {cpus[SERVER_SLOT]} if len(cpus) >= 2 else set(cpus)
        t0 = time.perf_counter()
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [*command, "--role", "jcentral", "--home", str(self.home), *self._ports()],
                stdout=out,
                stderr=subprocess.STDOUT,
                # one process (pinned to its core), as measured before --workers
                env={**os.environ, "PYTHONUNBUFFERED": "1", "JALIEN_WORKERS": "1"},
                preexec_fn=lambda: os.sched_setaffinity(0, core),
            )
        deadline = time.monotonic() + 600
        while "jcentral ready" not in log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise SystemExit(f"jcentral did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
        self.start_s = time.perf_counter() - t0
        return self

    def _ports(self) -> list[str]:
        from tests.integration.conftest import free_port

        return ["--ws-port", str(free_port()), "--binary-port", str(self.port)]

    def __exit__(self, *exc: object) -> None:
        from tests.integration.conftest import stop

        if self.proc is not None:
            stop(self.proc)


async def agent_client(grid: RealGrid) -> Any:
    """A client holding a jobagent token (asked by the user, an admin of the test grid), as a
    VoBox hands one to each JobAgent."""
    from jalien.auth.tls import client_context, context_from_pem
    from jalien.net.client import Client

    ca_dir = grid.home / "certificates"
    user_ctx = client_context(grid.globus / "usercert.pem", grid.globus / "userkey.pem", ca_dir)
    user = Client("127.0.0.1", grid.port, user_ctx, reconnect=False)
    await user.connect()
    reply = await user.call("token", "-t", "jobagent", "-hours", "2")
    await user.close()
    if reply.exitcode:
        raise SystemExit(f"token -t jobagent: {reply.error}")
    record = reply.results[0]
    pems = record["tokencert"].encode(), record["tokenkey"].encode()
    return lambda: Client("127.0.0.1", grid.port, context_from_pem("client", *pems, ca_dir))


async def match_rounds(
    grid: RealGrid, rounds: int, per_round: int, inflight: int, connections: int
) -> list[dict[str, float]]:
    """*rounds* windows of *per_round* getMatchJob calls, *inflight* at once over
    *connections* connections; per window: matches/s, per server core, p50, p99."""
    make = await agent_client(grid)
    clients = [make() for _ in range(connections)]
    for client in clients:
        await client.connect()
    kinds = {"ec": 0, "rsa": 0, "none": 0}

    async def one(client: Any, latencies: list[float]) -> None:
        t0 = time.perf_counter()
        reply = await client.call("getMatchJob", *MATCH_WORDS)
        latencies.append(time.perf_counter() - t0)
        record = reply.results[0] if reply.results else {}
        if reply.exitcode or not record.get("queueId"):
            raise SystemExit(f"getMatchJob gave no job: {reply.error or record}")
        key = record.get("tokenkey", "")
        kinds["rsa" if "RSA PRIVATE KEY" in key else "ec" if key else "none"] += 1

    async def worker(client: Any, count: int, latencies: list[float]) -> None:
        for _ in range(count):
            await one(client, latencies)

    try:
        for client in clients:  # warm: first requests (imports, caches) not measured
            await one(client, [])
        out = []
        for _ in range(rounds):
            latencies: list[float] = []
            shares = [per_round // inflight + (i < per_round % inflight) for i in range(inflight)]
            cpu0, t0 = cpu_seconds(grid.proc.pid), time.perf_counter()
            await asyncio.gather(
                *(worker(clients[i % connections], n, latencies) for i, n in enumerate(shares))
            )
            wall, cpu = time.perf_counter() - t0, cpu_seconds(grid.proc.pid) - cpu0
            out.append(
                {
                    "rate": per_round / wall,
                    "per_core": per_round / cpu,
                    "server_cpu": cpu / wall,
                    "p50": statistics.median(latencies) * 1e3,
                    "p99": p99(latencies) * 1e3,
                }
            )
    finally:
        for client in clients:
            await client.close()
    if kinds[grid.tokens] != sum(kinds.values()):
        raise SystemExit(f"job token keys: {kinds}, expected {grid.tokens} only")
    return out


def real_path(scale: float, inflight: int, rounds: int, spin: bool = True) -> None:
    n_jobs = max(500, int(100_000 * scale))
    per_round = max(50, int(4_000 * scale))
    rsa_per_round = max(5, int(100 * scale))
    print(f"== the real match path: jcentral process, TLS, {n_jobs:,} waiting jobs", flush=True)
    costs = token_cost(max(200, int(2_000 * scale)))
    print(
        "  one job token (key + certificate + PEM), CPU: "
        + ", ".join(f"{name} {us:,.0f} us" for name, us in costs.items())
    )
    where = pin(LOAD_SLOT)
    print(
        f"  server pinned to slot {SERVER_SLOT}, load generator {where}; "
        f"{inflight} getMatchJob in flight over {min(inflight, 4)} connections, "
        f"median of {rounds} rounds; idle spinners {'on' if spin else 'off'}"
    )
    header = (
        f"  {'':34}{'matches/s':>10} {'per core':>10} {'srv CPU':>8} {'p50 ms':>8} {'p99 ms':>8}"
    )
    print(header)
    medians = {}
    for name, tokens, count in (
        ("EC P-256 token keys, EC token CA", "ec", per_round),
        ("baseline: RSA-2048 keys, RSA CA", "rsa", rsa_per_round),
        ("the same path without a job token", "none", per_round),
    ):
        # SCHED_IDLE spinners keep both vCPUs from halting between replies (bench_net: a
        # loopback write that wakes a halted vCPU costs the writer ~100 us)
        with (
            tempfile.TemporaryDirectory() as tmp,
            RealGrid(Path(tmp), n_jobs, tokens=tokens) as grid,
            spinning(spin, 3600),
        ):
            results = asyncio.run(match_rounds(grid, rounds, count, inflight, min(inflight, 4)))
        med = {key: statistics.median(r[key] for r in results) for key in results[0]}
        medians[name] = med
        print(
            f"  {name:34}{med['rate']:10,.0f} {med['per_core']:10,.0f} "
            f"{med['server_cpu'] * 100:7.0f}% {med['p50']:8.2f} {med['p99']:8.2f}"
            f"   (prefill {grid.prefill_s:.1f} s, start {grid.start_s:.1f} s)",
            flush=True,
        )
    ec, base, _ = medians.values()
    print(
        f"  ratio EC / RSA-2048 per server core: {ec['per_core'] / base['per_core']:,.1f}x; "
        f"targets >= 2,000 matches/s per core ({ec['per_core']:,.0f}), "
        f"p99 <= 50 ms ({ec['p99']:.1f})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="size factor (CI: 0.001)")
    parser.add_argument(
        "--backend",
        choices=["sqlite", "mariadb", "both"],
        default=None,
        help="task queue store(s) (default: both when MariaDB answers, else sqlite)",
    )
    parser.add_argument(
        "--part",
        choices=["all", "real"],
        default="all",
        help="all: the in-process benches, then the real path; real: the real path only",
    )
    parser.add_argument("--inflight", type=int, default=16, help="real path: calls in flight")
    parser.add_argument("--rounds", type=int, default=5, help="real path: measured rounds")
    parser.add_argument(
        "--no-spin", action="store_true", help="real path: no SCHED_IDLE spinners (bench_net)"
    )
    args = parser.parse_args()
    if args.part == "real":
        real_path(args.scale, args.inflight, max(1, args.rounds), not args.no_spin)
        return 0
    kinds = ["sqlite", "mariadb"] if args.backend in (None, "both") else [args.backend]
    if "mariadb" in kinds:
        problem = mariadb_problem()
        if problem:
            print(f"== task queue on mariadb: skipped: {problem}", flush=True)
            if args.backend == "mariadb":
                return 1
            kinds.remove("mariadb")
    for kind in kinds:
        with QUEUES[kind]() as (store, baseline):
            asyncio.run(run(kind, store, baseline, args.scale))
    rounds = max(1, args.rounds if args.scale >= 0.01 else 2)
    real_path(args.scale, args.inflight, rounds, not args.no_spin)
    return 0


if __name__ == "__main__":
    sys.exit(main())
