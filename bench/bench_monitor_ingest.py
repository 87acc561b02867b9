"""Central ingesting monitoring (issue 20's goal: 10,000 JobAgents reporting every 60 s
within 10% of a core), on a real jcentral over TLS.

    python bench/bench_monitor_ingest.py [--scale 1.0]

A client in this process (the grid's host certificate: a VoBox's identity, which may
report) sends ``monitor.report`` with typed AgentReports of 10,000 distinct simulated
agents (each with a job and its resource use), 64 in flight; jcentral's CPU time (its
/proc/<pid>/stat, every thread) is read before and after. The figure is the CPU one report
costs, and what 10,000 agents every 60 s cost as a share of one core; the median of rounds.
``--scale 0.001`` is CI's smoke run (a few hundred reports).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jalien.auth.tls import client_context  # noqa: E402
from jalien.net.client import Client  # noqa: E402
from jalien.wire import monitor_api  # noqa: E402
from jalien.wire.messages import Request  # noqa: E402
from jalien.wire.monitor_api import AgentReport, Usage  # noqa: E402
from tests.integration.conftest import free_port, run_setup, start_central, stop  # noqa: E402

AGENTS = 10_000
PERIOD = 60.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def round_(client: Client, pid: int, reports: int, offset: int) -> float:
    """CPU seconds of jcentral per report, for *reports* reports 64 at a time."""
    usage = Usage(cpu=12.5, rss=1 << 28, pss=1 << 27, disk=1 << 20, processes=3, wall=40.0)
    requests = []
    for i in range(reports):
        report = AgentReport(
            site="BENCH",
            ce=f"BENCH::CE{i % 50}",
            node=f"wn{(offset + i) % AGENTS:05d}",
            queue_id=1000 + i,
            ttl_left=3000,
            jobs_done=i % 7,
            usage=usage,
        )
        requests.append(Request(command="monitor.report", data=[monitor_api.encode(report)]))
    sem = asyncio.Semaphore(64)

    async def one(request: Request) -> None:
        async with sem:
            reply = await client.request(request, timeout=60)
            assert reply.exitcode == 0, reply.error

    before = cpu_seconds(pid)
    await asyncio.gather(*(one(r) for r in requests))
    await asyncio.sleep(0.2)  # the audit writer's batch is part of the cost
    return (cpu_seconds(pid) - before) / reports


async def measure(home: Path, port: int, pid: int, reports: int, rounds: int) -> list[float]:
    ca = home / "certificates"
    context = client_context(home / "host" / "hostcert.pem", home / "host" / "hostkey.pem", ca)
    client = Client("127.0.0.1", port, context, reconnect=False)
    await client.connect()
    try:
        await round_(client, pid, min(reports, 200), 0)  # warm-up
        return [await round_(client, pid, reports, r * reports) for r in range(rounds)]
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()
    reports = max(200, int(AGENTS * args.scale))
    rounds = 3 if args.scale >= 0.1 else 1
    with tempfile.TemporaryDirectory(prefix="bench_ingest_") as tmp:
        home, globus = Path(tmp) / "home", Path(tmp) / "globus"
        done = run_setup(home, globus)
        if done.returncode:
            raise SystemExit(done.stderr)
        binary = free_port()
        env = {"JALIEN_LOG_LEVEL": "WARNING", "JALIEN_CACHE_HTTP_PORT": "-1"}
        central = start_central(home, Path(tmp) / "jcentral.log", free_port(), binary, env)
        try:
            started = time.monotonic()
            per = asyncio.run(measure(home, binary, central.pid, reports, rounds))
            wall = time.monotonic() - started
        finally:
            stop(central)
            subprocess.run(["true"], check=False)
    median = statistics.median(per)
    share = median * AGENTS / PERIOD
    print(
        f"== monitoring ingest: {reports:,} AgentReports x {rounds} rounds over TLS "
        f"({wall:.1f} s); jcentral CPU per report {median * 1e6:.0f} us (median of rounds: "
        f"{', '.join(f'{p * 1e6:.0f}' for p in per)}); {AGENTS:,} agents every {PERIOD:.0f} s "
        f"= {share * 100:.2f}% of a core (goal <= 10%{', met' if share <= 0.10 else ''})"
    )


if __name__ == "__main__":
    main()
