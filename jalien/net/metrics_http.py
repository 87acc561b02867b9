"""The metrics endpoint of a process: ``GET /metrics`` in the Prometheus text format on the
small loopback HTTP server (``net.http``). Plain HTTP is for loopback only (a node's own
Prometheus agent or exporter); from elsewhere an admin reads jcentral's metrics over its
client-certificate HTTPS port (docs/monitoring.md)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable

from jalien.config import ConfigError
from jalien.metrics import CONTENT_TYPE, Metrics
from jalien.net.http import HttpRequest, HttpResponse, HttpServer
from jalien.net.peers import is_loopback

log = logging.getLogger("jalien.net.metrics")


class MetricsEndpoint:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if request.path.rstrip("/") != "/metrics":
            return HttpResponse(404, b"only /metrics here\n")
        if request.method not in ("GET", "HEAD"):
            return HttpResponse(405, b"GET /metrics\n")
        return self._answer()

    async def _answer(self) -> HttpResponse:
        return HttpResponse(200, await self.metrics.exposition(), CONTENT_TYPE)


async def serve_metrics(metrics: Metrics, hosts: list[str], port: int) -> HttpServer | None:
    """``/metrics`` on *port* of every loopback *host* (port -1: none; 0: any free port,
    logged). A port taken by another process costs a warning, not the start."""
    if port < 0:
        return None
    outside = [host for host in hosts if not is_loopback(host)]
    if outside:
        raise ConfigError(
            f"metrics_listen {outside}: plain HTTP metrics listen on loopback only "
            "(jcentral's HTTPS port serves them to admins with a certificate)"
        )
    server = HttpServer(MetricsEndpoint(metrics))
    try:
        await server.start(hosts, port)
    except OSError as exc:
        log.warning("metrics not served on port %d: %s", port, exc.strerror)
        await server.close()
        return None
    log.info("%s metrics on http://%s:%d/metrics", metrics.level, hosts[0], server.port())
    return server
