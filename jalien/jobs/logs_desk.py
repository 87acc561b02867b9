"""Logs on demand (docs/monitoring.md): an admin at central fetches the recent log lines
of a VoBox (``logs vobox CE``) or of the JobAgent running a job (``logs job ID``).

The question goes down the connections that already exist, as ``spy``'s does
(jalien.jobs.spy): an ``Event(topic="logs")`` pushed on the VoBox's own session (the one
its ``monitor.report`` came on: central learns each CE's session from its site reports) or
on the connection that matched the job (through the VoBox, which relays its agents'
channels). The process answers with ``logsReport`` (``wire.monitor_api.LogsReport``) from
its ring of recent lines (jalien.logs.RecentLines). No level connects into a site; a
question waits at most ``timeout`` seconds; at most ``max_pending`` wait at once
(jalien.jobs.questions, shared with spy).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from jalien.jobs.questions import Questions
from jalien.jobs.service import JobService
from jalien.jobs.states import ACTIVE
from jalien.wire.errors import EXIT_INVALID, EXIT_NOT_FOUND, EXIT_PERMISSION, RequestError
from jalien.wire.messages import Event
from jalien.wire.monitor_api import LOGS_TOPIC, MAX_LOG_LINES, LogsReport

log = logging.getLogger("jalien.jobs.logs")


@dataclass
class _Site:
    """A VoBox as central reaches it: its login and the session its reports came on
    (``push``; ``closed`` once the connection went away: commands.session.Session)."""

    login: str
    session: Any


@dataclass
class _Question:
    target: str  # "vobox CE" or "job N", for the messages
    login: str  # who must answer (a VoBox's login), or "" for a job's agent
    queue_id: int


class LogsDesk:
    def __init__(self, jobs: JobService, *, timeout: float = 30.0, max_pending: int = 100):
        self.jobs = jobs
        self.sites: dict[str, _Site] = {}  # CE (upper case) -> its VoBox's session
        self.questions: Questions[_Question, LogsReport] = Questions(timeout, max_pending)

    # -- what central learns from the site reports
    def site_seen(self, ce: str, login: str, session: Any) -> None:
        """A VoBox's report for *ce* came on *session*: logs questions go there."""
        if ce:
            self.sites[ce.upper()] = _Site(login, session)

    # -- the admin's questions
    async def vobox(self, ce: str, lines: int) -> LogsReport:
        site = self.sites.get(ce.upper())
        if site is None or getattr(site.session, "closed", False):
            known = sorted(ce for ce, s in self.sites.items()
                           if not getattr(s.session, "closed", False))  # fmt: skip
            raise RequestError(
                f"logs: no VoBox of CE {ce} is connected to this central service"
                + (f" (connected: {', '.join(known)})" if known else " (none is)"),
                EXIT_NOT_FOUND,
            )
        return await self._ask(f"vobox {ce}", site.login, 0, site.session.push, lines)

    async def job(self, job_id: int, lines: int) -> LogsReport:
        row = await self.jobs.store.get(job_id)  # NoSuchJob: exit 2, "No such job"
        if row.job_state not in ACTIVE:
            raise RequestError(
                f"logs: job {job_id} is {row.job_state.value}: only a running job's JobAgent "
                "can be asked",
                EXIT_NOT_FOUND,
            )
        push = self.jobs._agents.get(job_id)
        if push is None:
            raise RequestError(
                f"logs: job {job_id}: its JobAgent is not connected to this central service",
                EXIT_NOT_FOUND,
            )
        return await self._ask(f"job {job_id}", "", job_id, push, lines)

    async def _ask(
        self, target: str, login: str, queue_id: int, push: Any, lines: int
    ) -> LogsReport:
        if not 0 < lines <= MAX_LOG_LINES:
            raise RequestError(f"logs: -n wants 1..{MAX_LOG_LINES} lines", EXIT_INVALID)

        def send(ref: int) -> None:
            payload = {"ref": str(ref), "lines": str(lines)}
            if queue_id:
                payload["queueId"] = str(queue_id)
            push(Event(topic=LOGS_TOPIC, payload=payload))

        questions = self.questions
        report = await questions.ask(
            _Question(target, login, queue_id),
            send,
            busy="logs: too many questions waiting for answers",
            silent=f"logs: {target} did not answer within {questions.timeout:g} s",
        )
        if report.error:
            raise RequestError(f"logs: {target}: {report.error}", EXIT_NOT_FOUND)
        return report

    def answer(self, caller: Any, report: LogsReport) -> None:
        """A ``logsReport``: it must come from the VoBox or the JobAgent that was asked."""
        question = self.questions.about(report.ref)
        if question is None:
            log.info("logs report %d came too late", report.ref)
            return
        if question.queue_id:
            matched = self.jobs.matched_by.get(question.queue_id)
            mine = report.queue_id == question.queue_id and (
                matched is None or matched == caller.serial
            )
        else:
            mine = not report.queue_id and caller.login == question.login
        if not mine:
            raise RequestError(
                f"Permission denied: logs report {report.ref} is not yours to give",
                EXIT_PERMISSION,
            )
        self.questions.deliver(report.ref, report)
