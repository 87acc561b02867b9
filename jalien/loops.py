"""The one runner of background loops (the watchdog, the live-jobs refresh, the cache's
reader release, the VoBox cycle, token renewal, ...) and the registry that lists them.

A ``Loop`` calls an async *step* again and again until it is stopped:

- the first step comes *first* seconds after the start (default: one interval);
- between two steps it sleeps *interval* seconds (from the end of one step to the start
  of the next), less up to *jitter* of it at random so that several processes drift apart;
  a step may return a number instead: the seconds until the next step (0: at once);
- a step that raises is counted; the first error of a burst is logged with its traceback,
  the next ones of the same burst as one line, the recovery as one line; after *k* errors
  in a row the next step waits ``min(interval * 2**(k-1), max(interval, backoff_max))``;
- exceptions in *fatal* end the loop and reach whoever awaits ``run``; a step raises
  ``LoopDone`` to end the loop quietly;
- ``stop`` (or setting the *stop* event given) ends the loop after the step in progress;
  cancelling the task ends it at once.

``LoopRegistry`` holds a process's loops by name: list their state, pause, resume, run one
now, change the interval at run time, stop them all. It also lists the process's thread
pools (``Pool``: the stores' reader pools and writers, the cache writer, the audit thread):
a pool reports to the registry through the object that owns it (``add_pools(provider)``),
so that sqlstore and the services need no role to be seen. ``WorkPool`` is the resizable,
pausable thread pool they run on; ``PoolGauge`` the counters and pause gate of a pool of
one thread that runs its own loop (a group-commit writer). Admins see and steer both
through the ``background`` command (jalien.commands.background_cmds).
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import concurrent.futures
import contextlib
import itertools
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, Protocol

import msgspec

log = logging.getLogger("jalien.loops")

Step = Callable[[], Awaitable[float | None]]
BACKOFF_MAX = 300.0  # seconds: the longest wait after errors, unless the interval is longer


class LoopDone(Exception):
    """Raised by a step: the loop has nothing more to do and ends without an error."""


class LoopState(msgspec.Struct, frozen=True):
    """What a loop says about itself (what an admin will see)."""

    name: str
    interval: float
    paused: bool
    running: bool  # a step is in progress
    stopped: bool
    runs: int  # steps that ended, well or not
    errors: int  # steps that raised, in all
    errors_in_row: int
    last_start: float  # seconds since the epoch; 0: never
    last_duration: float  # seconds the last step took
    last_error: str
    next_run: float  # seconds since the epoch the next step is due; 0: none is


class Loop:
    def __init__(
        self,
        name: str,
        step: Step,
        interval: float,
        *,
        first: float | None = None,
        jitter: float = 0.0,
        backoff_max: float = BACKOFF_MAX,
        stop: asyncio.Event | None = None,
        fatal: tuple[type[BaseException], ...] = (),
        logger: logging.Logger | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if interval < 0 or not 0.0 <= jitter < 1.0:
            raise ValueError(f"loop {name}: interval must be >= 0 and jitter in [0, 1)")
        self.name = name
        self.step = step
        self.interval = float(interval)
        self.jitter = jitter
        self.backoff_max = backoff_max
        self.stop_event = stop if stop is not None else asyncio.Event()
        self.fatal = fatal
        self.log = logger or log
        self.clock = clock
        self.paused = False
        self.running = False
        self.runs = 0
        self.errors = 0
        self.errors_in_row = 0
        self.last_start = 0.0
        self.last_duration = 0.0
        self.last_error = ""
        self.next_run = 0.0
        self._wake = asyncio.Event()
        self._now = False
        self._asked: float | None = first  # the step's own delay (the first: *first*)
        self._draw = 0.0
        self.task: asyncio.Task[None] | None = None

    # -- control (from any task of the same event loop)
    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        self._wake.set()

    def run_now(self) -> None:
        """One step as soon as the step in progress (if any) ends, paused or not."""
        self._now = True
        self._wake.set()

    def set_interval(self, seconds: float) -> None:
        """A new interval, counted from the end of the last step."""
        if seconds < 0:
            raise ValueError(f"loop {self.name}: the interval must be >= 0")
        self.interval = float(seconds)
        self._wake.set()

    def stop(self) -> None:
        self.stop_event.set()
        self._wake.set()

    @property
    def stopped(self) -> bool:
        return self.stop_event.is_set()

    def state(self) -> LoopState:
        return LoopState(
            name=self.name,
            interval=self.interval,
            paused=self.paused,
            running=self.running,
            stopped=self.stopped,
            runs=self.runs,
            errors=self.errors,
            errors_in_row=self.errors_in_row,
            last_start=self.last_start,
            last_duration=self.last_duration,
            last_error=self.last_error,
            next_run=0.0 if self.paused or self.stopped else self.next_run,
        )

    def start(self) -> asyncio.Task[None]:
        self.task = asyncio.get_running_loop().create_task(self.run(), name=f"loop {self.name}")
        return self.task

    # -- the loop
    async def run(self) -> None:
        ended = self.clock()
        while not self.stopped:
            if not await self._wait(ended):
                break
            self._now = False
            if not await self._once():
                break
            ended = self.clock()

    def _delay(self) -> float:
        """Seconds from the end of the last step to the next: the back-off after errors,
        else what the step asked for, else the interval less its jitter."""
        if self.errors_in_row:
            longest = max(self.interval, self.backoff_max)
            return min(self.interval * 2 ** (self.errors_in_row - 1), longest)
        if self._asked is not None:
            return self._asked
        return self.interval * (1.0 - self.jitter * self._draw)

    async def _wait(self, since: float) -> bool:
        """Sleep until the next step is due (re-read after each wake-up: the interval may
        change meanwhile), a run-now or a stop; False when the loop is stopped."""
        while not self.stopped and not self._now:
            if self.paused:
                self.next_run = 0.0
                await self._sleep(None)
                continue
            self.next_run = since + self._delay()
            left = self.next_run - self.clock()
            if left <= 0:
                await asyncio.sleep(0)  # due already: let the other tasks run first
                break
            await self._sleep(left)
        return not self.stopped

    async def _sleep(self, seconds: float | None) -> None:
        self._wake.clear()
        wake = asyncio.ensure_future(self._wake.wait())
        stop = asyncio.ensure_future(self.stop_event.wait())
        try:
            await asyncio.wait({wake, stop}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            wake.cancel()
            stop.cancel()

    async def _once(self) -> bool:
        """One step; False when it ended the loop (``LoopDone``)."""
        self.running = True
        self.last_start = self.clock()
        began = time.monotonic()
        try:
            asked = await self.step()
        except LoopDone:
            return False
        except self.fatal:
            raise
        except Exception as exc:
            self._failed(exc)
        else:
            if self.errors_in_row:
                self.log.info(
                    "%s: working again after %d error(s) in a row", self.name, self.errors_in_row
                )
            self.errors_in_row = 0
            self._asked = None if asked is None else max(0.0, float(asked))
        finally:
            self.running = False
            self.runs += 1
            self.last_duration = time.monotonic() - began
        self._draw = random.random() if self.jitter else 0.0
        return True

    def _failed(self, exc: Exception) -> None:
        self.errors += 1
        self.errors_in_row += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self.errors_in_row == 1:
            if hasattr(exc, "exitcode"):  # an answer (wire.errors.RequestError: a peer said
                # no, the connection to central was lost): its words say it all, no traceback
                self.log.error("%s failed: %s", self.name, exc)
            else:  # a bug: where it happened
                self.log.error("%s failed", self.name, exc_info=exc)
        else:
            self.log.warning(
                "%s failed again (%d in a row): %s", self.name, self.errors_in_row, self.last_error
            )


# -- thread pools


class PoolState(msgspec.Struct, frozen=True):
    """What a thread pool says about itself (what an admin sees)."""

    name: str
    kind: str  # "threads": a WorkPool; "writer": one thread with its own loop
    size: int  # threads it may run
    threads: int  # threads alive now
    paused: bool
    queued: int  # jobs waiting
    active: int  # jobs in progress
    done: int  # jobs that ended, well or not
    errors: int  # jobs that raised
    last_run: float  # seconds since the epoch the last job started; 0: never
    can_pause: bool
    can_resize: bool


class Pool(Protocol):
    """A thread pool as the registry sees it (WorkPool, PoolGauge)."""

    name: str

    def state(self) -> PoolState: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def resize(self, size: int) -> None: ...


class PoolError(ValueError):
    """A control a pool does not take (resizing a writer, pausing the audit thread)."""


class WorkPool(concurrent.futures.Executor):
    """Threads that run submitted jobs, resizable and pausable while they work.

    Threads start on demand up to *size*; a smaller size ends idle threads as they come
    back (a job in progress is never interrupted); paused, queued jobs wait until resumed
    (or until shutdown, which resumes). *on_thread_exit* runs in each thread as it ends
    (a reader pool closes the thread's connection). A drop-in for ThreadPoolExecutor
    (``loop.run_in_executor`` takes it)."""

    def __init__(
        self,
        name: str,
        size: int,
        *,
        on_thread_exit: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if size < 1:
            raise PoolError(f"pool {name}: the size must be >= 1")
        self.name = name
        self.size = size
        self._on_exit = on_thread_exit
        self._clock = clock
        self._cond = threading.Condition()
        self._queue: collections.deque[tuple[concurrent.futures.Future, Callable, tuple, dict]]
        self._queue = collections.deque()
        self._threads: set[threading.Thread] = set()
        self._serial = itertools.count()
        self._idle = 0
        self._active = 0
        self._done = 0
        self._errors = 0
        self._last_run = 0.0
        self._paused = False
        self._closed = False

    def submit(
        self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._cond:
            if self._closed:
                raise RuntimeError(f"pool {self.name} is shut down")
            self._queue.append((future, fn, args, kwargs))
            if not self._paused and self._idle == 0 and len(self._threads) < self.size:
                self._spawn()
            else:
                self._cond.notify()
        return future

    def _spawn(self) -> None:  # under the lock
        thread = threading.Thread(
            target=self._work, name=f"{self.name}_{next(self._serial)}", daemon=True
        )
        self._threads.add(thread)
        thread.start()

    def _grow(self) -> None:  # under the lock: threads for what waits, up to the size
        missing = min(self.size - len(self._threads), len(self._queue) - self._idle)
        for _ in range(max(0, missing)):
            self._spawn()
        self._cond.notify_all()

    def _take(self) -> tuple[concurrent.futures.Future, Callable, tuple, dict] | None:
        """The next job for this thread; None when it is to end."""
        me = threading.current_thread()
        with self._cond:
            self._idle += 1
            try:
                while True:
                    if len(self._threads) > self.size or (self._closed and not self._queue):
                        self._threads.discard(me)
                        return None
                    if self._queue and not self._paused:
                        job = self._queue.popleft()
                        self._active += 1
                        self._last_run = self._clock()
                        return job
                    self._cond.wait()
            finally:
                self._idle -= 1

    def _work(self) -> None:
        try:
            while True:
                job = self._take()
                if job is None:
                    return
                self._run(*job)
                del job  # nothing of the job outlives it here
        finally:
            with self._cond:
                self._threads.discard(threading.current_thread())
            if self._on_exit is not None:
                try:
                    self._on_exit()
                except Exception:
                    log.exception("pool %s: a thread's exit hook failed", self.name)

    def _run(
        self, future: concurrent.futures.Future, fn: Callable, args: tuple, kwargs: dict
    ) -> None:
        """One job, counted before its future is settled (whoever awaits it sees it done)."""
        if not future.set_running_or_notify_cancel():
            self._count(False)
            return
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._count(True)
            future.set_exception(exc)
        else:
            self._count(False)
            future.set_result(result)

    def _count(self, failed: bool) -> None:
        with self._cond:
            self._active -= 1
            self._done += 1
            self._errors += failed

    # -- control (from any thread)
    def pause(self) -> None:
        with self._cond:
            self._paused = True

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._grow()

    def resize(self, size: int) -> None:
        if size < 1:
            raise PoolError(f"pool {self.name}: the size must be >= 1")
        with self._cond:
            self.size = size
            if not self._paused:
                self._grow()
            self._cond.notify_all()  # threads beyond the size end as they come back

    def state(self) -> PoolState:
        with self._cond:
            return PoolState(
                name=self.name,
                kind="threads",
                size=self.size,
                threads=len(self._threads),
                paused=self._paused,
                queued=len(self._queue),
                active=self._active,
                done=self._done,
                errors=self._errors,
                last_run=self._last_run,
                can_pause=True,
                can_resize=True,
            )

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._cond:
            self._closed = True
            self._paused = False
            if cancel_futures:
                while self._queue:
                    self._queue.popleft()[0].cancel()
            self._grow()
            threads = list(self._threads)
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join()


class PoolGauge:
    """The counters and pause gate of a pool that runs its own loop (a writer thread):
    the thread calls ``gate()`` before it takes work, ``began(n)``/``ended(n, errors)``
    around it; *queued* says how many jobs wait. ``release()`` (at stop) opens the gate for
    good, so that a paused writer still drains and ends."""

    def __init__(
        self,
        name: str,
        *,
        queued: Callable[[], int] = lambda: 0,
        threads: int = 1,
        can_pause: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self._queued = queued
        self._threads = threads
        self.can_pause = can_pause
        self._clock = clock
        self._cond = threading.Condition()
        self._paused = False
        self._released = False
        self._held = 0
        self._active = 0
        self._done = 0
        self._errors = 0
        self._last_run = 0.0

    def gate(self, held: int = 0) -> None:
        """In the pool's thread: wait while paused; the *held* jobs it took count as
        queued meanwhile."""
        if self._paused:
            with self._cond:
                self._held = held
                while self._paused and not self._released:
                    self._cond.wait()
                self._held = 0

    def began(self, jobs: int = 1) -> None:
        with self._cond:
            self._active += jobs
            self._last_run = self._clock()

    def ended(self, jobs: int = 1, errors: int = 0) -> None:
        with self._cond:
            self._active -= jobs
            self._done += jobs
            self._errors += errors

    def release(self) -> None:
        with self._cond:
            self._released = True
            self._paused = False
            self._cond.notify_all()

    def pause(self) -> None:
        if not self.can_pause:
            raise PoolError(f"{self.name} cannot be paused")
        with self._cond:
            self._paused = not self._released

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    def resize(self, size: int) -> None:
        raise PoolError(
            f"{self.name} is {self._threads} thread(s) of its own: it has no size to change"
        )

    def state(self) -> PoolState:
        try:
            queued = int(self._queued())
        except Exception:  # a closed queue: nothing waits
            queued = 0
        with self._cond:
            return PoolState(
                name=self.name,
                kind="writer",
                size=self._threads,
                threads=self._threads,
                paused=self._paused,
                queued=queued + self._held,
                active=self._active,
                done=self._done,
                errors=self._errors,
                last_run=self._last_run,
                can_pause=self.can_pause,
                can_resize=False,
            )


class LoopRegistry:
    """A process's loops by name, and its thread pools (one registry per role process)."""

    def __init__(self) -> None:
        self._loops: dict[str, Loop] = {}
        self._pools: list[Callable[[], Iterable[Pool]]] = []

    def add(self, loop: Loop) -> Loop:
        if loop.name in self._loops:
            raise ValueError(f"a loop named {loop.name!r} is already registered")
        self._loops[loop.name] = loop
        return loop

    def start(self, loop: Loop) -> asyncio.Task[None]:
        """Register *loop* and run it in a task of the running event loop."""
        return self.add(loop).start()

    def get(self, name: str) -> Loop:
        try:
            return self._loops[name]
        except KeyError:
            raise KeyError(f"no loop named {name!r}") from None

    def __iter__(self) -> Iterator[Loop]:
        return iter(self._loops.values())

    def __len__(self) -> int:
        return len(self._loops)

    def list(self) -> list[LoopState]:
        return [loop.state() for loop in self._loops.values()]

    def pause(self, name: str) -> None:
        self.get(name).pause()

    def resume(self, name: str) -> None:
        self.get(name).resume()

    def run_now(self, name: str) -> None:
        self.get(name).run_now()

    def set_interval(self, name: str, seconds: float) -> None:
        self.get(name).set_interval(seconds)

    # -- thread pools
    def add_pool(self, pool: Pool) -> Pool:
        """Register one pool that lives as long as the process."""
        self._pools.append(lambda: (pool,))
        return pool

    def add_pools(self, provider: Callable[[], Iterable[Pool]]) -> None:
        """Register an owner's pools: *provider* is asked each time (a store that is not
        started yet has none, a catalogue host added later shows up)."""
        self._pools.append(provider)

    def pools(self) -> builtins.list[Pool]:
        found: dict[str, Pool] = {}
        for provider in self._pools:
            for pool in provider():
                found.setdefault(pool.name, pool)
        return sorted(found.values(), key=lambda p: p.name)

    def pool(self, name: str) -> Pool:
        for pool in self.pools():
            if pool.name == name:
                return pool
        raise KeyError(f"no thread pool named {name!r}")

    def pool_states(self) -> builtins.list[PoolState]:
        return [pool.state() for pool in self.pools()]

    async def stop_all(self, timeout: float = 30.0) -> None:
        """Stop every loop; a step still running after *timeout* seconds is cancelled."""
        for loop in self._loops.values():
            loop.stop()
        tasks = [loop.task for loop in self._loops.values() if loop.task is not None]
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=timeout)
        for task in late:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
