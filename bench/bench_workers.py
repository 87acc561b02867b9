"""jcentral's worker processes (issue 21 item 0): requests/s with 1 and with N workers.

    python bench/bench_workers.py [--scale 1.0] [--workers 2] [--no-spin]

Two jcentrals start from copies of one grid home (`jalien-bin setup`, a small directory of
10 files): one with ``--workers 1`` (one process, the baseline of the same run) and one with
``--workers N`` (a supervisor and N processes sharing the ports by SO_REUSEPORT). The load
comes from another process over TLS (bench_net.py's load generator: WebSocket JSON, as
alien.py), 16 connections, several requests in flight on each; nothing is pinned, so that
the workers may use every core and the load generator takes its share of them as well
(on a 2-core machine it competes with the workers: the ratio is bounded by what it leaves).
The scenarios take turns round by round; each figure is the median round, and the ratio's
range over the rounds is printed beside it.

Scenarios: ``ls -l`` of the small directory (a catalogue read: the goal is >= 1.7x with 2
workers on 2 cores) and ``pwd`` (the request path alone). Server CPU is the sum over the
supervisor and its workers. Figures are reported, never asserted; ``--scale`` scales the
windows (CI runs ``--scale 0.001``).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import bench_net  # bench/
import psutil
from bench_requests import SMALL, bench_free_port, make_grid, start_jcentral

CONNECTIONS = 16
GOAL_LS = 1.7


class Central:
    """A jcentral with *workers* processes on a home of its own."""

    def __init__(self, home: Path, workers: int) -> None:
        self.workers = workers
        self.ws_port = bench_free_port()
        self.binary_port = bench_free_port()
        self.log = home.parent / f"jcentral-{workers}.log"
        env = {"JALIEN_WORKERS": str(workers), "JALIEN_CACHE_HTTP_PORT": "-1"}
        self.proc = start_jcentral(
            home, self.log, self.ws_port, self.binary_port, env, "jcentral", 120
        )

    def pids(self) -> list[int]:
        """The supervisor (or the single process) and its workers."""
        return [self.proc.pid, *(c.pid for c in psutil.Process(self.proc.pid).children())]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Scenario(bench_net.Scenario):
    def __init__(self, name: str, workers: int, depth: int, command: str, options: list[str]):
        super().__init__(name, "jcentral", "ws", depth, "json", tls=True)
        self.workers = workers
        self.command = command
        self.options = options


def scenarios(workers: int) -> list[Scenario]:
    out = []
    for label, depth, command, options in (
        ("ls -l small", 4, "ls", ["-l", SMALL]),
        ("pwd", 16, "pwd", []),
    ):
        for n in (1, workers):
            out.append(Scenario(f"{label} {n}w", n, depth, command, options))
    return out


def run_rounds(
    gen: Any, centrals: dict[int, Central], tls: dict[str, str], timing: dict[str, Any], found
) -> None:
    spin: list[int] = timing["spin_pids"]
    for round_ in range(timing["rounds"]):
        for s in found:
            central = centrals[s.workers]
            job = {
                "mode": "ws",
                "port": central.ws_port,
                "connections": CONNECTIONS,
                "depth": s.depth,
                "warmup": timing["warmup"],
                "duration": timing["window"],
                "tls": tls,
                "server_pid": central.proc.pid,
                "server_pids": central.pids(),
                "check": s.check,
                "command": s.command,
                "options": s.options,
                "spin_pids": spin,
                "timeout": timing["window"] + timing["warmup"] + 30,
            }
            gen.send(job)
            if not gen.poll(job["timeout"] + 10):
                raise RuntimeError(f"{s.name}: load generator does not answer")
            s.rounds.append(gen.recv())
        print(f"  round {round_ + 1}/{timing['rounds']} done", file=sys.stderr, flush=True)
    bench_net.settle(found)  # type: ignore[arg-type]


def _rate(r: dict[str, Any]) -> float:
    return r["count"] / r["wall"] if "error" not in r and r.get("wall") else 0.0


def report(found: list[Scenario], workers: int) -> None:
    print(
        f"{'scenario':16s} {'req/s':>8s} {'srv CPU':>8s} {'req/s/core':>10s} "
        f"{'gen CPU':>7s} {'other':>5s}  {'vs 1w':>6s} {'round by round':>26s}  goal"
    )
    by_name = {s.name: s for s in found}
    for s in found:
        if "error" in s.result or not s.result:
            print(f"{s.name:16s} error: {s.result.get('error', 'not run')}")
            continue
        ratio = rng = goal = ""
        if s.workers != 1:
            base = by_name[s.name.replace(f" {workers}w", " 1w")]
            if base.rate > 0:
                ratio = f"{s.rate / base.rate:.2f}x"
                pairs = [
                    _rate(a) / _rate(b)
                    for a, b in zip(s.rounds, base.rounds, strict=False)
                    if _rate(a) and _rate(b)
                ]
                if pairs:
                    rng = (
                        f"{min(pairs):.2f}-{max(pairs):.2f}x, "
                        f"median {statistics.median(pairs):.2f}x"
                    )
                if s.command == "ls":
                    met = base.rate and s.rate / base.rate >= GOAL_LS
                    goal = f">= {GOAL_LS}x: {'met' if met else 'NOT met'}"
        check = "" if s.result.get("check") == "ok" else f"  [{s.result.get('check')}]"
        print(
            f"{s.name:16s} {bench_net._k(s.rate):>8s} {s.server_load:8.2f} "
            f"{bench_net._k(s.per_core):>10s} {s.gen_load:7.0%} {s.other_load:5.0%}  "
            f"{ratio:>6s} {rng:>26s}  {goal}{check}"
        )
    print(
        "\nsrv CPU = cores used by the jcentral (supervisor + workers); gen CPU = the load "
        "generator's, in % of a core;\nother = every other process of the machine in the "
        "window, in % of a core; vs 1w = ratio of the medians; round by round = the ratio of\n"
        "the two measured back to back in each round (range, median): the machine's other\n"
        "load moves between rounds, the pairs see it alike."
    )
    cores = len(os.sched_getaffinity(0))
    if cores <= workers:
        print(
            f"this machine has {cores} cores for {workers} workers and the load generator: "
            "the load generator's CPU comes out of the workers' share"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="windows = 3 s * scale")
    parser.add_argument("--workers", type=int, default=2, help="workers of the second jcentral")
    parser.add_argument("--no-spin", action="store_true", help="see bench_net.spinning()")
    args = parser.parse_args()
    duration = max(0.2, 3.0 * args.scale)
    rounds = max(1, min(15, int(duration / 0.4)))
    window = duration / rounds
    timing: dict[str, Any] = {
        "rounds": rounds,
        "window": window,
        "warmup": max(0.05, min(0.3, window / 4)),
    }
    found = scenarios(args.workers)
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="bench_workers_") as tmp:
        home, globus = make_grid(Path(tmp), 0)
        other = Path(tmp) / "home-workers"
        shutil.copytree(home, other, symlinks=True)
        centrals = {1: Central(home, 1)}
        gen_parent, gen_child = ctx.Pipe()
        gen = ctx.Process(target=bench_net.loadgen_main, args=(gen_child, False), daemon=True)
        try:
            centrals[args.workers] = Central(other, args.workers)
            tls = {
                "cert": str(globus / "usercert.pem"),
                "key": str(globus / "userkey.pem"),
                "ca_dir": str(home / "certificates"),
            }
            lifetime = 120 + rounds * len(found) * (window + 15)
            with bench_net.spinning(not args.no_spin, lifetime) as spin_pids:
                gen.start()
                if not gen_parent.poll(60):
                    raise RuntimeError("load generator did not start")
                _ready, _where, clock = gen_parent.recv()
                print(
                    f"== jcentral workers: 1 vs {args.workers} processes over TLS (WebSocket "
                    f"JSON), {CONNECTIONS} connections, median of {rounds} x {window:.2f} s "
                    f"windows, nothing pinned, {len(os.sched_getaffinity(0))} cores; CPU clock "
                    f"{clock}; load averages {', '.join(f'{x:.1f}' for x in os.getloadavg())}"
                )
                timing["spin_pids"] = spin_pids
                run_rounds(gen_parent, centrals, tls, timing, found)
                gen_parent.send(None)
            report(found, args.workers)
            ls = [s for s in found if s.command == "ls"]
            if len(ls) == 2 and ls[0].rate:
                rates = [_rate(r) for r in ls[1].rounds if _rate(r)]
                if rates:
                    print(
                        f"ls with {args.workers} workers: {statistics.median(rates):,.0f} req/s "
                        f"(rounds {min(rates):,.0f}-{max(rates):,.0f})"
                    )
        finally:
            for central in centrals.values():
                central.stop()
            gen.join(10)
            if gen.is_alive():
                gen.kill()


if __name__ == "__main__":
    main()
