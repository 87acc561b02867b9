"""The payload: Executable + Arguments in the sandbox, in a session (and process group) of
its own so that one signal reaches everything it started, stdout and stderr to files.

The process is started with asyncio's subprocess support (no blocking fork on the loop
thread beyond the spawn itself); its exit is awaited, never polled. On Linux the payload's
first process asks the kernel for SIGKILL when the agent dies (``PR_SET_PDEATHSIG``): an
agent killed -9 must not leave a payload running on the node outside any accounting (its own
session keeps it out of the agent's process group, so nothing else would reach it).

The request is made by util-linux's ``setpriv --pdeathsig KILL``, which then execs the
payload (same pid, same environment): never by Python code between fork and exec. Such code
(a ``preexec_fn``) runs in the copy of a process with threads, can deadlock there on a lock
another thread held at the fork, and uvloop's parent then waits for the exec on the event
loop's thread: the agent froze with its job RUNNING and never started (seen about once in
a few hundred jobs on a loaded machine). A node without a ``setpriv`` that knows
``--pdeathsig`` (util-linux < 2.33) runs payloads untied, said once in the log; the agent
still ends the payload's group whenever it ends itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence

from jalien.agent.sandbox import Sandbox

log = logging.getLogger("jalien.agent")


@functools.cache
def tie_prefix() -> tuple[str, ...]:
    """The words before a payload's argv that tie it to this process's life: setpriv's,
    when it knows ``--pdeathsig`` (checked once, by running it), else none."""
    setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
    if setpriv is not None:
        words = (setpriv, "--pdeathsig", "KILL", "--")
        try:
            subprocess.run([*words, "true"], check=True, capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            pass
        else:
            return words
    log.warning(
        "payloads are not tied to the agent's life: no setpriv with --pdeathsig (util-linux "
        ">= 2.33) on this node; an agent killed -9 leaves its payload running"
    )
    return ()


class PayloadError(Exception):
    """The payload could not be started (not executable, missing, ...)."""


class Payload:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.pid = process.pid
        self.pgid = process.pid  # start_new_session: the leader of its own group

    @classmethod
    async def start(cls, argv: Sequence[str], sandbox: Sandbox, env: Mapping[str, str]) -> Payload:
        prefix = await asyncio.to_thread(tie_prefix)
        if prefix:  # setpriv would only say so on the payload's stderr, with exit code 127
            found = shutil.which(argv[0], path=env.get("PATH", os.defpath))
            if os.sep in argv[0]:
                found = argv[0] if os.path.isfile(os.path.join(sandbox.root, argv[0])) else None
            if found is None:
                raise PayloadError(f"cannot run {argv[0]}: No such file or directory")
            if not os.access(os.path.join(sandbox.root, found), os.X_OK):
                raise PayloadError(f"cannot run {argv[0]}: Permission denied")
        try:
            with open(sandbox.stdout, "ab") as out, open(sandbox.stderr, "ab") as err:
                process = await asyncio.create_subprocess_exec(
                    *prefix,
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
