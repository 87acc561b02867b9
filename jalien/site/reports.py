"""A VoBox's monitoring report to central (docs/monitoring.md): its slots, its agents in the
batch system, the waiting jobs central has for it, what it submitted and its last error,
sent with ``monitor.report`` on the connection it already has (``wire.monitor_api``)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from jalien.loops import Loop
from jalien.site.vobox import VoBoxLoop
from jalien.wire.monitor_api import SiteReport

log = logging.getLogger("jalien.site.reports")


def site_report(loop: VoBoxLoop, errors: list[str]) -> SiteReport:
    last = loop.last
    return SiteReport(
        site=loop.agent.site,
        ce=loop.agent.ce,
        batch=loop.batch.name,
        max_running=loop.options.max_running,
        max_queued=loop.options.max_queued,
        running=last.running if last else 0,
        queued=last.queued if last else 0,
        starting=last.starting if last else 0,
        waiting=last.waiting if last else -1,
        submitted_total=loop.submitted_total,
        cycles=loop.cycles,
        errors=errors,
    )


def report_loop(
    loop: VoBoxLoop, send: Callable[[SiteReport], Awaitable[None]], every: float
) -> Loop:
    """``monitor-report``: the site's report every *every* seconds; a cycle's error is
    reported once (the next report carries only newer ones)."""
    said = {"error": ""}

    async def step() -> None:
        last = loop.last
        error = last.error if last is not None else ""
        errors = [error] if error and error != said["error"] else []
        await send(site_report(loop, errors))
        said["error"] = error

    return Loop("monitor-report", step, every, first=min(every, 1.0), logger=log)
