"""The broker as a cache of the task queue: what other processes (other jcentrals, other
workers of this host) submitted, requeued, claimed or killed reaches this process's broker.

The database decides every match (``TaskQueue.claim``), so a stale broker costs only a
retry: a job claimed elsewhere fails its claim here and leaves the buckets. What the feed
adds is jobs this process did not see enter WAITING:

- ``refill`` (every ``broker_refill`` seconds): WAITING rows with an id above a mark. Ids
  are not committed in their order (Galera nodes interleave their AUTO_INCREMENT values,
  a large submission commits after a small one), so the mark stays ``straggle`` seconds
  behind the highest id seen and the rows already in the broker are skipped: a job whose
  commit lags its id by less than that is still found by the next refill.
- ``resync`` (every ``broker_resync`` seconds): every WAITING id against the buckets; jobs
  missing (requeued elsewhere, later than the straggle) are added, jobs gone (matched or
  killed elsewhere) dropped; the users' running counts (fair share) are read again.

At start the service fills the broker from the whole queue (``JobService.start``), so a
restarted jcentral's broker is the database's WAITING set again.
"""

from __future__ import annotations

import collections
import logging
import time

from jalien.jobs.broker import Broker
from jalien.jobs.queue import TaskQueue
from jalien.loops import Loop

log = logging.getLogger("jalien.jobs.feed")
REFILL_ROWS = 5000  # rows per refill query (the next one goes on from there)
MISS_EVERY = 0.05  # seconds between two refills at a miss (refill_new)


class BrokerFeed:
    def __init__(
        self, store: TaskQueue, broker: Broker, *, high: int = 0, straggle: float = 10.0
    ) -> None:
        self.store = store
        self.broker = broker
        self.straggle = straggle
        self.high = high  # the highest job id seen WAITING (start: the broker's highest)
        self._marks: collections.deque[tuple[float, int]] = collections.deque()
        self.added = 0  # jobs this feed put into the broker (metrics, tests)
        self._missed_at = -MISS_EVERY
        self.dropped = 0

    def seen(self, job_id: int) -> None:
        """A job id this process saw (its own submissions, the start-up fill)."""
        self.high = max(self.high, job_id)

    def _mark(self) -> int:
        """The id to refill from: the highest seen ``straggle`` seconds ago."""
        now = time.monotonic()
        self._marks.append((now, self.high))
        mark = self._marks[0][1]
        while len(self._marks) > 1 and now - self._marks[1][0] >= self.straggle:
            self._marks.popleft()
            mark = self._marks[0][1]
        return mark

    async def refill(self) -> int:
        """Add WAITING jobs above the mark that the broker lacks; how many."""
        after, added = self._mark(), 0
        while True:  # ids first (what it knows costs no row), then the rows it lacks
            ids = await self.store.waiting_ids_after(after, REFILL_ROWS)
            for row in await self.store.waiting_rows([i for i in ids if i not in self.broker]):
                added += self.broker.add(row)
            if ids:
                self.high = max(self.high, ids[-1])
            if len(ids) < REFILL_ROWS:
                break
            after = ids[-1]
        self.added += added
        return added

    async def refill_new(self) -> int:
        """At a miss (an agent found nothing in the broker): one page of the WAITING jobs
        above the highest id seen, at most once per ``MISS_EVERY`` seconds, so that a job
        another process (a worker of this host) just queued is matched now rather than
        after the next refill. One indexed query, empty when nothing is new."""
        now = time.monotonic()
        if now - self._missed_at < MISS_EVERY:
            return 0
        self._missed_at = now
        ids = await self.store.waiting_ids_after(self.high, REFILL_ROWS)
        added = 0
        for row in await self.store.waiting_rows([i for i in ids if i not in self.broker]):
            added += self.broker.add(row)
        if ids:
            self.high = max(self.high, ids[-1])
        self.added += added
        return added

    async def resync(self) -> tuple[int, int]:
        """The broker's jobs made the database's WAITING set; (added, dropped)."""
        # the broker's ids first: a job submitted here meanwhile is in the database's answer
        # (it committed before it entered the broker), not among the ones to drop
        have = self.broker.ids()
        waiting = set(await self.store.waiting_ids())
        gone = have - waiting
        for job_id in gone:
            self.broker.discard(job_id)
        missing = sorted(waiting - have)
        added = 0
        for row in await self.store.waiting_rows(missing):
            added += self.broker.add(row)
            self.high = max(self.high, row.id)
        running = await self.store.active_by_user()
        self.broker.running.clear()
        self.broker.running.update(running)
        self.added += added
        self.dropped += len(gone)
        if added or gone:
            log.info("broker resync: %d jobs added, %d dropped", added, len(gone))
        return added, len(gone)

    def loop(self, refill: float, resync: float) -> Loop:
        """The ``broker-refill`` loop: a refill every *refill* seconds, a resync every
        *resync* seconds (the broker was filled from the whole queue at start)."""
        last = [time.monotonic()]

        async def step() -> None:
            now = time.monotonic()
            if now - last[0] >= resync:
                last[0] = now
                await self.resync()
            else:
                await self.refill()

        return Loop("broker-refill", step, refill, jitter=0.1, logger=log)
