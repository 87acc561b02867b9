"""A JobAgent's monitoring report to central (docs/monitoring.md): where it runs, its job
and that job's resource use (the monitor's latest sample), its TTL and its recent errors,
sent with ``monitor.report`` on its own connection (``wire.monitor_api``)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from jalien.agent.agent import JobAgent
from jalien.loops import Loop
from jalien.wire.monitor_api import MAX_ERRORS, AgentReport, Usage

log = logging.getLogger("jalien.agent.reports")


class ErrorNotes(logging.Handler):
    """The agent's WARNING and ERROR log lines since the last report (at most MAX_ERRORS)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.lines) < MAX_ERRORS:
            self.lines.append(f"{record.levelname}: {record.getMessage()}"[:500])

    def take(self) -> list[str]:
        lines, self.lines = self.lines, []
        return lines


def agent_report(agent: JobAgent, node: str, errors: list[str]) -> AgentReport:
    current = agent.current
    usage = None
    if current is not None:
        s = current.last_sample
        usage = Usage(cpu=s.cpu, rss=s.rss, pss=s.pss, vms=s.vms, disk=s.disk,
                      processes=s.processes, wall=s.wall)  # fmt: skip
    return AgentReport(
        site=agent.config.site,
        ce=agent.config.ce,
        node=node,
        queue_id=current.job.queue_id if current is not None else 0,
        ttl_left=max(0, int(agent.ttl_left)),
        jobs_done=len(agent.finished),
        usage=usage,
        errors=errors,
    )


def report_loop(
    agent: JobAgent,
    node: str,
    send: Callable[[AgentReport], Awaitable[None]],
    every: float,
    notes: ErrorNotes | None = None,
) -> Loop:
    """``monitor-report``: the agent's report every *every* seconds (the first at once)."""

    async def step() -> None:
        await send(agent_report(agent, node, notes.take() if notes is not None else []))

    return Loop("monitor-report", step, every, first=0, logger=log)
