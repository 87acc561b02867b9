"""The batch-system interface a VoBox submits JobAgents through.

A batch system is a plug-in with a name and three operations: submit a startup script,
list the JobAgents it still holds for us (queued or running), cancel one. ``fork``
(processes on the VoBox host) and ``slurm`` implement it; HTCondor, PBS or LSF would be one
more module each and a branch in ``roles/vobox.make_batch``. Everything is async: a batch
system's commands are subprocesses run through asyncio (``run_command``), never blocking the
VoBox's event loop (which also relays its worker nodes' calls). The contract in full (what
``submit`` is given and returns, what ``jobs`` must leave out, errors, credentials, tests):
docs/site.md, "Batch interfaces".
"""

from __future__ import annotations

import asyncio
import enum
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import msgspec


class AgentState(enum.Enum):
    QUEUED = "queued"  # accepted by the batch system, not started
    RUNNING = "running"


class BatchJob(msgspec.Struct, frozen=True):
    """One JobAgent as the batch system reports it."""

    id: str
    state: AgentState


class BatchError(Exception):
    """A batch command failed; the message names the command and what it said."""


class BatchInterface(Protocol):
    name: str

    async def submit(self, script: Path, log: Path, job_name: str) -> str:
        """Start *script* (stdout and stderr to *log*); the batch system's id for it."""
        ...

    async def jobs(self) -> list[BatchJob]:
        """Our JobAgents the batch system still holds (finished ones are not listed)."""
        ...

    async def cancel(self, job_id: str) -> None: ...


def count(jobs: Sequence[BatchJob], state: AgentState) -> int:
    return sum(1 for job in jobs if job.state is state)


async def run_command(
    argv: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 60.0
) -> str:
    """Run a batch command; its stdout, or BatchError with its stderr (or why it could not
    run: a missing binary, a hang)."""
    full_env = {**os.environ, **(env or {})}
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=full_env,
        )
    except OSError as exc:
        raise BatchError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise BatchError(f"{argv[0]} did not answer within {timeout:g} s") from None
    if proc.returncode:
        text = err.decode(errors="replace").strip() or out.decode(errors="replace").strip()
        raise BatchError(f"{' '.join(argv[:2])} failed ({proc.returncode}): {text}")
    return out.decode(errors="replace")
