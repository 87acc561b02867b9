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
now, change the interval at run time, stop them all. A later issue exposes it to admins;
nothing here listens on the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator

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
            self.log.error("%s failed", self.name, exc_info=exc)
        else:
            self.log.warning(
                "%s failed again (%d in a row): %s", self.name, self.errors_in_row, self.last_error
            )


class LoopRegistry:
    """A process's loops by name (one registry per role process)."""

    def __init__(self) -> None:
        self._loops: dict[str, Loop] = {}

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
