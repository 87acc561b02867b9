"""What each role shows in its metrics (``jalien.metrics``, docs/monitoring.md): the sources
are read from the objects the role already has, at scrape time; only the request counters
are kept on the request path (``AuditLog.requests``)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from jalien._fast import reqstats
from jalien.agent.agent import JobAgent
from jalien.cache.store import CacheStore
from jalien.config import Settings
from jalien.jobs.service import JobService
from jalien.loops import LoopRegistry
from jalien.metrics import Metrics, Sample
from jalien.net.http import HttpServer
from jalien.net.metrics_http import serve_metrics
from jalien.net.proxy import TTLReplyCache
from jalien.net.server import Server
from jalien.site.vobox import VoBoxLoop

log = logging.getLogger("jalien.metrics")


def server_metrics(metrics: Metrics, server: Server, *, count_requests: bool = True) -> None:
    """Requests (counted by the server's audit log), connections, requests in flight,
    busy answers, compression, the audit log's dropped lines."""
    if count_requests:
        server.audit.requests = request_counter(metrics)
    metrics.gauge("jalien_connections", "Open client connections", lambda: server.connection_count)
    metrics.gauge(
        "jalien_requests_in_flight",
        "Requests being answered",
        lambda: sum(server.in_flight.counts.values()),
    )
    metrics.counter(
        "jalien_busy_replies", "Requests answered busy (exit 11)", lambda: server.busy_replies
    )
    metrics.counter(
        "jalien_deflated_messages",
        "WebSocket messages sent compressed",
        lambda: server.deflate_stats.messages,
    )
    metrics.counter(
        "jalien_audit_dropped", "Audit lines dropped (disk behind)", lambda: server.audit.dropped
    )


def reply_cache_metrics(metrics: Metrics, cache: TTLReplyCache) -> None:
    """A level's reply cache (jBox, VoBox)."""
    metrics.counter("jalien_reply_cache_hits", "Replies from the cache", lambda: cache.hits)
    metrics.counter("jalien_reply_cache_misses", "Replies asked upstream", lambda: cache.misses)


def cache_metrics(metrics: Metrics, store: CacheStore) -> None:
    """The shared LMDB cache: this process's counters, sizes of the shared file."""
    fields = ("hits", "misses", "expired", "sets", "evictions", "invalidated")

    def read(field: str) -> list[Sample]:
        return [((ns.name,), float(getattr(ns, field))) for ns in store.stats()]

    for field in fields:
        metrics.add(
            f"jalien_cache_{field}",
            f"Shared cache {field} by namespace (this process)",
            lambda f=field: read(f),  # type: ignore[misc]
            labels=("namespace",),
            kind="counter",
        )
    metrics.add("jalien_cache_entries", "Entries in the shared cache by namespace",
                lambda: read("entries"), labels=("namespace",))  # fmt: skip
    metrics.add("jalien_cache_bytes", "Bytes of the shared cache by namespace",
                lambda: read("bytes"), labels=("namespace",))  # fmt: skip


class JobCounts:
    """Jobs by state from the task queue, re-read before each scrape (one GROUP BY)."""

    def __init__(self, jobs: JobService) -> None:
        self.jobs = jobs
        self.by_state: dict[str, int] = {}

    async def refresh(self) -> None:
        self.by_state = await self.jobs.store.summary()

    def samples(self) -> list[Sample]:
        return [((str(state),), float(count)) for state, count in sorted(self.by_state.items())]


def jobs_metrics(metrics: Metrics, jobs: JobService) -> JobCounts:
    counts = JobCounts(jobs)
    metrics.refresh(counts.refresh)
    metrics.add("jalien_jobs", "Jobs in the task queue by state", counts.samples,
                labels=("state",))  # fmt: skip
    metrics.gauge("jalien_broker_waiting", "Waiting jobs in the broker's buckets",
                  lambda: len(jobs.broker))  # fmt: skip
    metrics.gauge("jalien_jobs_live", "Jobs whose tokens work (live jobs)",
                  lambda: len(jobs.live))  # fmt: skip
    return counts


def request_counter(metrics: Metrics) -> reqstats.RequestCounter:
    """The request counters of the role (made by ``role_metrics``)."""
    counter = metrics.requests
    assert isinstance(counter, reqstats.RequestCounter), "made by role_metrics"
    return counter


def role_metrics(level: str, loops: LoopRegistry | None = None) -> Metrics:
    metrics = Metrics(level, requests=reqstats.RequestCounter())
    if loops is not None:
        metrics.loops(loops)
    return metrics


async def start_metrics(settings: Settings, metrics: Metrics) -> HttpServer | None:
    """GET /metrics on loopback (metrics_port; -1: none)."""
    return await serve_metrics(metrics, settings.metrics_listen, settings.metrics_port)


def central_metrics(
    settings: Settings,
    server: Server,
    jobs: JobService,
    cache: CacheStore | None,
    loops: LoopRegistry,
) -> Metrics:
    """jcentral's metrics: requests, connections, jobs, the shared cache, its loops and
    ``metrics.transfers`` (the hook the data movers count into)."""
    metrics = role_metrics("jcentral", loops)
    server_metrics(metrics, server, count_requests=settings.metrics_requests)
    jobs_metrics(metrics, jobs)
    if cache is not None:
        cache_metrics(metrics, cache)
    return metrics


def vobox_metrics(metrics: Metrics, loop: VoBoxLoop) -> None:
    """A VoBox's site: its agents in the batch system as its last cycle counted them,
    the waiting jobs central has for it, the slots it may fill, what it submitted."""

    def last(field: str) -> Callable[[], float]:
        return lambda: float(getattr(loop.last, field)) if loop.last is not None else 0.0

    metrics.gauge("jalien_vobox_agents_running", "JobAgents running", last("running"))
    metrics.gauge("jalien_vobox_agents_queued", "JobAgents queued in the batch system",
                  last("queued"))  # fmt: skip
    metrics.gauge("jalien_vobox_agents_starting", "JobAgents started, no job yet",
                  last("starting"))  # fmt: skip
    metrics.gauge("jalien_vobox_waiting_jobs", "Jobs central has for this CE (-1: no answer)",
                  last("waiting"))  # fmt: skip
    metrics.gauge("jalien_vobox_max_running", "Slots: the most JobAgents at once",
                  lambda: loop.options.max_running)  # fmt: skip
    metrics.counter("jalien_vobox_submitted", "JobAgents submitted", lambda: loop.submitted_total)
    metrics.counter("jalien_vobox_cycles", "Cycles of the site loop", lambda: loop.cycles)
    metrics.gauge("jalien_vobox_cycle_error", "1 when the last cycle failed",
                  lambda: float(bool(loop.last and loop.last.error)))  # fmt: skip


def jobagent_metrics(metrics: Metrics, agent: JobAgent) -> None:
    """A JobAgent: its jobs, its TTL, its job loop, and the payload's resource use (the
    monitor's latest sample of the job running now)."""
    metrics.counter("jalien_jobagent_jobs", "Jobs this JobAgent ran to their end",
                    lambda: len(agent.finished))  # fmt: skip
    metrics.gauge("jalien_jobagent_ttl_left_seconds", "Seconds this JobAgent may still live",
                  lambda: max(0.0, agent.ttl_left))  # fmt: skip
    metrics.gauge("jalien_jobagent_job", "The job running now (0: none)",
                  lambda: float(agent.current.job.queue_id) if agent.current else 0.0)  # fmt: skip

    def payload() -> list[Sample]:
        current = agent.current
        if current is None:
            return []
        s = current.last_sample
        return [(("cpu_seconds",), s.cpu), (("rss_bytes",), float(s.rss)),
                (("pss_bytes",), float(s.pss)), (("vms_bytes",), float(s.vms)),
                (("disk_bytes",), float(s.disk)), (("processes",), float(s.processes)),
                (("wall_seconds",), s.wall)]  # fmt: skip

    metrics.add("jalien_jobagent_payload", "The running payload's resource use", payload,
                labels=("resource",))  # fmt: skip

    def loop_state() -> list[Sample]:
        loop = agent.loop
        if loop is None:
            return []
        state = loop.state()
        return [(("runs",), float(state.runs)), (("errors",), float(state.errors))]

    metrics.add("jalien_jobagent_loop", "The job loop's steps and errors", loop_state,
                labels=("count",), kind="counter")  # fmt: skip
