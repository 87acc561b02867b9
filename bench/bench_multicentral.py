"""Several jcentrals on one MariaDB (issue 21): aggregate requests/s and matches/s with 1, 2
and 3 centrals, as ratios, and the cost of the catalogue's coherence traffic.

    python bench/bench_multicentral.py [--scale 1.0] [--centrals 3]

Three `jalien-bin --role jcentral` processes start as three hosts on this machine (homes
copied from one `jalien-bin setup`, each with its own LMDB cache; tests/integration/
multicentral.py's Grid), sharing the catalogue and the task queue in scratch databases of
the MariaDB at 127.0.0.1:3306 (JALIEN_BENCH_MARIADB=host:port elsewhere), the task queue
prefilled with waiting jobs before they start. A load generator in another process
(jalien's own client, mutual TLS, the binary channel) spreads its connections round-robin
over the first N centrals and keeps requests in flight for a window:

- ``ls -l`` of a directory of 10 files (a catalogue read from MariaDB; ls is not cached);
- ``getMatchJob`` with a jobagent token (each match claims a job in the task queue and
  signs a job token; every central's broker holds the same waiting jobs, so two centrals
  race for the same ones and the claims decide);
- ``touch`` of new files on central 0 while the other centrals follow the change log
  (their CPU is the coherence traffic's cost on the reading side), and the same writes
  with the change log off (peer_poll_interval = 0: the writing side's cost).

Each figure is the median of rounds (scenarios take turns round by round), with the range
of the ratio over the rounds; server CPU is the sum over the centrals used (every thread,
from /proc). Nothing is pinned. This machine has 2 cores shared with MariaDB and the load
generator: the ratios say whether anything serializes needlessly, not how far N hosts scale.
``--scale`` scales the windows and the prefill (CI: ``--scale 0.001``).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench_jobs import MATCH_WORDS, job_texts  # noqa: E402 - bench/
from loadlib import cpu_seconds  # noqa: E402 - bench/

MARIADB = os.environ.get("JALIEN_BENCH_MARIADB", "127.0.0.1:3306")
HOME = "/alice/cern.ch/user/j/jdoe"
SMALL = f"{HOME}/bench-small"
CONNECTIONS = 12
USERS = 40  # the waiting jobs' owners
DEPTH = 4


# -- the load generator (another process)
def loadgen_main(conn: Any) -> None:
    import uvloop

    while True:
        job = conn.recv()
        if job is None:
            return
        try:
            conn.send(uvloop.run(_drive(job)))
        except Exception as exc:  # reported, the bench goes on
            conn.send({"error": f"{type(exc).__name__}: {exc}"})


async def _drive(job: dict[str, Any]) -> dict[str, Any]:
    from jalien.auth.tls import client_context, context_from_pem
    from jalien.net.client import Client

    if job.get("token"):
        context = context_from_pem("client", *(p.encode() for p in job["token"]), job["ca"])
    else:
        context = client_context(job["cert"], job["key"], job["ca"])
    ports = job["ports"]
    clients = [
        Client("127.0.0.1", ports[i % len(ports)], context, reconnect=False)
        for i in range(job["connections"])
    ]
    for client in clients:
        await client.connect()
    counter = [0, 0]  # answered, failed
    first_failure: list[str] = []
    stop_at = 0.0
    serial = [0]

    async def loop(client: Any) -> None:
        while time.perf_counter() < stop_at:
            args = list(job["args"])
            if job["command"] == "touch":
                serial[0] += 1
                args = [f"{job['args'][0]}/w{job['tag']}-{serial[0]}"]
            reply = await client.call(job["command"], *args)
            ok = reply.exitcode == 0 and (job["command"] != "getMatchJob" or _matched(reply))
            counter[0 if ok else 1] += 1
            if not ok and not first_failure:
                first_failure.append(f"{reply.exitcode} {reply.error} {reply.results[:1]}"[:200])

    try:
        stop_at = time.perf_counter() + job["warmup"]
        await asyncio.gather(*(loop(c) for c in clients for _ in range(job["depth"])))
        counter[:] = [0, 0]
        cpu0 = [cpu_seconds(pid) for pid in job["pids"]]
        idle0 = [cpu_seconds(pid) for pid in job["watch"]]
        db0 = cpu_seconds(job["db"]) if job["db"] else 0.0
        own0 = time.process_time()
        t0 = time.perf_counter()
        stop_at = t0 + job["window"]
        await asyncio.gather(*(loop(c) for c in clients for _ in range(job["depth"])))
        wall = time.perf_counter() - t0
        cpu = sum(cpu_seconds(pid) for pid in job["pids"]) - sum(cpu0)
        watched = sum(cpu_seconds(pid) for pid in job["watch"]) - sum(idle0)
        gen = time.process_time() - own0
        db = cpu_seconds(job["db"]) - db0 if job["db"] else 0.0
    finally:
        for client in clients:
            await client.close()
    return {"count": counter[0], "failed": counter[1], "wall": wall, "cpu": cpu,
            "watched": watched, "failure": first_failure[0] if first_failure else "",
            "gen": gen, "db": db}  # fmt: skip


def _matched(reply: Any) -> bool:
    record = reply.results[0] if reply.results else {}
    return bool(record.get("queueId"))


# -- the grid
def mariadb_pid() -> int:
    """The MariaDB server's process (its CPU is reported beside the centrals'), 0: unknown."""
    import psutil

    port = int(MARIADB.rpartition(":")[2] or 3306)
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            return int(conn.pid)
    return 0


DB_PID = 0


def mariadb_problem() -> str:
    try:
        from jalien.sqlstore.mysql import connect, parse_dsn

        connect(parse_dsn(f"mysql://root:@{MARIADB}/mysql")).close()
    except Exception as exc:
        return f"MariaDB at {MARIADB}: {exc}"
    return ""


async def prefill(dsn: str, n_jobs: int) -> None:
    from jalien.jobs.mariadb_store import MariaDBTaskQueue
    from jalien.jobs.queue import NewJob

    store = MariaDBTaskQueue(dsn)
    await store.start()
    texts = job_texts()
    try:
        for first in range(0, n_jobs, 2000):
            batch = []
            for i in range(first, min(first + 2000, n_jobs)):
                jdl, text = texts[i % len(texts)]
                # many users: one user's maxParallelJobs (10,000) would end the matching
                batch.append(NewJob(user=f"bench{i % USERS:02d}", jdl=text,
                                    requirements=jdl.requirements,
                                    packages=",".join(jdl.packages), ttl=jdl.ttl))  # fmt: skip
            await store.insert(batch)
    finally:
        await store.close()


async def prepare(grid: Any) -> tuple[str, str]:
    """The small directory, and a jobagent token (cert, key PEM)."""
    user = grid.user(0)
    await user.connect()
    try:
        for command in (["mkdir", "-p", SMALL], ["mkdir", "-p", f"{HOME}/bench-writes"]):
            reply = await user.call(*command)
            if reply.exitcode:
                raise SystemExit(f"{command}: {reply.error}")
        for i in range(10):
            await user.call("touch", f"{SMALL}/f{i}.root")
        reply = await user.call("token", "-t", "jobagent", "-hours", "2")
        if reply.exitcode:
            raise SystemExit(f"token -t jobagent: {reply.error}")
        return reply.results[0]["tokencert"], reply.results[0]["tokenkey"]
    finally:
        await user.close()


class Scenario:
    def __init__(self, name: str, n: int, command: str, args: list[str]) -> None:
        self.name, self.n, self.command, self.args = name, n, command, args
        self.rounds: list[dict[str, Any]] = []

    def rate(self, r: dict[str, Any]) -> float:
        return r["count"] / r["wall"] if r.get("wall") and "error" not in r else 0.0

    @property
    def median(self) -> float:
        rates = [self.rate(r) for r in self.rounds]
        return statistics.median(rates) if rates else 0.0

    def cpu(self) -> float:
        loads = [r["cpu"] / r["wall"] for r in self.rounds if r.get("wall")]
        return statistics.median(loads) if loads else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--centrals", type=int, default=3, choices=(2, 3))
    args = parser.parse_args()
    problem = mariadb_problem()
    if problem:
        print(f"bench_multicentral: skipped, {problem}")
        return 0
    global DB_PID
    DB_PID = mariadb_pid()
    from jalien.sqlstore.mysql import connect, parse_dsn
    from tests.integration.multicentral import Grid

    window = max(0.3, 2.0 * args.scale)
    rounds = 3 if args.scale >= 0.1 else 1
    n_jobs = max(3_000, int(60_000 * args.scale))
    tag = os.getpid()
    names = (f"jalien_bench_mc_{tag}_cat", f"jalien_bench_mc_{tag}_tq")
    admin = connect(parse_dsn(f"mysql://root:@{MARIADB}/mysql"))
    for name in names:
        admin.cursor().execute(f"CREATE DATABASE {name}")
    dsns = tuple(f"mysql://root:@{MARIADB}/{name}" for name in names)
    ctx = multiprocessing.get_context("spawn")
    gen_parent, gen_child = ctx.Pipe()
    gen = ctx.Process(target=loadgen_main, args=(gen_child,), daemon=True)
    quiet = {
        "JALIEN_LOG_LEVEL": "WARNING",
        "JALIEN_WORKERS": "1",
        "JALIEN_PEER_POLL_INTERVAL": "0.5",
        "JALIEN_JOB_HEARTBEAT_TIMEOUT": "3600",  # matched jobs stay as they are
    }
    try:
        with tempfile.TemporaryDirectory(prefix="bench_multicentral_") as tmp:
            asyncio.run(prefill(dsns[1], n_jobs))
            grid = Grid(Path(tmp), args.centrals, lambda i: dsns, se=None, env=quiet)
            grid.start()
            gen.start()
            try:
                token = asyncio.run(prepare(grid))
                print(
                    f"== {args.centrals} jcentrals on one MariaDB ({MARIADB}), {n_jobs:,} "
                    f"waiting jobs, load from another process over TLS (binary channel): "
                    f"{CONNECTIONS} connections x {DEPTH} in flight spread over the centrals "
                    f"used; median of {rounds} x {window:.1f} s windows; "
                    f"{len(os.sched_getaffinity(0))} cores; load averages "
                    f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}",
                    flush=True,
                )
                run(grid, gen_parent, token, args.centrals, rounds, window)
                coherence(grid, gen_parent, rounds, window, quiet)
            finally:
                if gen.pid is not None:
                    gen_parent.send(None)
                grid.close()
    finally:
        if gen.pid is not None:
            gen.join(10)
            if gen.is_alive():
                gen.kill()
        for name in names:
            admin.cursor().execute(f"DROP DATABASE IF EXISTS {name}")
        admin.close()
    return 0


def _job(grid: Any, s: Scenario, window: float, token: tuple[str, str] | None, **kw: Any):
    centrals = grid.centrals[: s.n]
    return {
        "ports": [c.binary for c in centrals],
        "pids": [c.proc.pid for c in centrals],
        "watch": kw.pop("watch", []),
        "command": s.command,
        "args": s.args,
        "connections": kw.pop("connections", CONNECTIONS),
        "depth": DEPTH,
        "window": window,
        "warmup": min(0.5, window / 3),
        "token": token,
        "cert": str(grid.globus / "usercert.pem"),
        "key": str(grid.globus / "userkey.pem"),
        "ca": str(grid.centrals[0].home / "certificates"),
        "tag": kw.pop("tag", 0),
        "db": DB_PID,
    }


def _ask(gen: Any, job: dict[str, Any]) -> dict[str, Any]:
    gen.send(job)
    if not gen.poll(job["window"] + 120):
        raise RuntimeError("the load generator does not answer")
    return gen.recv()


def run(grid: Any, gen: Any, token: tuple[str, str], most: int, rounds: int, window: float):
    found = []
    for n in range(1, most + 1):
        found.append(Scenario(f"ls -l x{n}", n, "ls", ["-l", SMALL]))
        found.append(Scenario(f"getMatchJob x{n}", n, "getMatchJob", MATCH_WORDS))
    for round_ in range(rounds):
        for s in found:
            agent = token if s.command == "getMatchJob" else None
            s.rounds.append(_ask(gen, _job(grid, s, window, agent)))
        print(f"  round {round_ + 1}/{rounds} done", file=sys.stderr, flush=True)
    print(f"{'scenario':18s} {'req/s':>8s} {'srv CPU':>8s} {'per core':>9s} {'db CPU':>7s} "
          f"{'gen CPU':>7s} {'vs x1':>6s} {'range':>11s} {'failed':>6s}")  # fmt: skip
    base = {s.command: s for s in found if s.n == 1}
    for s in found:
        b = base[s.command]
        pairs = [s.rate(a) / b.rate(c) for a, c in zip(s.rounds, b.rounds, strict=False)
                 if s.rate(a) and b.rate(c)]  # fmt: skip
        ratio = f"{s.median / b.median:.2f}x" if b.median else "-"
        spread = f"{min(pairs):.2f}-{max(pairs):.2f}x" if pairs and s.n > 1 else ""
        cpu = s.cpu()
        per_core = s.median / cpu if cpu else 0.0
        failed = sum(r.get("failed", 0) for r in s.rounds)
        errors = [r["error"] for r in s.rounds if "error" in r]
        errors += [r["failure"] for r in s.rounds if r.get("failure")]
        db = statistics.median(r.get("db", 0) / r["wall"] for r in s.rounds if r.get("wall"))
        gen = statistics.median(r.get("gen", 0) / r["wall"] for r in s.rounds if r.get("wall"))
        print(f"{s.name:18s} {s.median:8,.0f} {cpu:8.2f} {per_core:9,.0f} {db:7.2f} {gen:7.2f} "
              f"{ratio:>6s} {spread:>11s} {failed:6d}  {errors[0] if errors else ''}")  # fmt: skip
    print(
        "srv CPU: the centrals used, in cores; db CPU: the MariaDB server's; gen CPU: the "
        "load generator's (one process)"
    )


def coherence(grid: Any, gen: Any, rounds: int, window: float, env: dict[str, str]) -> None:
    """touch on central 0 while the others follow the change log, then with it off."""
    writes = f"{HOME}/bench-writes"
    others = [c.proc.pid for c in grid.centrals[1:]]
    on = Scenario("touch, change log on", 1, "touch", [writes])
    idle = []
    for round_ in range(rounds):
        before, t0 = sum(cpu_seconds(p) for p in others), time.perf_counter()
        time.sleep(window)
        idle.append((sum(cpu_seconds(p) for p in others) - before) / (time.perf_counter() - t0))
        on.rounds.append(_ask(gen, _job(grid, on, window, None, watch=others, tag=round_,
                                        connections=4)))  # fmt: skip
    # the writing side: the same writes with no change log (and no followers); the other
    # centrals run as before (idle), so that the machine is shared alike
    for central in grid.centrals:
        central.stop()
    for central in grid.centrals:
        central.env["JALIEN_PEER_POLL_INTERVAL"] = "0"
        central.start()
    off = Scenario("touch, change log off", 1, "touch", [writes])
    for round_ in range(rounds):
        off.rounds.append(_ask(gen, _job(grid, off, window, None, tag=100 + round_,
                                         connections=4)))  # fmt: skip
    for s in (on, off):
        for r in s.rounds:
            if "error" in r:
                print(f"{s.name}: {r['error']}")
    follow = [r["watched"] / r["wall"] for r in on.rounds if r.get("wall")]
    per_write = [r["watched"] / r["count"] * 1e6 for r in on.rounds if r.get("count")]
    print(
        f"\ncoherence: {on.median:,.0f} touch/s with the change log and {len(others)} followers "
        f"vs {off.median:,.0f} without ({on.median / off.median if off.median else 0:.2f}x; "
        f"writer CPU {on.cpu():.2f} vs {off.cpu():.2f} cores);\n"
        f"the followers' CPU while central 0 writes: {statistics.median(follow):.3f} cores "
        f"together ({statistics.median(per_write):,.0f} us per write for all of them), "
        f"idle: {statistics.median(idle):.4f} cores (two polls/s each)"
    )


if __name__ == "__main__":
    sys.exit(main())
