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


# -- spy from outside: central's question (an Event pushed on the agent's connection)
def _head(path: Path, limit: int) -> str:
    """The last *limit* bytes of a file (a spy report carries at most that much)."""
    with open(path, "rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        fh.seek(max(0, size - limit))
        data = fh.read(limit)
    text = data.decode(errors="replace")
    return text if size <= limit else f"[... last {limit} of {size} bytes]\n{text}"


def workdir_listing(root: Path, limit: int = 2000) -> str:
    """The sandbox's files, one line each: size and path (at most *limit* lines)."""
    lines: list[str] = []
    for path in sorted(root.rglob("*")):
        if len(lines) >= limit:
            lines.append("...")
            break
        try:
            st = path.lstat()
        except OSError:
            continue
        kind = "d" if path.is_dir() and not path.is_symlink() else "-"
        lines.append(f"{kind} {st.st_size:>12} {path.relative_to(root)}")
    return "\n".join(lines)


def node_info(sample: Sample, trace: Trace, site: str, ce: str) -> str:
    """The worker node: host, CPUs, load, memory, disk of the sandbox, and the job's use."""
    import socket

    memory = psutil.virtual_memory()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return "\n".join(
        [
            f"host: {socket.gethostname()}",
            f"site: {site}  ce: {ce}",
            f"cpus: {os.cpu_count()}  load: {load}",
            f"memory: {memory.total // 2**20} MB total, {memory.available // 2**20} MB free",
            f"job: processes={sample.processes} cpu={sample.cpu:.2f}s rss={sample.rss // 1024}kB"
            f" pss={sample.pss // 1024}kB disk={sample.disk // 1024}kB wall={sample.wall:.1f}s",
            f"peaks: {trace.describe()}",
        ]
    )


def spy_answer(
    what: str, sandbox: Sandbox, sample: Sample, trace: Trace, site: str, ce: str, limit: int
) -> tuple[str, str]:
    """(text, error) for central's question *what* (blocking: call it in a thread). A file
    is read only inside the sandbox: a path that leaves it, through ``..`` or a symbolic
    link, is refused."""
    root = sandbox.root.resolve()
    if what == "workdir":
        return workdir_listing(root)[-limit:], ""
    if what == "nodeinfo":
        return node_info(sample, trace, site, ce), ""
    path = sandbox.stdout if what == "stdout" else sandbox.stderr if what == "stderr" else None
    if path is None:
        path = (root / what).resolve()
        if root not in path.parents:
            return "", f"{what} is not in the job's sandbox"
    if not path.is_file():
        return "", f"no file {what} in the job's sandbox"
    try:
        return _head(path, limit), ""
    except OSError as exc:
        return "", f"{what}: {exc.strerror}"
