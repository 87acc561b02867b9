"""Fairness between identities under load: one user flooding the server (many connections,
deep pipelines) must not starve the others, and a user alone keeps the full speed.

Two mechanisms, keyed by the identity of the request (its login: a connection's, or a proxy
level's channel's own, never the level's):

- ``InFlight``: requests of an identity being served at once, across all its connections
  and channels. Past ``soft`` its own connections stop being read (the kernel's buffers and
  TCP hold the rest: the flood slows itself down); past ``hard`` (requests that were already
  read) a request is answered at once with a busy reply (``EXIT_BUSY``), never queued. It
  resumes reading below half of ``soft``.
- ``TurnGate``: the work that takes the loop for long (producing a page of a streamed
  reply: a listing, ``find``) takes a turn. At most ``slots`` turns run at once; when more
  wait, the identities waiting are served round-robin (``RoundRobin``), one turn each, so a
  user asking once waits for at most ``slots`` pages of a flooder, not for its queue. With
  no one waiting a turn is taken without a yield (a user alone runs at full speed).

JAliEn's server instead sleeps (count - 100) ms before each command of a busy user, which
slows a normal user too; here nothing waits unless another identity is waiting.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")

BUSY_TEXT = "Server busy: {login} has {count} requests in flight (at most {limit}), try again later"


def busy_text(login: str, count: int, limit: int) -> str:
    return BUSY_TEXT.format(login=login, count=count, limit=limit)


class RoundRobin(Generic[T]):
    """Items queued per key, taken one key at a time in turn (FIFO within a key)."""

    __slots__ = ("_queues",)

    def __init__(self) -> None:
        # keys with something queued, in turn order (dicts keep insertion order)
        self._queues: dict[Hashable, collections.deque[T]] = {}

    def __len__(self) -> int:
        return sum(map(len, self._queues.values()))

    def __bool__(self) -> bool:
        return bool(self._queues)

    def push(self, key: Hashable, item: T) -> None:
        queue = self._queues.get(key)
        if queue is None:
            self._queues[key] = queue = collections.deque()
        queue.append(item)

    def pop(self) -> tuple[Hashable, T] | None:
        """The next key's first item; the key goes to the back of the turn order."""
        for key in self._queues:
            queue = self._queues.pop(key)
            item = queue.popleft()
            if queue:
                self._queues[key] = queue  # re-inserted: last in turn
            return key, item
        return None

    def remove(self, key: Hashable, item: T) -> bool:
        queue = self._queues.get(key)
        if queue is None:
            return False
        try:
            queue.remove(item)
        except ValueError:
            return False
        if not queue:
            del self._queues[key]
        return True


class InFlight:
    """Requests in flight per identity, with a soft (stop reading) and a hard (busy)
    bound. *on_resume(key)* is called when an identity falls back below half of soft."""

    __slots__ = ("counts", "hard", "on_resume", "soft")

    def __init__(
        self, soft: int, hard: int, on_resume: Callable[[str], None] | None = None
    ) -> None:
        self.soft = soft
        self.hard = hard
        self.counts: dict[str, int] = {}
        self.on_resume = on_resume

    def admit(self, key: str) -> bool:
        """Count a request in; False (not counted) past the hard bound."""
        count = self.counts.get(key, 0)
        if count >= self.hard:
            return False
        self.counts[key] = count + 1
        return True

    def done(self, key: str) -> None:
        count = self.counts.get(key, 0) - 1
        if count <= 0:
            self.counts.pop(key, None)
        else:
            self.counts[key] = count
        if count == self.soft // 2 and self.on_resume is not None:
            self.on_resume(key)

    def saturated(self, key: str) -> bool:
        """At or past the soft bound: its connections are not read."""
        return self.counts.get(key, 0) >= self.soft


class TurnGate:
    """At most *slots* turns at once; waiters served round-robin by key. A waiter that
    waited *patience* seconds takes a turn anyway (slots over-subscribed): a turn held
    across a slow wait (a long database query) delays the others by that much at most."""

    __slots__ = ("_free", "_waiting", "patience")

    def __init__(self, slots: int, patience: float = 1.0) -> None:
        self._free = slots
        self._waiting: RoundRobin[asyncio.Future[None]] = RoundRobin()
        self.patience = patience

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def try_enter(self) -> bool:
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return True
        return False

    async def enter(self, key: Hashable) -> None:
        """Wait for a turn (none when a slot is free and no one waits)."""
        if self.try_enter():
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._waiting.push(key, future)
        timer = loop.call_later(self.patience, self._impatient, key, future)
        try:
            await future
        except asyncio.CancelledError:
            if not self._waiting.remove(key, future) and future.done() and not future.cancelled():
                self.leave()  # handed a turn as it was cancelled: pass it on
            raise
        finally:
            timer.cancel()

    def _impatient(self, key: Hashable, future: asyncio.Future[None]) -> None:
        if self._waiting.remove(key, future) and not future.done():
            self._free -= 1  # over-subscribed: given back by its leave()
            future.set_result(None)

    def leave(self) -> None:
        """End a turn: the next identities waiting get the free slots."""
        self._free += 1
        while self._free > 0:
            nxt = self._waiting.pop()
            if nxt is None:
                return
            future = nxt[1]
            if not future.done():
                self._free -= 1
                future.set_result(None)
