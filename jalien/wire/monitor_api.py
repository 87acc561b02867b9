"""The typed contracts of monitoring between the levels (docs/monitoring.md): what VoBoxes
and JobAgents report upstream, and what a JobAgent answers when central asks it to spy on
its job. msgspec Structs in one tagged union (``MonitorMessage``), carried in
``Request.data[0]`` as ``wire.site_api``'s are, with the same evolution rules (append
only, every new field with a default, a tag never reused)::

    monitor.report   data [SiteReport | AgentReport] -> Reply() (exit code 0)
    spyReport        data [SpyReport]                -> Reply() (exit code 0)
    logsReport       data [LogsReport]               -> Reply() (exit code 0)

Central asks for a spy report with ``Event(topic="spy", payload={"queueId", "what",
"ref"})`` pushed on the connection that matched the job (as it pushes "kill"): the agent
answers on that connection with ``spyReport``; a VoBox in between relays both ways.
``logs`` goes the same way (``Event(topic="logs", payload={"ref", "lines", "queueId"})``,
answered with ``logsReport``), or to the VoBox itself on its own connection (no queueId).
Upstream only: no level ever connects into a site.
"""

from __future__ import annotations

from typing import TypeVar

import msgspec

SPY_TOPIC = "spy"
SPY_WHATS = ("workdir", "nodeinfo", "stdout", "stderr")  # or a file of the sandbox
MAX_SPY_BYTES = 64 * 1024  # the most text one spy report carries
MAX_ERRORS = 20  # recent errors one report carries
LOGS_TOPIC = "logs"  # central asks a VoBox or a JobAgent for its recent log lines
MAX_LOG_LINES = 5000  # the most lines one logs report carries
MAX_LOG_BYTES = 1024 * 1024  # and the most text


class MonitorApiError(ValueError):
    """Bytes that are no valid monitoring message; the text says which and why."""


class SpyReport(msgspec.Struct, tag="spy", kw_only=True, omit_defaults=True):
    """A JobAgent's answer to a spy request: *text* (at most MAX_SPY_BYTES of it), or
    *error* when it could not (no such file, a path out of the sandbox, another job)."""

    ref: int
    queue_id: int
    what: str
    text: str = ""
    error: str = ""


class Usage(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A payload's resource use, as the JobAgent's monitor last sampled it."""

    cpu: float = 0.0  # seconds
    rss: int = 0  # bytes
    pss: int = 0
    vms: int = 0
    disk: int = 0  # bytes in the sandbox
    processes: int = 0
    wall: float = 0.0  # seconds since the payload started


class AgentReport(msgspec.Struct, tag="agent", kw_only=True, omit_defaults=True):
    """A JobAgent's report (every monitor interval while it runs a job, and when it idles):
    where it is, its job and that job's resource use, its recent errors."""

    site: str = ""
    ce: str = ""
    node: str = ""
    queue_id: int = 0  # 0: no job now
    ttl_left: int = 0  # seconds
    jobs_done: int = 0
    usage: Usage | None = None
    errors: list[str] = []


class SiteReport(msgspec.Struct, tag="site", kw_only=True, omit_defaults=True):
    """A VoBox's report after each of its cycles: its slots and agents, the waiting jobs
    central has for it, what it submitted, its recent errors."""

    site: str = ""
    ce: str = ""
    batch: str = ""
    max_running: int = 0  # slots: the most agents at once
    max_queued: int = 0
    running: int = 0
    queued: int = 0
    starting: int = 0
    waiting: int = -1  # -1: central did not answer
    submitted_total: int = 0
    cycles: int = 0
    errors: list[str] = []


class LogsReport(msgspec.Struct, tag="logs", kw_only=True, omit_defaults=True):
    """A VoBox's or a JobAgent's answer to ``logs``: its last log lines (at most the
    number asked, MAX_LOG_LINES and MAX_LOG_BYTES), oldest first, or *error*."""

    ref: int
    queue_id: int = 0  # the job whose agent answers; 0: a VoBox
    ce: str = ""  # the VoBox's CE
    lines: list[str] = []
    total: int = 0  # lines the process logged since it started
    error: str = ""


MonitorMessage = SpyReport | AgentReport | SiteReport | LogsReport

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[MonitorMessage] = msgspec.msgpack.Decoder(MonitorMessage)


def encode(message: MonitorMessage) -> bytes:
    return _encoder.encode(message)


T = TypeVar("T", bound=MonitorMessage)


def decode(data: bytes, kind: type[T] | tuple[type[T], ...]) -> T:
    """The monitoring message in *data*, which must be a *kind*; MonitorApiError else."""
    try:
        message = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise MonitorApiError(f"not a monitoring message: {exc}") from None
    except RecursionError:
        raise MonitorApiError("not a monitoring message: nested too deeply") from None
    if not isinstance(message, kind):
        raise MonitorApiError(f"unexpected {type(message).__name__}")
    return message


def logs_report(
    ref: int, lines: list[str], total: int, *, queue_id: int = 0, ce: str = ""
) -> LogsReport:
    """The report of *lines* (the last ones asked), cut from the oldest side to
    MAX_LOG_LINES lines and MAX_LOG_BYTES characters."""
    kept: list[str] = []
    size = 0
    for line in reversed(lines[-MAX_LOG_LINES:]):
        size += len(line) + 1
        if size > MAX_LOG_BYTES:
            break
        kept.append(line)
    kept.reverse()
    return LogsReport(ref=ref, queue_id=queue_id, ce=ce, lines=kept, total=total)
