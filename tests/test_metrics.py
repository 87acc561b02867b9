"""jalien.metrics: the request counters of the hot path, sources read at scrape time, the
loops' states, the exposition (parsed back with prometheus_client's own parser) and the
loopback endpoint."""

from __future__ import annotations

import asyncio
import time

import pytest

from jalien._fast import NO_EXTENSIONS, constants, reqstats_py
from jalien.config import ConfigError
from jalien.loops import Loop, LoopRegistry
from jalien.metrics import BUCKETS, Metrics, value
from jalien.net.audit import AuditLog
from jalien.net.metrics_http import serve_metrics
from jalien.net.peers import is_loopback


def _twins():
    twins = [pytest.param(reqstats_py, id="py")]
    try:
        from jalien._fast import reqstats_c
    except ImportError:
        reqstats_c = None
    if reqstats_c is not None and not NO_EXTENSIONS:
        twins.append(pytest.param(reqstats_c, id="c"))
    return twins


@pytest.fixture(params=_twins())
def twin(request):
    return request.param


def test_requests_are_counted_by_command_with_a_histogram(twin):
    metrics = Metrics("test", requests=twin.RequestCounter(), process=False)
    for seconds in (0.0002, 0.003, 0.003, 20.0):
        metrics.requests.observe("ls", 0, seconds)
    metrics.requests.observe("ls", 2, 0.001)
    metrics.requests.observe("cd", "forwarded", 0.001)  # a level's unread reply: no failure
    text = metrics.text().decode()
    assert value(text, "jalien_request_duration_seconds_count", command="ls") == 5
    assert value(text, "jalien_request_duration_seconds_bucket", command="ls", le="0.00025") == 1
    assert value(text, "jalien_request_duration_seconds_bucket", command="ls", le="0.005") == 4
    assert value(text, "jalien_request_duration_seconds_bucket", command="ls", le="+Inf") == 5
    assert value(text, "jalien_request_duration_seconds_sum", command="ls") == pytest.approx(
        20.0072
    )
    assert value(text, "jalien_request_failures_total", command="ls") == 1
    assert value(text, "jalien_request_failures_total", command="cd") == 0
    assert value(text, "jalien_info", level="test", version=_version()) == 1


def _version() -> str:
    from jalien.version import __version__

    return __version__


def test_a_flood_of_unknown_commands_stays_bounded(twin):
    stats = twin.RequestCounter()
    for i in range(constants.MAX_COMMANDS + 50):
        stats.observe(f"nonsense{i}", 1, 0.001)
    rows = stats.snapshot()
    assert len(rows) == constants.MAX_COMMANDS + 1
    assert sum(rows[constants.OTHER_COMMAND][0]) == 50
    assert rows[constants.OTHER_COMMAND][2] == 50


@pytest.mark.parametrize("seconds", [0.0, 0.0001, 0.00010001, 0.3, 30.0, 31.0, -1.0, 1e9])
def test_both_twins_bucket_alike(seconds):
    ours = reqstats_py.RequestCounter()
    ours.observe("x", 0, seconds)
    for twin in _twins():
        theirs = twin.values[0].RequestCounter()
        theirs.observe("x", 0, seconds)
        assert theirs.snapshot() == ours.snapshot()


def test_the_audit_log_feeds_the_counters_even_without_a_file(twin):
    audit = AuditLog()  # no path: nothing written, still counted
    audit.requests = twin.RequestCounter()
    audit.record("peer", "binary", 0, None, "whoami", (), 0, "", time.perf_counter(), 10)
    assert sum(audit.requests.snapshot()["whoami"][0]) == 1


def test_sources_are_read_at_scrape_time_and_a_broken_one_is_skipped():
    metrics = Metrics("test", process=False)
    box = {"n": 1}
    metrics.gauge("jalien_things", "things", lambda: box["n"])
    metrics.add("jalien_broken", "raises", lambda: 1 / 0)  # type: ignore[arg-type,return-value]
    metrics.add("jalien_by_kind", "by kind", lambda: [(("a",), 2.0), (("b",), 3.0)],
                labels=("kind",), kind="counter")  # fmt: skip
    metrics.transfers["done"] = 4
    box["n"] = 7
    text = metrics.text().decode()
    assert value(text, "jalien_things") == 7
    assert value(text, "jalien_by_kind_total", kind="b") == 3
    assert value(text, "jalien_transfers_total", state="done") == 4
    assert "jalien_broken" not in text


async def test_loop_states_and_refreshers():
    metrics = Metrics("test", process=False)
    registry = LoopRegistry()
    metrics.loops(registry)
    runs = asyncio.Event()

    async def step() -> None:
        runs.set()
        raise RuntimeError("boom")

    registry.start(Loop("failing", step, 60.0, first=0))
    await asyncio.wait_for(runs.wait(), 5)
    await asyncio.sleep(0)
    counted = {"n": 0}

    async def refresh() -> None:
        counted["n"] += 1

    metrics.refresh(refresh)
    text = (await metrics.exposition()).decode()
    await registry.stop_all(timeout=1)
    assert counted["n"] == 1
    assert value(text, "jalien_loop_errors_total", loop="failing") == 1
    assert value(text, "jalien_loop_runs_total", loop="failing") == 1


def test_process_metrics_come_from_the_client_library():
    text = Metrics("test").text().decode()
    assert value(text, "process_resident_memory_bytes") > 0


def test_the_buckets_are_sorted_and_the_same_on_both_sides():
    assert list(BUCKETS) == sorted(BUCKETS)
    assert BUCKETS == constants.REQUEST_BUCKETS


async def test_the_endpoint_serves_on_loopback_only():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")
    metrics = Metrics("test", requests=reqstats_py.RequestCounter(), process=False)
    metrics.requests.observe("ping", 0, 0.0001)  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="loopback"):
        await serve_metrics(metrics, ["0.0.0.0"], 0)
    assert await serve_metrics(metrics, ["127.0.0.1"], -1) is None
    server = await serve_metrics(metrics, ["127.0.0.1"], 0)
    assert server is not None
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port())
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\n\r\n")
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        body = (await reader.readexactly(length)).decode()
        assert b"200 OK" in head and b"version=0.0.4" in head
        assert value(body, "jalien_request_duration_seconds_count", command="ping") == 1
        second = await reader.readuntil(b"\r\n\r\n")
        assert b"404" in second
        writer.close()
    finally:
        await server.close()
