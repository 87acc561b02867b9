"""The site side of logs on demand (docs/monitoring.md): a VoBox or a JobAgent answers
central's ``logs`` question (an Event pushed on its connection) with ``logsReport``: the
last lines of its ring (jalien.logs.RecentLines), bounded by wire.monitor_api."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from jalien import logs
from jalien.wire import monitor_api
from jalien.wire.errors import RequestError
from jalien.wire.messages import Reply, Request

log = logging.getLogger("jalien.net.logs")


class Upstream(Protocol):
    async def request(self, request: Request, *, timeout: float | None = ...) -> Reply: ...


def report_for(payload: Any, ce: str = "") -> monitor_api.LogsReport | None:
    """The answer to the question *payload* (None when it is no question)."""
    payload = payload if isinstance(payload, dict) else {}
    try:
        ref, count = int(payload.get("ref", "")), int(payload.get("lines", "100"))
        queue_id = int(payload.get("queueId", "0"))
    except ValueError:
        log.info("logs question without ref: %s", payload)
        return None
    ring = logs.recent()
    lines = ring.tail(count) if ring is not None else []
    total = ring.total if ring is not None else 0
    return monitor_api.logs_report(ref, lines, total, queue_id=queue_id, ce=ce)


async def answer(upstream: Upstream, payload: Any, ce: str = "") -> None:
    """Send ``logsReport`` for central's question *payload* on *upstream*."""
    report = report_for(payload, ce)
    if report is None:
        return
    request = Request(command="logsReport", data=[monitor_api.encode(report)])
    try:
        reply = await upstream.request(request, timeout=30)
    except RequestError as exc:
        log.info("logs report not delivered: %s", exc)
        return
    if reply.exitcode:
        log.info("logs report refused: %s", reply.error)
