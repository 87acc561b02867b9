"""jalien.logs: JSON lines that parse (a traceback and extra fields included, an audit
record as the console's DEBUG line carries it), the bounded ring of recent lines that
``logs`` fetches, a worker's tag, bad settings as a clear error; the logs report's bounds."""

from __future__ import annotations

import io
import json
import logging

import pytest

from jalien import logs
from jalien.config import ConfigError
from jalien.net.audit import AuditLog
from jalien.roles.start import LogOptions, setup_logging
from jalien.wire import monitor_api


@pytest.fixture
def root():
    """The root logger as configure() leaves it, put back afterwards."""
    logger = logging.getLogger()
    handlers, level = list(logger.handlers), logger.level
    yield logger
    logger.handlers[:] = handlers
    logger.setLevel(level)


def _console(logger: logging.Logger) -> io.StringIO:
    stream = io.StringIO()
    for handler in logger.handlers:
        if getattr(handler, "_jalien", False):
            handler.setStream(stream)  # type: ignore[attr-defined]
    return stream


def test_json_lines_parse(root):
    ring = logs.configure("DEBUG", "json", role="vobox", recent=3)
    out = _console(root)
    log = logging.getLogger("jalien.test")
    log.info("hello %s", "grid", extra={"fields": {"ce": "ALICE::X::CE", "n": 3}})
    try:
        raise ValueError('bad "quote"\nand a newline')
    except ValueError:
        log.exception("it failed")
    AuditLog(level="vobox").refused("connect", "127.0.0.1:1", "binary", "no certificate")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["message"] for line in lines[:2]] == ["hello grid", "it failed"]
    first, second, audit = lines
    assert first["level"] == "INFO" and first["logger"] == "jalien.test"
    assert first["role"] == "vobox" and first["ce"] == "ALICE::X::CE" and first["n"] == 3
    assert first["time"].endswith("Z") and isinstance(first["pid"], int)
    assert "ValueError" in second["exc"] and "exc" not in first
    assert audit["logger"] == "jalien.audit" and audit["audit"]["refused"] == "no certificate"
    assert ring.tail(10) == out.getvalue().splitlines()  # the ring keeps the same lines


def test_ring_is_bounded_and_text_by_default(root):
    ring = logs.configure("INFO", recent=3)
    for i in range(5):
        logging.getLogger("jalien.test").info("line %d", i)
    logging.getLogger("jalien.test").debug("below the level")
    assert logs.recent() is ring and ring.total == 5
    assert [line.rsplit(" ", 1)[1] for line in ring.tail(10)] == ["2", "3", "4"]
    assert logs.recent_lines(1)[0].endswith("INFO jalien.test: line 4")
    assert ring.tail(0) == []
    logs.tag("w1")  # a jcentral worker's lines name it
    logging.getLogger("jalien.test").info("tagged")
    assert ring.tail(1)[0].endswith("INFO [w1] jalien.test: tagged")
    logs.configure("INFO", "json", role="jcentral")
    logs.tag("w2")
    logging.getLogger("jalien.test").info("tagged")
    assert json.loads(logs.recent_lines(1)[0])["role"] == "jcentral[w2]"
    assert sum(isinstance(h, logs.RecentLines) for h in root.handlers) == 1  # not doubled


@pytest.mark.parametrize(
    ("options", "why"),
    [
        (LogOptions(log_format="xml"), "log_format must be text or json"),
        (LogOptions(recent=0), "log_recent_lines must be 1"),
    ],
)
def test_bad_settings_are_a_config_error(root, options, why):
    with pytest.raises(ConfigError, match=why):
        setup_logging("INFO", options)


def test_logs_report_keeps_the_newest_within_bounds():
    lines = [f"line {i}" for i in range(monitor_api.MAX_LOG_LINES + 10)]
    report = monitor_api.logs_report(7, lines, 99, queue_id=3)
    assert len(report.lines) == monitor_api.MAX_LOG_LINES and report.lines[-1] == lines[-1]
    big = ["x" * 400_000] * 4
    assert len(monitor_api.logs_report(1, big, 4).lines) == 2  # MAX_LOG_BYTES
    decoded = monitor_api.decode(monitor_api.encode(report), monitor_api.LogsReport)
    assert decoded == report
