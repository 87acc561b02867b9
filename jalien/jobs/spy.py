"""spy from outside: central asks the JobAgent running a job for its sandbox listing, node
information, stdout, stderr or one of its files, and hands the answer to the job's owner
or an admin (docs/monitoring.md).

The question goes where ``kill`` goes: an ``Event(topic="spy")`` pushed on the connection
that matched the job (through the VoBox, which relays its agents' channels); the agent
answers with ``spyReport`` on the same connection (``wire.monitor_api.SpyReport``). No
level connects into a site. A question waits at most ``timeout`` seconds; at most
``max_pending`` wait at once (beyond: busy), so a silent agent costs nothing lasting.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

from jalien.jobs.service import JobService
from jalien.jobs.states import ACTIVE
from jalien.wire.errors import (
    EXIT_BUSY,
    EXIT_INVALID,
    EXIT_NOT_FOUND,
    EXIT_PERMISSION,
    EXIT_TIMEOUT,
    RequestError,
)
from jalien.wire.messages import Event
from jalien.wire.monitor_api import SPY_TOPIC, SPY_WHATS, SpyReport

log = logging.getLogger("jalien.jobs.spy")


def check_what(what: str) -> str:
    """workdir, nodeinfo, stdout, stderr, or a relative path in the sandbox."""
    if what in SPY_WHATS:
        return what
    if not what or what.startswith("/") or "\x00" in what or ".." in what.split("/"):
        raise RequestError(
            f"spy: {what!r} is neither {'|'.join(SPY_WHATS)} nor a file of the job's sandbox",
            EXIT_INVALID,
        )
    return what


class SpyDesk:
    def __init__(self, jobs: JobService, *, timeout: float = 30.0, max_pending: int = 1000):
        self.jobs = jobs
        self.timeout = timeout
        self.max_pending = max_pending
        self._refs = itertools.count(1)
        # ref -> (job id, the future the answer completes)
        self._pending: dict[int, tuple[int, asyncio.Future[SpyReport]]] = {}
        self.asked = 0
        self.answered = 0
        self.timeouts = 0

    async def ask(self, caller: Any, job_id: int, what: str) -> SpyReport:
        what = check_what(what)
        job = await self.jobs._own(caller, job_id)  # the owner or an admin
        if job.job_state not in ACTIVE:
            raise RequestError(
                f"job {job_id} is {job.job_state.value}: only a running job can be spied on",
                EXIT_NOT_FOUND,
            )
        push = self.jobs._agents.get(job_id)
        if push is None:
            raise RequestError(
                f"job {job_id}: its JobAgent is not connected to this central service",
                EXIT_NOT_FOUND,
            )
        if len(self._pending) >= self.max_pending:
            raise RequestError("spy: too many questions waiting for JobAgents", EXIT_BUSY)
        ref = next(self._refs)
        future: asyncio.Future[SpyReport] = asyncio.get_running_loop().create_future()
        self._pending[ref] = (job_id, future)
        self.asked += 1
        try:
            push(Event(topic=SPY_TOPIC, payload={"queueId": str(job_id), "what": what,
                                                  "ref": str(ref)}))  # fmt: skip
            report = await asyncio.wait_for(future, self.timeout)
        except TimeoutError:
            self.timeouts += 1
            raise RequestError(
                f"job {job_id}: its JobAgent did not answer within {self.timeout:g} s",
                EXIT_TIMEOUT,
            ) from None
        finally:
            self._pending.pop(ref, None)
        if report.error:
            raise RequestError(f"job {job_id}: {report.error}", EXIT_NOT_FOUND)
        return report

    def answer(self, caller: Any, report: SpyReport) -> None:
        """A JobAgent's ``spyReport``: it must come from the agent the job was matched to."""
        waiting = self._pending.get(report.ref)
        if waiting is None:
            log.info("spy report %d for job %d came too late", report.ref, report.queue_id)
            return
        job_id, future = waiting
        matched = self.jobs.matched_by.get(job_id)
        if report.queue_id != job_id or (matched is not None and matched != caller.serial):
            raise RequestError(
                f"Permission denied: spy report {report.ref} is not this JobAgent's",
                EXIT_PERMISSION,
            )
        self.answered += 1
        if not future.done():
            future.set_result(report)
