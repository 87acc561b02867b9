"""What counting requests for the metrics costs on the request path (issue 20: <= 3% on the
WebSocket and binary benches), on real jcentral processes over mutual TLS.

    python bench/bench_metrics.py [--scale 1.0] [--no-spin]

Two jcentrals from copies of one grid home: one as shipped (every request counted by
command into the latency histogram, ``jalien._fast.reqstats``), one with
``JALIEN_METRICS_REQUESTS=0``, the baseline of the same run. bench_requests' load generator
(another process, pinned to the other core) drives both in turns, round by round; the
figure is requests per second of the server's CPU, the median of rounds. Reported, never
asserted; ``--scale 0.001`` is CI's smoke run.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sys
import tempfile
from pathlib import Path

import bench_net  # bench/
from bench_requests import SMALL, Central, Scenario, make_grid, run_load


def scenarios() -> list[Scenario]:
    out: list[Scenario] = []
    for counted in (True, False):
        tag = "counted" if counted else "uncounted"
        rows = [
            Scenario(f"ws pwd 8x16 {tag}", "ws", 16, "pwd", []),
            Scenario(f"ws ls small 8x1 {tag}", "ws", 1, "ls", ["-l", SMALL]),
            Scenario(f"bin ping 8x64 {tag}", "binary", 64, "ping", []),
            Scenario(f"bin ls small 8x1 {tag}", "binary", 1, "ls", ["-l", SMALL]),
        ]
        for s in rows:
            s.central = tag  # type: ignore[attr-defined]  # run_load's key: which jcentral
            if counted:
                s.baseline = s.name.replace("counted", "uncounted")
        out += rows
    return out


def start(name: str, home: Path, count: bool) -> Central:
    os.environ["JALIEN_METRICS_REQUESTS"] = "1" if count else "0"
    try:
        return Central(name, home, reads="kept")
    finally:
        del os.environ["JALIEN_METRICS_REQUESTS"]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--no-spin", action="store_true")
    args = parser.parse_args()
    duration = max(0.2, 3.0 * args.scale)
    rounds = max(1, min(5, int(duration / 0.6)))
    window = duration / rounds
    timing = {"rounds": rounds, "window": window, "warmup": max(0.05, min(0.2, window / 4))}
    found = scenarios()
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="bench_metrics_") as tmp:
        home, globus = make_grid(Path(tmp), 1000)
        other = Path(tmp) / "home-uncounted"
        shutil.copytree(home, other, symlinks=True)
        centrals = {
            "counted": start("counted", home, True),
            "uncounted": start("uncounted", other, False),
        }
        tls = {
            "cert": str(globus / "usercert.pem"),
            "key": str(globus / "userkey.pem"),
            "ca_dir": str(home / "certificates"),
        }
        gen_parent, gen_child = ctx.Pipe()
        gen = ctx.Process(target=bench_net.loadgen_main, args=(gen_child,), daemon=True)
        try:
            lifetime = 60 + rounds * len(found) * (window + 15)
            with bench_net.spinning(not args.no_spin, lifetime) as spin_pids:
                gen.start()
                if not gen_parent.poll(60):
                    raise RuntimeError("load generator did not start")
                _ready, gen_where, clock = gen_parent.recv()
                print(
                    f"== metrics on the request path: real jcentral over TLS, "
                    f"{bench_net.CONNECTIONS} connections, median of {rounds} x {window:.2f} s "
                    f"windows; load generator on {gen_where}; CPU clock {clock}; "
                    "baseline: JALIEN_METRICS_REQUESTS=0 (goal: counted >= 0.97 x baseline)"
                )
                run_load(gen_parent, centrals, tls, timing, spin_pids, found)
                gen_parent.send(None)
            bench_net.report(found)
        finally:
            for central in centrals.values():
                central.stop()
            gen.join(10)
            if gen.is_alive():
                gen.kill()


if __name__ == "__main__":
    sys.exit(main())
