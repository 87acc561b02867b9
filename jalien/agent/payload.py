"""The payload: Executable + Arguments in the sandbox, in a session (and process group) of
its own so that one signal reaches everything it started, stdout and stderr to files.

The process is started by the stdlib's ``subprocess.Popen`` in a thread of its own, which
then waits for its exit: the event loop's thread never forks and never waits for a child's
exec. uvloop's spawn waits for the exec on the loop's thread, and a child that
stalls between fork and exec (a lock another thread held at the fork) froze the agent with
its job STARTED or RUNNING, its local socket listening, nothing logged after: seen in the
README session's test once setpriv (below) was already in place. On Linux the payload's
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
import threading
from collections.abc import Mapping, Sequence
from typing import Any

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


def _tell(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], value: Any) -> None:
    """From the payload's thread: settle *future* on the loop (an exception or a value)."""

    def settle() -> None:
        if future.done():
            return
        if isinstance(value, BaseException):
            future.set_exception(value)
        else:
            future.set_result(value)

    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
        loop.call_soon_threadsafe(settle)


class PayloadError(Exception):
    """The payload could not be started (not executable, missing, ...)."""


class Payload:
    """A payload started by a thread of its own, which then waits for its exit: the thread
    that forked is the payload's parent for the kernel, and ``PR_SET_PDEATHSIG`` fires when
    that *thread* ends, so it must outlive the payload (a pool's worker could end first)."""

    def __init__(self, process: subprocess.Popen[bytes], exited: asyncio.Future[int]) -> None:
        self.process = process
        self.pid = process.pid
        self.pgid = process.pid  # start_new_session: the leader of its own group
        self._exited = exited

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
        loop = asyncio.get_running_loop()
        started: asyncio.Future[subprocess.Popen[bytes]] = loop.create_future()
        exited: asyncio.Future[int] = loop.create_future()

        def run() -> None:  # the payload's thread: spawn, then wait
            try:
                with open(sandbox.stdout, "ab") as out, open(sandbox.stderr, "ab") as err:
                    process = subprocess.Popen(
                        [*prefix, *argv],
                        cwd=str(sandbox.root),
                        env=dict(env),
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=err,
                        start_new_session=True,
                    )
            except OSError as exc:
                _tell(loop, started, exc)
                return
            _tell(loop, started, process)
            _tell(loop, exited, process.wait())

        threading.Thread(target=run, name="payload", daemon=True).start()
        try:
            process = await started
        except OSError as exc:
            raise PayloadError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
        return cls(process, exited)

    async def wait(self) -> int:
        """The exit code; a death by signal N is 128 + N, as shells report it."""
        code = await asyncio.shield(self._exited)
        return 128 - code if code < 0 else code

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        """Whatever is left in the payload's group (daemons it forgot) goes with it."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, sig)
