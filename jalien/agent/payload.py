"""The payload: Executable + Arguments in the sandbox, in a session (and process group) of
its own so that one signal reaches everything it started, stdout and stderr to files.

The process is started with asyncio's subprocess support (no blocking fork on the loop
thread beyond the spawn itself); its exit is awaited, never polled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence

from jalien.agent.sandbox import Sandbox


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
