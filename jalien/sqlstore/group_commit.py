"""The one group-commit writer: operations queued by any thread, applied by one writer
thread in batches (everything queued when it wakes, up to ``max_batch``, in one
transaction), each caller acknowledged only once its batch committed.

Every store with a single writer uses it: SQLite (``sqlstore.sqlite``), each MariaDB
server (``sqlstore.mysql``: the catalogue's shards and the task queue) and the LMDB cache
(``cache.store``). What differs is the transaction body only (savepoints, deadlock retries,
LMDB's write transaction); the queue, the batching, the stop, the admin's gauge and the
settling of futures are here.

- ``GroupCommit[Op]``: the queue of typed operations; ``take(timeout)`` is one batch (and
  whether the writer was asked to stop: the operations queued before the stop are in it);
  ``JobWriter.serve(apply)`` is the SQL writers' loop (``WriteJob``: a function run on the
  store's connection, and its future). The cache drives ``take`` itself (it also wakes up to move
  hits and sweep, never when idle).
- ``settle``: the outcome to a caller's future; one who gave up is skipped (the writer
  thread must not die of it).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import queue
from collections.abc import Callable
from typing import Any, Generic, NamedTuple, TypeVar

from jalien.loops import PoolGauge

Op = TypeVar("Op")
Outcome = tuple[Any, BaseException | None]  # a value or an error, per operation


class WriteJob(NamedTuple):
    """An SQL store's operation: *fn* runs on the writer's connection (or what a subclass
    hands it), *extra* is what a subclass needs beside it (the catalogue's GUID refs)."""

    fn: Callable[[Any], Any]
    extra: Any
    future: concurrent.futures.Future[Any]


def settle(
    future: concurrent.futures.Future[Any], value: Any, error: BaseException | None = None
) -> None:
    """The outcome to whoever waits; one who gave up (a cancelled request) is skipped."""
    if future.cancelled():
        return
    with contextlib.suppress(concurrent.futures.InvalidStateError):  # cancelled meanwhile
        if error is None:
            future.set_result(value)
        else:
            future.set_exception(error)


class GroupCommit(Generic[Op]):
    """See the module docstring. The gauge shows the queue to admins; with *can_pause* an
    admin may hold the writer (``serve`` waits before each batch)."""

    def __init__(self, name: str, max_batch: int = 1000, *, can_pause: bool = True) -> None:
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[Op | None] = queue.SimpleQueue()
        self.gauge = PoolGauge(name, queued=self._queue.qsize, can_pause=can_pause)

    def put(self, op: Op) -> None:
        self._queue.put(op)

    def stop(self) -> None:
        """The writer ends after what is queued now (a paused one drains it first)."""
        self.gauge.release()
        self._queue.put(None)

    def qsize(self) -> int:
        return self._queue.qsize()

    def empty(self) -> bool:
        return self._queue.empty()

    def take(self, timeout: float | None = None, *, gated: bool = False) -> tuple[list[Op], bool]:
        """The next batch: wait up to *timeout* s for a first operation (None: as long as
        it takes, 0: not at all), then (*gated*: once an admin's pause is over) take what
        is queued, up to ``max_batch``. The flag says the writer was asked to stop (after
        this batch)."""
        get = self._queue.get_nowait
        try:
            first = get() if timeout == 0 else self._queue.get(timeout=timeout)
        except queue.Empty:
            return [], False
        if first is None:
            return [], True
        if gated:
            self.gauge.gate(held=1)  # an admin paused the writer: the batch waits
        batch = [first]
        while len(batch) < self.max_batch:
            try:
                op = get()
            except queue.Empty:
                break
            if op is None:
                return batch, True
            batch.append(op)
        return batch, False


class JobWriter(GroupCommit[WriteJob]):
    """The queue of an SQL store's writer thread: functions run on its connection."""

    def submit(self, fn: Callable[[Any], Any], extra: Any = None) -> concurrent.futures.Future[Any]:
        """Queue *fn*; its future is settled once its batch committed."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.put(WriteJob(fn, extra, future))
        return future

    def serve(self, apply: Callable[[list[WriteJob]], list[Outcome]]) -> None:
        """The writer thread's loop: each batch through *apply* (one outcome per job, in
        order), acknowledged once it returns; until ``stop``."""
        while True:
            batch, stopped = self.take(gated=True)
            if batch:
                self.gauge.began(len(batch))
                try:
                    outcomes = apply(batch)
                except BaseException as exc:
                    outcomes = [(None, exc)] * len(batch)
                self.gauge.ended(len(batch), sum(error is not None for _, error in outcomes))
                for job, (value, error) in zip(batch, outcomes, strict=True):
                    settle(job.future, value, error)
            if stopped:
                return
