"""Metrics of one process, in the Prometheus text format (docs/monitoring.md).

Every role process makes one ``Metrics`` (no global default registry: each has its own
``prometheus_client.CollectorRegistry``) and hands it to what it composes. Two kinds of
sources, both cheap where it matters:

- the request path counts into ``jalien._fast.reqstats.RequestCounter`` (a Cython twin: a
  dict lookup and three C increments per request); the histogram is built from those
  counters only when someone scrapes;
- everything else is *read* at scrape time from the objects that already keep it
  (connections, cache counters, loop states, queue lengths, jobs by state): a source is a
  callable returning ``(label values, value)`` pairs, registered once by the role. Sources
  that must wait (a database query) are ``refresh`` coroutines run before each scrape.

prometheus_client is used for what a well-kept client library does: the exposition format,
its escaping and its types, and the process collector (CPU, memory, file descriptors).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from jalien.loops import LoopRegistry
from jalien.version import __version__

log = logging.getLogger("jalien.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# seconds: from an inline cache hit to a long find (jalien/_fast/constants.py has the same
# numbers for the counters; base may not import _fast, tests/test_metrics.py compares them)
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
           1.0, 2.5, 5.0, 10.0, 30.0)  # fmt: skip

Sample = tuple[tuple[str, ...], float]
Source = Callable[[], Iterable[Sample]]


class RequestSource(Protocol):
    """The request counters of the hot path (``jalien._fast.reqstats.RequestCounter``,
    fed by ``net.audit.AuditLog.record``): read here only when someone scrapes."""

    def snapshot(self) -> dict[str, tuple[list[int], float, int]]: ...


def request_families(source: RequestSource, prefix: str = "jalien") -> Iterator[Metric]:
    latency = HistogramMetricFamily(
        f"{prefix}_request_duration_seconds",
        "Requests answered, by command: time from arrival to the answer leaving",
        labels=["command"],
    )
    failed = CounterMetricFamily(
        f"{prefix}_request_failures",
        "Requests answered with a non-zero exit code, by command",
        labels=["command"],
    )
    for command, (counts, total, failures) in sorted(source.snapshot().items()):
        running, buckets = 0, []
        for bound, count in zip((*BUCKETS, float("inf")), counts, strict=True):
            running += count
            buckets.append((_bound(bound), running))
        latency.add_metric([command], buckets, total)
        failed.add_metric([command], failures)
    yield latency
    yield failed


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(value)


class _Family:
    __slots__ = ("help", "kind", "labels", "name", "source")

    def __init__(self, name: str, help: str, kind: str, labels: tuple[str, ...], source: Source):
        self.name = name
        self.help = help
        self.kind = kind
        self.labels = labels
        self.source = source

    def metric(self) -> Metric:
        family: Metric
        if self.kind == "counter":
            family = CounterMetricFamily(self.name, self.help, labels=list(self.labels))
        else:
            family = GaugeMetricFamily(self.name, self.help, labels=list(self.labels))
        for values, value in self.source():
            family.add_metric(list(values), value)  # type: ignore[attr-defined]
        return family


class _Collector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        metrics = self.metrics
        info = GaugeMetricFamily(
            "jalien_info", "This process: its level and version", labels=["level", "version"]
        )
        info.add_metric([metrics.level, __version__], 1.0)
        yield info
        up = GaugeMetricFamily("jalien_start_time_seconds", "When this process started")
        up.add_metric([], metrics.started)
        yield up
        if metrics.requests is not None:
            yield from request_families(metrics.requests)
        for family in metrics.families:
            try:
                yield family.metric()
            except Exception as exc:  # a source must not take the whole page down
                log.warning("metric %s not read: %s", family.name, exc)


class Metrics:
    """The metrics of one process (one per role: ``level`` is jcentral, se, vobox,
    jobagent or jbox)."""

    def __init__(
        self, level: str, *, requests: RequestSource | None = None, process: bool = True
    ) -> None:
        self.level = level
        self.started = time.time()
        self.requests = requests
        self.families: list[_Family] = []
        # transfers by state: the hook the data movers count into (jalien_transfers)
        self.transfers: dict[str, int] = {}
        self.add(
            "jalien_transfers",
            "Transfers by state (counted by the data movers)",
            lambda: [((state,), float(n)) for state, n in sorted(self.transfers.items())],
            labels=("state",),
            kind="counter",
        )
        self._refreshers: list[Callable[[], Awaitable[None]]] = []
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))
        if process:  # CPU seconds, resident memory, open files of this process (Linux /proc)
            ProcessCollector(registry=self.registry)

    # -- sources
    def add(
        self,
        name: str,
        help: str,
        source: Source,
        *,
        labels: tuple[str, ...] = (),
        kind: str = "gauge",
    ) -> None:
        """A family read at scrape time: *source* returns (label values, value) pairs."""
        if kind not in ("gauge", "counter"):
            raise ValueError(f"metric kind {kind!r}")
        self.families.append(_Family(name, help, kind, labels, source))

    def gauge(self, name: str, help: str, read: Callable[[], float]) -> None:
        self.add(name, help, lambda: [((), float(read()))])

    def counter(self, name: str, help: str, read: Callable[[], float]) -> None:
        self.add(name, help, lambda: [((), float(read()))], kind="counter")

    def refresh(self, step: Callable[[], Awaitable[None]]) -> None:
        """A coroutine run before each scrape (e.g. a database count kept by a source)."""
        self._refreshers.append(step)

    def loops(self, registry: LoopRegistry) -> None:
        """The background steps of a role: runs, errors, errors in a row, last duration."""

        def states(field: str) -> Source:
            return lambda: [((s.name,), float(getattr(s, field))) for s in registry.list()]

        self.add("jalien_loop_runs", "Background steps that ended", states("runs"),
                 labels=("loop",), kind="counter")  # fmt: skip
        self.add("jalien_loop_errors", "Background steps that raised", states("errors"),
                 labels=("loop",), kind="counter")  # fmt: skip
        self.add("jalien_loop_errors_in_row", "Errors since the last good step",
                 states("errors_in_row"), labels=("loop",))  # fmt: skip
        self.add("jalien_loop_last_duration_seconds", "How long the last step took",
                 states("last_duration"), labels=("loop",))  # fmt: skip
        self.add("jalien_loop_paused", "1 when an admin paused the loop", states("paused"),
                 labels=("loop",))  # fmt: skip

    # -- exposition
    async def exposition(self) -> bytes:
        for step in self._refreshers:
            try:
                await step()
            except Exception as exc:
                log.warning("metrics refresh failed: %s", exc)
        return generate_latest(self.registry)

    def text(self) -> bytes:
        """The exposition without the refreshers (a synchronous caller)."""
        return generate_latest(self.registry)


def value(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample of an exposition (tests and tools), None when absent."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None
