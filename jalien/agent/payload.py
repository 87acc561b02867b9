"""The payload: Executable + Arguments in the sandbox, in a session (and process group) of
its own so that one signal reaches everything it started, stdout and stderr to files.

The process is started with asyncio's subprocess support (no blocking fork on the loop
thread beyond the spawn itself); its exit is awaited, never polled. On Linux the payload's
first process asks the kernel for SIGKILL when the agent dies (``PR_SET_PDEATHSIG``): an
agent killed -9 must not leave a payload running on the node outside any accounting (its own
session keeps it out of the agent's process group, so nothing else would reach it).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence

from jalien.agent.sandbox import Sandbox

PR_SET_PDEATHSIG = 1


def _death_signal() -> Callable[[], None] | None:
    """A preexec function tying the child to this process's life (Linux), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def tie() -> None:  # runs in the child between fork and exec: no allocation, no locks
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the agent died before the tie: do not run alone
            os._exit(137)

    return tie


class PayloadError(Exception):
    """The payload could not be started (not executable, missing, ...)."""


class Payload:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.pid = process.pid
        self.pgid = process.pid  # start_new_session: the leader of its own group

    @classmethod
    async def start(cls, argv: Sequence[str], sandbox: Sandbox, env: Mapping[str, str]) -> Payload:
        try:
            with open(sandbox.stdout, "ab") as out, open(sandbox.stderr, "ab") as err:
                process = await asyncio.create_subprocess_exec(
                    *argv,
                    cwd=str(sandbox.root),
                    env=dict(env),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                    preexec_fn=_death_signal(),
                )
        except OSError as exc:
            raise PayloadError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
        return cls(process)

    async def wait(self) -> int:
        """The exit code; a death by signal N is 128 + N, as shells report it."""
        code = await self.process.wait()
        return 128 - code if code < 0 else code

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        """Whatever is left in the payload's group (daemons it forgot) goes with it."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, sig)
