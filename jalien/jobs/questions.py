"""Questions central pushes down to a site's process and the reports that answer them later
(``spy``: jobs/spy.py; ``logs``: jobs/logs_desk.py), kept once.

A question gets a ref; refs start at a random number per process, so that one central's
questions never take another's answers. At most ``max_pending`` wait at once (beyond: busy,
exit 11), each at most ``timeout`` seconds (then exit 62): a silent process costs nothing
lasting. Who may answer a ref is the desk's rule (it reads the question back, ``about``).
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import random
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from jalien.wire.errors import EXIT_BUSY, EXIT_TIMEOUT, RequestError

Q = TypeVar("Q")  # what a desk keeps of a question (who must answer it)
R = TypeVar("R")  # the report that answers it


class Questions(Generic[Q, R]):
    def __init__(self, timeout: float, max_pending: int) -> None:
        self.timeout = timeout
        self.max_pending = max_pending
        self._refs = itertools.count(random.randrange(1, 1 << 30) << 20)
        self._pending: dict[int, tuple[Q, asyncio.Future[R]]] = {}
        self.asked = 0
        self.answered = 0
        self.timeouts = 0

    async def ask(
        self,
        about: Q,
        send: Callable[[int], Awaitable[None] | None],
        busy: str,
        silent: str,
    ) -> R:
        """Send a question (*send* is given its ref) and wait for its report. *busy* is the
        error when too many wait, *silent* when no answer came in time."""
        if len(self._pending) >= self.max_pending:
            raise RequestError(busy, EXIT_BUSY)
        ref = next(self._refs)
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending[ref] = (about, future)
        self.asked += 1
        try:
            sent = send(ref)
            if inspect.isawaitable(sent):
                await sent
            return await asyncio.wait_for(future, self.timeout)
        except TimeoutError:
            self.timeouts += 1
            raise RequestError(silent, EXIT_TIMEOUT) from None
        finally:
            self._pending.pop(ref, None)

    def about(self, ref: int) -> Q | None:
        """What was kept of question *ref*; None when none waits (answered, timed out, or
        another central's)."""
        waiting = self._pending.get(ref)
        return None if waiting is None else waiting[0]

    def deliver(self, ref: int, report: R) -> bool:
        """Hand *report* to the question waiting for it; False when none waits."""
        waiting = self._pending.get(ref)
        if waiting is None:
            return False
        self.answered += 1
        if not waiting[1].done():
            waiting[1].set_result(report)
        return True
