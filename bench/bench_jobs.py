"""Task queue and broker benchmarks, one run.

    python bench/bench_jobs.py [--scale 1.0]

With 100k waiting jobs: broker matches/s and p99 match time (targets >= 2,000/s per core,
p99 <= 50 ms), the same through the service (each match is also an ASSIGNED transition in
SQLite), a "pilot storm" of 150k agent requests compressed in time (most find nothing),
and the submit rate. The baseline beside each: a plain SQL query doing the same selection.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from jalien.jobs.broker import Agent, Broker
from jalien.jobs.jdl import parse_jdl, render_jdl
from jalien.jobs.service import JobService
from jalien.jobs.store import NewJob, TaskQueueStore


class Site:
    login = "vobox"
    roles = ("proxy",)
    token = ""
    job_id = ""


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98] if len(samples) >= 100 else max(samples)


async def main(scale: float) -> None:
    n_jobs = max(500, int(100_000 * scale))
    n_storm = max(500, int(150_000 * scale))
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as tmp:
        store = TaskQueueStore(Path(tmp) / "tq.db")
        await store.start()
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
        print(f"== task queue with {n_jobs:,} waiting jobs")
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

        # through the service: match + ASSIGNED transition in SQLite
        n_service = min(n_jobs - n_match, max(100, int(5_000 * scale)))
        service_times = []
        t0 = time.perf_counter()
        for _ in range(n_service):
            s = time.perf_counter()
            await jobs.match(Site(), agents[0], None)
            service_times.append(time.perf_counter() - s)
        t_service = time.perf_counter() - t0
        raw = sqlite3.connect(Path(tmp) / "tq.db")
        sql_times = []
        for _ in range(200):
            s = time.perf_counter()
            raw.execute(
                "SELECT id FROM jobs WHERE state='WAITING' AND ttl <= ? ORDER BY id LIMIT 1",
                (86400,),
            ).fetchone()
            sql_times.append(time.perf_counter() - s)
        print(
            f"  service match + ASSIGNED   {n_service / t_service:12,.0f} matches/s   p99 "
            f"{p99(service_times) * 1e3:7.3f} ms   (targets >= 2,000/s, p99 <= 50 ms)"
        )
        print(
            f"  baseline: one SQL select   {1 / statistics.mean(sql_times):12,.0f} /s       "
            f"p99 {p99(sql_times) * 1e3:7.3f} ms"
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
        raw.close()
        await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="size factor (CI: 0.001)")
    asyncio.run(main(parser.parse_args().scale))
