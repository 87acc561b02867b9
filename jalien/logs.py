"""How every process logs (docs/monitoring.md, "Logs"): the one home of logging's set-up.

``configure`` (called by ``roles.start.run_role``) sends the process's log records to
stderr, as readable lines (``log_format = "text"``, the default) or as JSON lines
(``log_format = "json"``, env JALIEN_LOG_FORMAT=json: one object per record with ``time``,
``level``, ``logger``, ``message``, ``role``, ``pid``, and ``exc`` for a traceback), and
keeps the last ``log_recent_lines`` of them in memory (``RecentLines``, a bounded ring),
formatted the same way: what ``logs vobox CE`` and ``logs job ID`` fetch from a VoBox or a
JobAgent through central (jalien.jobs.logs_desk).

A record may carry a ``fields`` dict (``log.info(..., extra={"fields": {...}})``): a JSON
line holds its items as they are (the audit log's console line carries its record so).
"""

from __future__ import annotations

import collections
import logging
import sys
import threading
import time
from typing import Any

import msgspec

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FORMATS = ("text", "json")
DEFAULT_RECENT = 1000
MAX_RECENT = 100_000
MAX_LINE = 8192  # characters of one kept line (a traceback's JSON line is one line)

_encode = msgspec.json.Encoder().encode


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


class JsonFormatter(logging.Formatter):
    """A record as one JSON object on one line. *role* names the process (jcentral, vobox,
    jobagent, se, jbox; a jcentral worker adds ``[wN]`` through ``tag``)."""

    def __init__(self, role: str = "") -> None:
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "role": self.role,
            "pid": record.process,
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                line.setdefault(str(key), value)
        try:
            return _encode(line).decode()
        except (TypeError, msgspec.EncodeError):  # a field msgspec cannot write: as text
            line.update({k: str(v) for k, v in line.items()})
            return _encode(line).decode()


class RecentLines(logging.Handler):
    """The last *capacity* log lines of the process, in memory (a bounded deque: a line
    costs at most MAX_LINE characters, the oldest leave first)."""

    def __init__(self, capacity: int = DEFAULT_RECENT) -> None:
        super().__init__()
        self.lines: collections.deque[str] = collections.deque(maxlen=max(1, capacity))
        self.total = 0  # lines seen since the start (the ring holds the last of them)
        self.log_format = "text"  # how configure() set the process's lines
        self.role = ""
        self._mutex = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # a bad %-format in someone's call must not break logging
            self.handleError(record)
            return
        if len(line) > MAX_LINE:
            line = f"{line[:MAX_LINE]}...<{len(line)} chars>"
        with self._mutex:
            self.lines.append(line)
            self.total += 1

    def tail(self, n: int) -> list[str]:
        """The last *n* lines, oldest first."""
        with self._mutex:
            if n <= 0:
                return []
            if n >= len(self.lines):
                return list(self.lines)
            return list(self.lines)[-n:]


def formatter(log_format: str, role: str = "", tag: str = "") -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter(f"{role}[{tag}]" if tag else role)
    text = TEXT_FORMAT if not tag else TEXT_FORMAT.replace("%(name)s", f"[{tag}] %(name)s")
    return logging.Formatter(text)


def check_format(log_format: str) -> str:
    if log_format not in FORMATS:
        raise ValueError(f"log_format must be {' or '.join(FORMATS)}, not {log_format!r}")
    return log_format


def configure(
    level: str,
    log_format: str = "text",
    *,
    role: str = "",
    recent: int = DEFAULT_RECENT,
) -> RecentLines:
    """The process's logging: stderr in *log_format* at *level*, and the last *recent*
    lines kept in memory (the handler returned). ValueError for a bad format or level."""
    check_format(log_format)
    if not 0 < recent <= MAX_RECENT:
        raise ValueError(f"log_recent_lines must be 1..{MAX_RECENT}, not {recent}")
    root = logging.getLogger()
    root.setLevel(level.upper())  # ValueError for an unknown level
    for handler in list(root.handlers):
        if isinstance(handler, RecentLines) or getattr(handler, "_jalien", False):
            root.removeHandler(handler)
    console = logging.StreamHandler(sys.stderr)
    console._jalien = True  # type: ignore[attr-defined]  # ours: replaced, not doubled
    ring = RecentLines(recent)
    for handler in (console, ring):
        handler.setFormatter(formatter(log_format, role))
        root.addHandler(handler)
    ring.log_format, ring.role = log_format, role
    return ring


def tag(name: str) -> None:
    """Every line of this process from now on names *name* (a jcentral worker: w0, w1...)."""
    ring = recent()
    log_format, role = (ring.log_format, ring.role) if ring is not None else ("text", "")
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter(log_format, role, name))


def recent() -> RecentLines | None:
    """The ring of this process's recent lines (None before ``configure``)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, RecentLines):
            return handler
    return None


def recent_lines(n: int) -> list[str]:
    """The last *n* log lines of this process, oldest first ([] before ``configure``)."""
    ring = recent()
    return ring.tail(n) if ring is not None else []
