"""The JobAgent: start-to-payload latency and the cost of monitoring, one run.

    python bench/bench_agent.py [--scale 1.0] [--json]

1. Start to payload: a real jcentral (a fresh `jalien-bin setup` home in a temporary folder)
   holds N waiting jobs; for each, `jalien-bin --role jobagent` is started as a VoBox starts
   it (environment only, jobagent token as PEM text) and the payload writes the time it
   began. Reported: median and max seconds from the agent's spawn to the payload's first
   instruction. Baseline, same run: spawn to exit of `jalien-bin --version` (the cost of
   starting the program at all), so the ratio is what matching, the job token connection,
   the sandbox and the local socket add.
2. Monitoring: a payload of 100 processes (a shell and 99 sleeps); CPU seconds of one
   ``Sampler.sample`` (one process_iter pass, CPU times and PSS of each member, the
   sandbox's disk use), median of M samples; then the share of one core at one sample per
   30 s (target < 0.1 %). Baseline: the same sample reading RSS only (no smaps_rollup).
Figures are reported, never asserted. CI runs ``--scale 0.001`` (one job, a few samples).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jalien.agent.monitor import Sampler  # noqa: E402
from jalien.agent.payload import Payload  # noqa: E402
from jalien.agent.sandbox import Sandbox  # noqa: E402
from jalien.auth.tls import client_context  # noqa: E402
from jalien.net.client import Client  # noqa: E402
from tests.integration.conftest import (  # noqa: E402
    free_port,
    jalien_bin,
    run_setup,
    start_central,
    stop,
)

INTERVAL = 30.0  # the production sampling interval the overhead is quoted for
TARGET_PERCENT = 0.1


async def _central_calls(home: Path, globus: Path, port: int, jobs: int, stamp: Path):
    ctx = client_context(globus / "usercert.pem", globus / "userkey.pem", home / "certificates")
    user = Client("127.0.0.1", port, ctx, reconnect=False)
    await user.connect()
    token = await user.call("token", "-t", "jobagent", "-hours", "2")
    ids = []
    for i in range(jobs):
        command = f"date +%s.%N > {stamp}.{i}"
        jdl = f'Executable = "/bin/sh"; Arguments = "-c \\"{command}\\""; TTL = 600;'
        reply = await user.call("submit", "=<", jdl)
        ids.append(int(reply.results[0]["jobId"]))
    await user.close()
    return token.results[0]["tokencert"], token.results[0]["tokenkey"], ids


def start_to_payload(tmp: Path, jobs: int) -> dict[str, float]:
    home, globus = tmp / "home", tmp / "globus"
    done = run_setup(home, globus)
    if done.returncode:
        raise SystemExit(f"setup failed: {done.stderr}")
    port = free_port()
    central = start_central(home, tmp / "jcentral.log", free_port(), port)
    try:
        stamp = tmp / "payload-start"
        cert, key, _ = asyncio.run(_central_calls(home, globus, port, jobs, stamp))
        work = tmp / "work"
        work.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JALIEN_", "X509_"))}
        env.update(
            JALIEN_HOST="127.0.0.1",
            JALIEN_PORT=str(port),
            X509_CERT_DIR=str(home / "certificates"),
            JALIEN_TOKEN_CERT=cert,
            JALIEN_TOKEN_KEY=key,
            JALIEN_CE="ALICE::BENCH::CE",
            JALIEN_WORKDIR=str(work),
            TMPDIR=str(work),
            JALIEN_JOBAGENT_MAX_JOBS="1",
            JALIEN_MONITOR_INTERVAL="0.2",
            JALIEN_STATE_DIR=str(tmp / "agent-state"),
        )
        latencies = []
        for i in range(jobs):
            t0 = time.time()
            agent = subprocess.run(
                [*jalien_bin(), "--role", "jobagent"], env=env, capture_output=True, timeout=120
            )
            if agent.returncode:
                raise SystemExit(f"jobagent failed: {agent.stderr.decode()[-2000:]}")
            latencies.append(float(Path(f"{stamp}.{i}").read_text()) - t0)
        versions = []
        for _ in range(max(1, jobs)):
            t0 = time.time()
            subprocess.run([*jalien_bin(), "--version"], capture_output=True, check=True)
            versions.append(time.time() - t0)
    finally:
        stop(central)
    return {
        "start_to_payload_median_s": statistics.median(latencies),
        "start_to_payload_max_s": max(latencies),
        "version_median_s": statistics.median(versions),
    }


async def monitoring(tmp: Path, samples: int, processes: int = 100) -> dict[str, float]:
    box = Sandbox(tmp, 1).create()
    script = f"for i in $(seq {processes - 1}); do sleep 600 & done; wait"
    payload = await Payload.start(["/bin/sh", "-c", script], box, {"PATH": os.environ["PATH"]})
    try:
        sampler = Sampler(payload.pid, time.monotonic(), box.disk_usage)
        deadline = time.monotonic() + 30
        while sampler.sample().processes < processes and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        seen = sampler.sample().processes

        def cost(s: Sampler) -> float:
            times = []
            for _ in range(samples):
                c0 = time.process_time()
                s.sample()
                times.append(time.process_time() - c0)
            return statistics.median(times)

        with_pss = cost(sampler)
        rss_only = Sampler(payload.pid, time.monotonic(), box.disk_usage)
        rss_only._pss = False
        without = cost(rss_only)
    finally:
        os.killpg(payload.pgid, 9)
        await payload.wait()
        await box.cleanup()
    return {
        "processes": seen,
        "cpu_s_per_sample": with_pss,
        "cpu_s_per_sample_rss_only": without,
        "core_percent_at_30s": 100 * with_pss / INTERVAL,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    jobs = max(1, int(5 * args.scale))
    samples = max(3, int(50 * args.scale))
    tmp = Path(tempfile.mkdtemp(prefix="bench-agent-"))
    try:
        start = start_to_payload(tmp / "grid", jobs)
        mon = asyncio.run(monitoring(tmp / "mon", samples))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {**start, **mon, "jobs": jobs, "samples": samples}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    ratio = start["start_to_payload_median_s"] / start["version_median_s"]
    print(
        f"agent start -> payload start: median {start['start_to_payload_median_s']:.3f} s, "
        f"max {start['start_to_payload_max_s']:.3f} s over {jobs} job(s); "
        f"`jalien-bin --version` {start['version_median_s']:.3f} s (x{ratio:.1f})"
    )
    verdict = "meets" if mon["core_percent_at_30s"] < TARGET_PERCENT else "MISSES"
    print(
        f"monitoring {mon['processes']:.0f} processes: {mon['cpu_s_per_sample'] * 1000:.2f} ms "
        f"CPU per sample (RSS only: {mon['cpu_s_per_sample_rss_only'] * 1000:.2f} ms, "
        f"x{mon['cpu_s_per_sample'] / max(mon['cpu_s_per_sample_rss_only'], 1e-9):.1f}); "
        f"{mon['core_percent_at_30s']:.4f} % of a core at one sample per 30 s "
        f"({verdict} the < {TARGET_PERCENT} % target), median of {samples}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
