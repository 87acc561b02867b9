"""Task queue and broker benchmarks, one run, on SQLite and on MariaDB.

    python bench/bench_jobs.py [--scale 1.0] [--backend sqlite|mariadb|both]

With 100k waiting jobs: broker matches/s and p99 match time (targets >= 2,000/s per core,
p99 <= 50 ms), the same through the service (each match is also an ASSIGNED transition
committed in the task queue), a "pilot storm" of 150k agent requests compressed in time
(most find nothing), and the submit rates (batched inserts; one job per submit, 100 at a
time). The baseline beside each: a plain SQL query doing the same selection.

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
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from jalien.jobs.broker import Agent, Broker
from jalien.jobs.jdl import parse_jdl, render_jdl
from jalien.jobs.queue import NewJob, TaskQueue
from jalien.jobs.service import JobService
from jalien.jobs.store import TaskQueueStore

MARIADB = os.environ.get("JALIEN_BENCH_MARIADB", "127.0.0.1:3306")


class Site:
    login = "vobox"
    roles = ("proxy",)
    token = ""
    job_id = ""


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="size factor (CI: 0.001)")
    parser.add_argument(
        "--backend",
        choices=["sqlite", "mariadb", "both"],
        default=None,
        help="task queue store(s) (default: both when MariaDB answers, else sqlite)",
    )
    args = parser.parse_args()
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
