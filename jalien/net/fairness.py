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
- A light identity (at most ``LIGHT`` requests in flight: it cannot flood) takes no turn:
  its page is made as soon as its task runs, not behind a flooder's queue at the gate;
  neither does an identity alone (``needs_turn``).
- A bounded turn of the loop (``LoopBudget``): past ``BUDGET`` of pages in one turn of
  the loop, the next page waits for the next turn, so requests that arrived meanwhile are
  read (and their identity counts as active) within milliseconds, alone or not.
- A short turn while others are active: a page takes the loop for as long as it takes to
  read and encode its rows (~1.7 ms of SQLite for 2000 rows of ``ls -l``), so an identity
  served while another identity asked within ``RECENT`` seconds makes pages of at most
  ``SLICE`` rows (``step_rows``, asked by the catalogue's listings through the task's
  context, ``serving``): the other's request waits for a slice, not a page. Alone, an
  identity keeps the big pages.

JAliEn's server instead sleeps (count - 100) ms before each command of a busy user, which
slows a normal user too; here nothing waits unless another identity is waiting.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")

SLICE = 64
"""Rows a step of a streamed reply produces while another identity is active (~0.3 ms
for ``ls -l``: reading, encoding and writing; alone a page is up to
``catalogue.backend.PAGE`` rows). The fairness bench: with 256 the other user's p99 was
4-8x its idle value, with 64 within 2x; the flooder's own pages cost more per row
meanwhile (its throughput, not the other's latency, pays for the fairness)."""
LIGHT = 4
"""An identity with at most this many requests in flight cannot flood: its pages take no
turn (they are made when its task runs, not behind a flooder's queue at the gate)."""
RECENT = 1.0
"""Seconds since its last request during which an identity counts as active."""
BUDGET = 0.005
"""Seconds of a turn of the loop after which a streamed reply's next page waits for the next
turn (``LoopBudget``), whoever is active: new requests are read in between. An identity
alone takes no turns at the gate, and its streams' pages, made on the loop's thread
(SQLite), ran one after the other in one turn of the loop: a user whose first request came
during another's flood (16 x 64 ``ls -l`` of 2000 entries) waited 2.6-8 s for it."""

BUSY_TEXT = "Server busy: {login} has {count} requests in flight (at most {limit}), try again later"


def busy_text(login: str, count: int, limit: int) -> str:
    return BUSY_TEXT.format(login=login, count=count, limit=limit)


class RoundRobin(Generic[T]):
    """Items queued per key; each pop serves the waiting key served least recently (a key
    new to the queue first), FIFO within a key: a user asking once is next, whatever the
    depth of another's queue."""

    __slots__ = ("_queues", "_served", "_tick")

    def __init__(self) -> None:
        self._queues: dict[Hashable, collections.deque[T]] = {}
        self._served: dict[Hashable, int] = {}  # the pop that last served a waiting key
        self._tick = 0

    def __len__(self) -> int:
        return sum(map(len, self._queues.values()))

    def __bool__(self) -> bool:
        return bool(self._queues)

    def push(self, key: Hashable, item: T) -> None:
        queue = self._queues.get(key)
        if queue is None:
            queue = collections.deque()  # not chained: Nuitka folds a later `if queue`
            self._queues[key] = queue
        queue.append(item)

    def pop(self) -> tuple[Hashable, T] | None:
        """The first item of the key served least recently."""
        if not self._queues:
            return None
        served = self._served
        key = min(self._queues, key=lambda k: served.get(k, -1))
        queue = self._queues[key]
        item = queue.popleft()
        self._tick += 1
        if queue:
            served[key] = self._tick
        else:
            del self._queues[key]
            served.pop(key, None)
        return key, item

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
            self._served.pop(key, None)
        return True


class InFlight:
    """Requests in flight per identity, with a soft (stop reading) and a hard (busy)
    bound. *on_resume(key)* is called when an identity falls back below half of soft."""

    __slots__ = ("_last", "counts", "hard", "on_resume", "seen", "soft")

    def __init__(
        self, soft: int, hard: int, on_resume: Callable[[str], None] | None = None
    ) -> None:
        self.soft = soft
        self.hard = hard
        self.counts: dict[str, int] = {}
        self.on_resume = on_resume
        # when each identity last asked after another one did (an identity asking alone,
        # however fast, never reads the clock here)
        self.seen: dict[str, float] = {}
        self._last = ""

    def admit(self, key: str) -> bool:
        """Count a request in; False (not counted) past the hard bound."""
        if key != self._last:
            self._last = key
            self.seen[key] = time.monotonic()
        count = self.counts.get(key, 0)
        if count >= self.hard:
            return False
        self.counts[key] = count + 1
        return True

    def others_active(self, key: str) -> bool:
        """Whether an identity other than *key* asked within RECENT seconds."""
        seen = self.seen
        if len(seen) < 2 and key in seen:
            return False
        now = time.monotonic()
        found = False
        for other, at in list(seen.items()):
            if now - at > RECENT:
                if other != self._last:
                    del seen[other]
            elif other != key:
                found = True
        return found

    def done(self, key: str) -> None:
        count = self.counts.get(key, 0) - 1
        if count <= 0:
            self.counts.pop(key, None)
        else:
            self.counts[key] = count
        if count == self.soft // 2 and self.on_resume is not None:
            self.on_resume(key)

    def light(self, key: str) -> bool:
        """At most LIGHT requests in flight: its pages need no turn."""
        return self.counts.get(key, 0) <= LIGHT

    def needs_turn(self, key: str) -> bool:
        """Whether a page of *key*'s streamed reply waits for a turn when none is free: only
        when it could flood (not light) and another identity is active. A user alone,
        however many connections, never waits at the gate: nobody to be fair to (its 8
        connections x 1 small ``ls`` each had waited there, a Task and a wake-up per
        request: ~15% of that bench's server time)."""
        return self.counts.get(key, 0) > LIGHT and self.others_active(key)

    def saturated(self, key: str) -> bool:
        """At or past the soft bound: its connections are not read."""
        return self.counts.get(key, 0) >= self.soft


def done_after_this_turn(in_flight: InFlight, key: str) -> None:
    """A request that ended in the step that started it (``net.eager``) counts out only
    once the loop's current turn is over: a flooder's pipelined requests, each ending at
    once, would otherwise never be more than one in flight, so never past LIGHT, and take
    every page without a turn while another identity's requests sit unread (seen: 5 s per
    poll of 16 connections x 64 ``ls -l`` of 2000 entries; the fairness bench)."""
    asyncio.get_running_loop().call_soon(in_flight.done, key)


class TurnGate:
    """At most *slots* turns at once; waiters served round-robin by key. When no turn has
    ended for *patience* seconds while some wait (the holders wait on something slow: a
    long database query), one more turn is given, in turn: slow holders delay the others
    by about that much at most, and a busy gate is never over-subscribed."""

    __slots__ = ("_ending", "_free", "_moved", "_timer", "_waiting", "patience")

    def __init__(self, slots: int, patience: float = 0.5) -> None:
        self._free = slots
        self._waiting: RoundRobin[asyncio.Future[None]] = RoundRobin()
        self._timer: asyncio.TimerHandle | None = None
        self._moved = False
        self._ending = 0  # turns ended in this loop iteration, freed at its end
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
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.push(key, future)
        if self._timer is None:
            self._moved = False
            self._timer = asyncio.get_running_loop().call_later(self.patience, self._watch)
        try:
            await future
        except asyncio.CancelledError:
            if not self._waiting.remove(key, future) and future.done() and not future.cancelled():
                self.leave()  # handed a turn as it was cancelled: pass it on
            raise

    def _watch(self) -> None:
        self._timer = None
        if not self._waiting:
            return
        if not self._moved:  # stuck: one turn more
            self._free -= 1
            self._hand_on()
        self._moved = False
        self._timer = asyncio.get_running_loop().call_later(self.patience, self._watch)

    def _hand_on(self) -> bool:
        """Give a free turn to the next identity waiting; False when none waits."""
        while True:
            nxt = self._waiting.pop()
            if nxt is None:
                self._free += 1
                return False
            future = nxt[1]
            if not future.done():
                future.set_result(None)
                return True

    def leave(self) -> None:
        """End a turn. Its slot is free only after the tasks already ready have run (a
        call_soon): a page made in one step of a task ends its turn in that step, and the
        flooder's tasks queued behind it on the loop would otherwise each find the slot free
        and run before another identity's task queued after them; this way they wait at the
        gate, where identities take turns."""
        self._moved = True
        if not self._ending:
            asyncio.get_running_loop().call_soon(self._freed)
        self._ending += 1

    def _freed(self) -> None:
        """Hand on the turns ended: one per turn of the loop. A page made without a
        yield (SQLite on the loop's thread) ends in the step that began it, so each turn
        of the loop makes at most one such page while others wait, and the requests of
        the other identities are read and answered between two pages, not after
        ``slots`` of them (the fairness bench: ~2 ms per iteration instead of ~5 with
        two); pages that wait (a database server) still run ``slots`` at once, the
        second one turn of the loop after the first."""
        self._free += self._ending
        self._ending = 0
        if self._free > 0:
            self._free -= 1
            if self._hand_on() and self._free > 0 and self._waiting:
                self._ending_scheduled()

    def _ending_scheduled(self) -> None:
        """Hand on one more turn at the next turn of the loop (as a turn ended now)."""
        self._free -= 1
        self._ending += 1
        if self._ending == 1:
            asyncio.get_running_loop().call_soon(self._freed)


class LoopBudget:
    """How long the current turn of the loop has been making pages: past *budget* seconds
    the next page waits for the next turn, in which the loop first reads what arrived (a
    yield per few milliseconds of pages: nothing a user alone notices)."""

    __slots__ = ("_began", "_clock", "_counting", "budget")

    def __init__(self, budget: float = BUDGET, clock: Callable[[], float] = time.perf_counter):
        self.budget = budget
        self._clock = clock
        self._began = 0.0
        self._counting = False

    def spent(self) -> bool:
        """Whether this turn of the loop has made pages for *budget* seconds (counted from
        its first page; the count ends at the next turn)."""
        if not self._counting:
            self._counting = True
            self._began = self._clock()
            asyncio.get_running_loop().call_soon(self._next_turn)
            return False
        return self._clock() - self._began >= self.budget

    def _next_turn(self) -> None:
        self._counting = False

    async def wait(self) -> None:
        """Once ``spent``: wait for a turn of the loop with budget left (at most two)."""
        await asyncio.sleep(0)
        while self.spent():
            await asyncio.sleep(0)


class _Serving:
    __slots__ = ("in_flight", "key")

    def __init__(self, in_flight: InFlight, key: str) -> None:
        self.in_flight = in_flight
        self.key = key


_serving: contextvars.ContextVar[_Serving | None] = contextvars.ContextVar(
    "jalien_serving", default=None
)


def serving(in_flight: InFlight, key: str) -> None:
    """The current task serves *key*'s streamed reply (its pages ask ``step_rows``). A
    task's context is its own: set once at the start of the task's stream."""
    _serving.set(_Serving(in_flight, key))


def step_rows(full: int) -> int:
    """Rows the next page of the reply being served may hold: *full*, or SLICE while an
    identity other than the one served is active (a short turn: that identity's request
    waits for a slice of this reply, not a page). Outside a server's stream: *full*."""
    current = _serving.get()
    if current is None or full <= SLICE:
        return full
    return SLICE if current.in_flight.others_active(current.key) else full
