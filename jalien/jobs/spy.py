"""spy from outside: central asks the JobAgent running a job for its sandbox listing, node
information, stdout, stderr or one of its files, and hands the answer to the job's owner
or an admin (docs/monitoring.md).

The question goes where ``kill`` goes: an ``Event(topic="spy")`` pushed on the connection
that matched the job (through the VoBox, which relays its agents' channels); the agent
answers with ``spyReport`` on the same connection (``wire.monitor_api.SpyReport``). No
level connects into a site. A question waits at most ``timeout`` seconds; at most
``max_pending`` wait at once (beyond: busy), so a silent agent costs nothing lasting
(jalien.jobs.questions, shared with logs).

Several jcentrals (``jobs.routes``): when the agent is connected to another central, the
question goes there as a push (topic "spy", with the asking central's name), that central
pushes it to the agent and sends the agent's report back (topic "spyReport"). Refs start at
a random number per process, so that one central's questions never take another's answers.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any

import msgspec

from jalien.jobs.questions import Questions
from jalien.jobs.routes import Router
from jalien.jobs.service import JobService
from jalien.jobs.states import ACTIVE
from jalien.wire.errors import EXIT_INVALID, EXIT_NOT_FOUND, EXIT_PERMISSION, RequestError
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
        # questions waiting here: ref -> the job asked about
        self.questions: Questions[int, SpyReport] = Questions(timeout, max_pending)
        # questions from other centrals for agents connected here: ref -> (asker, job, when)
        self._relayed: collections.OrderedDict[int, tuple[str, int, float]] = (
            collections.OrderedDict()
        )
        self.router: Router | None = None

    async def ask(self, caller: Any, job_id: int, what: str) -> SpyReport:
        what = check_what(what)
        job = await self.jobs._own(caller, job_id)  # the owner or an admin
        if job.job_state not in ACTIVE:
            raise RequestError(
                f"job {job_id} is {job.job_state.value}: only a running job can be spied on",
                EXIT_NOT_FOUND,
            )
        push = self.jobs._agents.get(job_id)
        if self.router is not None and await self._elsewhere(job_id):
            push = None  # connected to another central now: asked through it
        if push is None and self.router is None:
            raise RequestError(
                f"job {job_id}: its JobAgent is not connected to this central service",
                EXIT_NOT_FOUND,
            )

        async def send(ref: int) -> None:
            question = {"queueId": str(job_id), "what": what, "ref": str(ref)}
            if push is not None:
                push(Event(topic=SPY_TOPIC, payload=question))
            elif not await self._ask_elsewhere(job_id, question):
                raise RequestError(
                    f"job {job_id}: its JobAgent is connected to no central service",
                    EXIT_NOT_FOUND,
                )

        questions = self.questions
        report = await questions.ask(
            job_id,
            send,
            busy="spy: too many questions waiting for JobAgents",
            silent=f"job {job_id}: its JobAgent did not answer within {questions.timeout:g} s",
        )
        if report.error:
            raise RequestError(f"job {job_id}: {report.error}", EXIT_NOT_FOUND)
        return report

    def answer(self, caller: Any, report: SpyReport) -> None:
        """A JobAgent's ``spyReport``: it must come from the agent the job was matched to."""
        asked = self.questions.about(report.ref)
        relayed = self._relayed.get(report.ref) if asked is None else None
        if asked is None and relayed is None:
            log.info("spy report %d for job %d came too late", report.ref, report.queue_id)
            return
        job_id = asked if asked is not None else relayed[1]  # type: ignore[index]
        matched = self.jobs.matched_by.get(job_id)
        if report.queue_id != job_id or (matched is not None and matched != caller.serial):
            raise RequestError(
                f"Permission denied: spy report {report.ref} is not this JobAgent's",
                EXIT_PERMISSION,
            )
        if relayed is not None:  # another central asked: the answer goes back there
            del self._relayed[report.ref]
            self._send_back(relayed[0], report)
            return
        self._deliver(report)

    def _deliver(self, report: SpyReport) -> None:
        if not self.questions.deliver(report.ref, report):
            log.info("spy report %d for job %d came too late", report.ref, report.queue_id)

    # -- several jcentrals (jobs.routes)
    def attach_router(self, router: Router) -> None:
        self.router = router
        router.handlers[SPY_TOPIC] = self._relay
        router.handlers["spyReport"] = self._remote_report

    async def _elsewhere(self, job_id: int) -> bool:
        """Is the job's agent connected to another central (its route names one)?"""
        assert self.router is not None
        try:
            owner = await self.router.routes.owner(job_id)
        except Exception:  # the database away: what this central knows
            return False
        return bool(owner) and owner != self.router.name

    async def _ask_elsewhere(self, job_id: int, question: dict[str, str]) -> bool:
        assert self.router is not None
        return await self.router.send_to_agent(
            job_id, SPY_TOPIC, {**question, "from": self.router.name}
        )

    def _relay(self, job_id: int, payload: dict[str, Any]) -> None:
        """Another central's question for an agent connected here."""
        asker = str(payload.pop("from", ""))
        try:
            ref = int(payload.get("ref", ""))
        except ValueError:
            return
        push = self.jobs._agents.get(job_id)
        if push is None:  # gone meanwhile: the asker hears it now, not at its timeout
            error = "its JobAgent is not connected to a central service now"
            report = SpyReport(ref=ref, queue_id=job_id, what=str(payload.get("what", "")),
                               error=error)  # fmt: skip
            self._send_back(asker, report)
            return
        now = time.monotonic()
        self._relayed[ref] = (asker, job_id, now)
        while self._relayed and (
            len(self._relayed) > self.questions.max_pending
            or next(iter(self._relayed.values()))[2] < now - 2 * self.questions.timeout
        ):
            self._relayed.popitem(last=False)
        push(Event(topic=SPY_TOPIC, payload=payload))

    def _send_back(self, asker: str, report: SpyReport) -> None:
        if self.router is None or not asker:
            return
        body = msgspec.to_builtins(report)
        task = asyncio.ensure_future(
            self.router.send_to_central(asker, report.queue_id, "spyReport", body)
        )
        task.add_done_callback(_log_failure)

    def _remote_report(self, job_id: int, payload: dict[str, Any]) -> None:
        try:
            report = msgspec.convert(payload, SpyReport)
        except msgspec.ValidationError as exc:
            log.info("spy report from another central for job %d: %s", job_id, exc)
            return
        self._deliver(report)


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("spy report not sent back: %s", task.exception())
