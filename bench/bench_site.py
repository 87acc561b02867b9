"""Jobs per second one VoBox pushes through the fork batch interface, one run.

    python bench/bench_site.py [--scale 1.0] [--slots 8] [--json]

A real jcentral (a fresh `jalien-bin setup` home in a temporary folder) and a real VoBox
(`--role vobox`, batch fork, `--slots` agents at most) on this host; N trivial jobs
(`/bin/true`) are submitted at once and the clock runs from the first submission to the last
job DONE: submission, matching, agent start, sandbox, payload, state reports, the output-less
save and cleanup, all real. Baseline, same run: the rate at which this host starts and ends
`jalien-bin --version` with the same parallelism (the cost of starting the program at all),
so the ratio says how much of a JobAgent's life is jalien's own work.
Figures are reported, never asserted. CI runs ``--scale 0.001`` (a few jobs).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jalien.auth.tls import client_context  # noqa: E402
from jalien.net.client import Client  # noqa: E402
from tests.integration.conftest import (  # noqa: E402
    free_port,
    jalien_bin,
    run_setup,
    start_central,
    stop,
)

JDL = 'Executable = "/bin/true"; TTL = 60;'
FINAL = {"DONE", "ERROR_E", "ERROR_IB", "ERROR_S", "EXPIRED", "KILLED", "FAILED"}


def start_rate(slots: int, count: int) -> float:
    """Processes/s of `jalien-bin --version`, *slots* at a time."""
    command = [*jalien_bin(), "--version"]

    def one(_: int) -> None:
        subprocess.run(command, capture_output=True, check=True)

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(slots) as pool:
        list(pool.map(one, range(count)))
    return count / (time.perf_counter() - start)


async def _run_jobs(home: Path, globus: Path, port: int, jobs: int, vobox, log: Path):
    ctx = client_context(globus / "usercert.pem", globus / "userkey.pem", home / "certificates")
    user = Client("127.0.0.1", port, ctx, reconnect=False)
    await user.connect()
    start = time.perf_counter()
    for _ in range(jobs):
        reply = await user.call("submit", "=<", JDL)
        if reply.exitcode:
            raise SystemExit(f"submit failed: {reply.error}")
    submitted = time.perf_counter() - start
    deadline = time.monotonic() + 120 + jobs
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        top = (await user.call("top")).results[0]
        counts = {k: int(v) for k, v in top.items() if k.isupper() and v.isdigit()}
        if sum(n for state, n in counts.items() if state in FINAL) >= jobs:
            break
        if vobox.poll() is not None:
            raise SystemExit(f"the VoBox exited:\n{log.read_text()[-3000:]}")
        await asyncio.sleep(0.05)
    else:
        raise SystemExit(f"jobs did not finish: {counts}\n{log.read_text()[-3000:]}")
    elapsed = time.perf_counter() - start
    await user.close()
    return elapsed, submitted, counts


def _end_agents(tmp: Path) -> None:
    """Fork agents outlive their VoBox (as batch jobs do): end the ones of this run."""
    import psutil

    for proc in psutil.process_iter(["environ"]):
        try:
            if str(tmp) in (proc.info["environ"] or {}).get("JALIEN_WORKDIR", ""):
                proc.kill()
        except psutil.Error:
            continue


def vobox_throughput(tmp: Path, jobs: int, slots: int) -> dict[str, float]:
    home, globus = tmp / "home", tmp / "globus"
    done = run_setup(home, globus)
    if done.returncode:
        raise SystemExit(f"setup failed: {done.stderr}")
    port = free_port()
    central = start_central(home, tmp / "jcentral.log", free_port(), port)
    (tmp / "wn").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JALIEN_", "X509_"))}
    env.update(
        PYTHONUNBUFFERED="1",
        TMPDIR=str(tmp),
        JALIEN_VOBOX_DIR=str(tmp / "vobox"),
        JALIEN_BATCH="fork",
        JALIEN_SUBMIT_INTERVAL="0.2",
        JALIEN_MAX_RUNNING_AGENTS=str(slots),
        JALIEN_MAX_QUEUED_AGENTS=str(slots),
        JALIEN_JOBAGENT_TTL="600",
        JALIEN_WORKDIR=str(tmp / "wn"),
        JALIEN_JOBAGENT_ENV="JALIEN_MONITOR_INTERVAL=1",
    )
    log = tmp / "vobox.log"
    with open(log, "wb") as out:
        where = ["--central", f"127.0.0.1:{port}", "--listen", "127.0.0.1"]
        vobox = subprocess.Popen(
            [*jalien_bin(), "--role", "vobox", "--home", str(home), *where],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + 60
        while "vobox ready" not in log.read_text(errors="replace"):
            if vobox.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the VoBox did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
        elapsed, submitted, counts = asyncio.run(_run_jobs(home, globus, port, jobs, vobox, log))
        agents = len(list((tmp / "vobox" / "agents").glob("*")))
    finally:
        stop(vobox)
        _end_agents(tmp)
        stop(central)
    return {
        "jobs_per_s": jobs / elapsed,
        "seconds": elapsed,
        "submit_seconds": submitted,
        "done": counts.get("DONE", 0),
        "agents": agents,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--slots", type=int, default=8, help="the VoBox's agents at most")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    jobs = max(2, int(200 * args.scale))
    tmp = Path(tempfile.mkdtemp(prefix="bench-site-"))
    try:
        site = vobox_throughput(tmp, jobs, args.slots)
        base = start_rate(args.slots, max(4, min(jobs, 100)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {**site, "version_starts_per_s": base, "jobs": jobs, "slots": args.slots}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"one VoBox on fork, {args.slots} slots: {jobs} jobs DONE in {site['seconds']:.1f} s = "
        f"{site['jobs_per_s']:.1f} jobs/s ({site['done']} DONE, {site['agents']} agents, "
        f"submission {site['submit_seconds']:.2f} s); `jalien-bin --version` starts "
        f"{base:.1f}/s with the same parallelism (jobs/s = {site['jobs_per_s'] / base:.2f}x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
