"""Central's watchdog for jobs whose JobAgent went silent (killed -9, node lost, network cut).

An agent sends ``jobHeartbeat`` (or a state change) at least every monitoring interval.
A job that has heard nothing for ``heartbeat_timeout`` is handled by what it had reached:

- ASSIGNED, STARTED, RUNNING, SAVING -> ZOMBIE (the agent may still come back: ZOMBIE ->
  RUNNING/SAVING is a legal move, see ``jobs.states``);
- SAVED -> DONE: its outputs were uploaded and registered before the agent vanished, so
  nothing is lost by finishing it;
- a ZOMBIE silent for ``zombie_timeout`` after it was declared one (its heartbeat is
  stamped with that moment) is put back to WAITING while it has
  resubmissions left (``max_resubmits``), else it ends EXPIRED.

Every move is an ordinary checked transition with ``expect=`` the state it was read in,
so a heartbeat or a kill that races with a sweep wins cleanly.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from jalien.jobs.queue import JobRow
from jalien.jobs.service import JobService
from jalien.jobs.states import ACTIVE, JobState
from jalien.loops import Loop
from jalien.wire.errors import RequestError

log = logging.getLogger("jalien.jobs.watchdog")
S = JobState
BATCH = 1000  # jobs per state group and sweep; the next sweep takes the rest


@dataclass
class SweepReport:
    zombies: list[int] = field(default_factory=list)
    finished: list[int] = field(default_factory=list)
    requeued: list[int] = field(default_factory=list)
    expired: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.zombies or self.finished or self.requeued or self.expired)


class Watchdog:
    def __init__(
        self,
        jobs: JobService,
        *,
        heartbeat_timeout: float = 600.0,
        zombie_timeout: float = 600.0,
        max_resubmits: int = 1,
    ) -> None:
        self.jobs = jobs
        self.heartbeat_timeout = heartbeat_timeout
        self.zombie_timeout = zombie_timeout
        self.max_resubmits = max_resubmits

    async def sweep(self, now: float | None = None) -> SweepReport:
        """One pass over the silent jobs; *now* in seconds since the epoch (tests)."""
        now_ms = int((time.time() if now is None else now) * 1000)
        silent = now_ms - int(self.heartbeat_timeout * 1000)
        lost = now_ms - int(self.zombie_timeout * 1000)
        report = SweepReport()
        for job in await self._silent(frozenset({S.ZOMBIE}), lost):
            if job.resubmits < self.max_resubmits:
                try:
                    await self.jobs.requeue(job, "requeued: its JobAgent was lost")
                except RequestError as exc:  # moved meanwhile: its agent is back
                    log.info("job %d: not requeued: %s", job.id, exc)
                    continue
                report.requeued.append(job.id)
            elif await self._move(job, S.EXPIRED, "its JobAgent was lost"):
                report.expired.append(job.id)
        for job in await self._silent(ACTIVE, silent):
            quiet = self._quiet(job, now_ms)
            if await self._move(job, S.ZOMBIE, quiet, {"heartbeat": now_ms}):
                report.zombies.append(job.id)
        for job in await self._silent(frozenset({S.SAVED}), silent):
            if await self._move(job, S.DONE, "outputs saved; the agent did not finish it"):
                report.finished.append(job.id)
        if report:
            log.warning(
                "watchdog: %d zombie, %d finished, %d requeued, %d expired",
                len(report.zombies),
                len(report.finished),
                len(report.requeued),
                len(report.expired),
            )
        return report

    def loop(self, interval: float = 60.0) -> Loop:
        """Sweeps every *interval* seconds (the first after one interval); a failed sweep
        is logged and retried with back-off (jalien.loops)."""

        async def step() -> None:
            await self.sweep()

        return Loop("job-watchdog", step, interval, jitter=0.1, logger=log)

    async def _silent(self, states: frozenset[JobState], before_ms: int) -> list[JobRow]:
        return await self.jobs.store.query(states=states, silent_since=before_ms, limit=BATCH)

    async def _move(
        self, job: JobRow, state: JobState, message: str, fields: dict[str, int] | None = None
    ) -> bool:
        try:
            await self.jobs.force_state(
                job.id, state, expect=frozenset({job.job_state}), message=message, fields=fields
            )
        except RequestError as exc:
            log.info("job %d: %s -> %s skipped: %s", job.id, job.state, state.value, exc)
            return False
        return True

    @staticmethod
    def _quiet(job: JobRow, now_ms: int) -> str:
        return f"no heartbeat from its JobAgent for {(now_ms - job.heartbeat) // 1000} s"
