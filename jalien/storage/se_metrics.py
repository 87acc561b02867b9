"""The embedded SE's metrics (``jalien.metrics``): requests by method and status class with
their latency, bytes in and out, refusals and errors, and the space of its file system.
Counted by an aiohttp middleware added before the SE starts (``instrument``)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from jalien.metrics import Metrics, Sample
from jalien.storage.se_server import StorageServer

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class SEStats:
    def __init__(self, root: Any) -> None:
        self.root = root
        # (method, status) -> [count, seconds, bytes in, bytes out]
        self.by: dict[tuple[str, str], list[float]] = {}

    def count(self, method: str, status: int, seconds: float, got: int, sent: int) -> None:
        key = (method, str(status))
        row = self.by.setdefault(key, [0, 0.0, 0, 0])
        row[0] += 1
        row[1] += seconds
        row[2] += got
        row[3] += sent

    def column(self, index: int) -> list[Sample]:
        return [(key, float(row[index])) for key, row in sorted(self.by.items())]

    def errors(self) -> list[Sample]:
        out: dict[str, float] = {}
        for (method, status), row in self.by.items():
            if int(status) >= 400:
                out[method] = out.get(method, 0.0) + row[0]
        return [((method,), n) for method, n in sorted(out.items())]

    def space(self) -> list[Sample]:
        try:
            usage = shutil.disk_usage(self.root)  # one statvfs
        except OSError:
            return []
        return [(("total",), float(usage.total)), (("used",), float(usage.used)),
                (("free",), float(usage.free))]  # fmt: skip

    def middleware(self) -> Any:
        @web.middleware
        async def counted(request: web.Request, handler: Handler) -> web.StreamResponse:
            started = time.perf_counter()
            status, sent = 500, 0
            try:
                response = await handler(request)
                status = response.status
                sent = response.body_length if response.prepared else 0
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            finally:
                self.count(
                    request.method,
                    status,
                    time.perf_counter() - started,
                    request.content_length or 0,
                    sent,
                )

        return counted


def instrument(server: StorageServer, metrics: Metrics) -> SEStats:
    """Count the SE's requests into *metrics* (before ``server.start``)."""
    stats = SEStats(server.root)
    server.app.middlewares.append(stats.middleware())
    labels = ("method", "status")
    metrics.add("jalien_se_requests", "SE requests by method and HTTP status",
                lambda: stats.column(0), labels=labels, kind="counter")  # fmt: skip
    metrics.add("jalien_se_request_seconds", "Seconds spent answering SE requests",
                lambda: stats.column(1), labels=labels, kind="counter")  # fmt: skip
    metrics.add("jalien_se_received_bytes", "Bytes uploaded to the SE",
                lambda: stats.column(2), labels=labels, kind="counter")  # fmt: skip
    metrics.add("jalien_se_sent_bytes", "Bytes downloaded from the SE",
                lambda: stats.column(3), labels=labels, kind="counter")  # fmt: skip
    metrics.add("jalien_se_errors", "SE requests answered 4xx/5xx, by method",
                stats.errors, labels=("method",), kind="counter")  # fmt: skip
    metrics.add("jalien_se_space_bytes", "The SE file system's space",
                stats.space, labels=("kind",))  # fmt: skip
    return stats
