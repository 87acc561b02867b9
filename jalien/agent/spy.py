"""The spy report: what a running job is doing, without waiting for it to end.

The tail of its stdout and stderr, its process tree (pid, parent, command line, RSS) and its
resource use so far (the monitor's latest sample and peaks). The agent answers ``spy`` on
the payload's local socket with it (see ``localsocket``); the report is one flat record, as
JAliEn's replies are, with the human text in ``message``.
"""

from __future__ import annotations

import os
from pathlib import Path

import psutil

from jalien.agent.monitor import Sample, Trace
from jalien.agent.sandbox import Sandbox

TAIL_BYTES = 64 * 1024


def tail(path: Path, lines: int = 50) -> str:
    """The last *lines* lines of a file (reads at most TAIL_BYTES from its end)."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - TAIL_BYTES))
            data = fh.read()
    except OSError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


def process_lines(pids: tuple[int, ...]) -> list[str]:
    out = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            with proc.oneshot():
                ppid = proc.ppid()
                rss = proc.memory_info().rss
                cmd = " ".join(proc.cmdline()) or proc.name()
        except psutil.Error:
            continue
        out.append(f"{pid:>8} {ppid:>8} {rss // 1024:>10}kB {cmd[:200]}")
    return out


def spy_record(
    queue_id: int, sandbox: Sandbox, sample: Sample, trace: Trace, lines: int = 50
) -> dict[str, str]:
    """The report (blocking: /proc and file reads; call it in a thread)."""
    stdout = tail(sandbox.stdout, lines)
    stderr = tail(sandbox.stderr, lines)
    procs = process_lines(sample.pids)
    usage = (
        f"processes={sample.processes} cpu={sample.cpu:.2f}s rss={sample.rss // 1024}kB "
        f"pss={sample.pss // 1024}kB vms={sample.vms // 1024}kB disk={sample.disk // 1024}kB "
        f"wall={sample.wall:.1f}s"
    )
    message = "\n".join(
        [
            f"job {queue_id}: {usage}",
            f"peaks: {trace.describe()}",
            "processes:",
            f"{'PID':>8} {'PPID':>8} {'RSS':>12} COMMAND",
            *procs,
            "stdout (tail):",
            stdout,
            "stderr (tail):",
            stderr,
        ]
    )
    return {
        "queueId": str(queue_id),
        "stdout": stdout,
        "stderr": stderr,
        "processes": "\n".join(procs),
        "usage": usage,
        "peaks": trace.describe(),
        "message": message,
    }
