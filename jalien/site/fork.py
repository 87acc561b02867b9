"""The embedded batch system: JobAgents as detached processes of the VoBox host.

Each agent runs in its own session (``setsid``: a signal to the VoBox's process group, a
closed terminal, a VoBox restart leave it alone) with its output in its log file, and is
tracked by its pid. The VoBox's event loop reaps the children it started; pids it
inherits from a previous run (``adopt``) are followed with ``kill(pid, 0)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterable
from pathlib import Path

from jalien.site.batch import AgentState, BatchError, BatchJob


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is dead to us (its parent, not us, will reap it)
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


class ForkBatch:
    name = "fork"

    def __init__(self, shell: str = "/bin/sh") -> None:
        self.shell = shell
        self._children: dict[int, asyncio.subprocess.Process] = {}
        self._adopted: set[int] = set()

    def adopt(self, pids: Iterable[int]) -> None:
        """Follow agents a previous VoBox run started (their pids, from the agent dirs)."""
        self._adopted.update(pid for pid in pids if pid > 0 and _alive(pid))

    async def submit(self, script: Path, log: Path, job_name: str) -> str:
        try:
            out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as exc:
            raise BatchError(f"cannot open the agent log {log}: {exc.strerror}") from None
        try:
            proc = await asyncio.create_subprocess_exec(
                self.shell,
                str(script),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                cwd=script.parent,
                start_new_session=True,
            )
        except OSError as exc:
            raise BatchError(f"cannot start {script}: {exc.strerror or exc}") from None
        finally:
            os.close(out)
        self._children[proc.pid] = proc
        return str(proc.pid)

    async def jobs(self) -> list[BatchJob]:
        for pid, proc in list(self._children.items()):
            if proc.returncode is not None:
                del self._children[pid]
        self._adopted = {pid for pid in self._adopted if _alive(pid)}
        pids = sorted(set(self._children) | self._adopted)
        return [BatchJob(str(pid), AgentState.RUNNING) for pid in pids]

    async def cancel(self, job_id: str) -> None:
        """SIGTERM to the agent's whole session (its payloads too)."""
        try:
            pid = int(job_id)
        except ValueError:
            raise BatchError(f"fork: {job_id!r} is not a pid") from None
        if pid not in self._children and pid not in self._adopted:
            raise BatchError(f"fork: {pid} is not one of our agents")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
