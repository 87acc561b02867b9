"""The audit log: one JSON line for every request a server answered, on every level.

``net.server`` calls ``AuditLog.record`` once per request, when its answer has left (a
streamed answer: when the stream ends), and ``AuditLog.refused`` for a connection or a
channel that was turned away. A line (``AuditRecord``) says when, who (peer, identity kind,
DN, login), what (command, arguments cut to a bound, secrets masked), and how it ended
(exit code, error text, duration, bytes and frames/pages sent); see docs/audit.md.

Writing never blocks the event loop. On the loop's thread a request costs a tuple of what
the server already has (``Entry``) appended to a list; every FLUSH_DELAY (or FLUSH_ENTRIES)
the list goes to a ``logging.handlers.QueueListener`` thread, which makes the lines (the
JSON msgspec writes for an ``AuditRecord``, by ``_fast.auditlines``, a Cython twin: the
one home of what a record holds) for every batch waiting and appends them, one write, to a
size-bounded ``RotatingFileHandler`` file (``<home>/log/audit.jsonl``, ``audit_max_bytes``
x ``audit_backups``, renamed .1 .. .N as administrators know). The stdlib pair is used for
what it does well (the thread, the queue, the rotation and its lock); the hot path never
builds a LogRecord. If the disk stalls, requests beyond ``max_pending`` waiting entries are
dropped and counted: the loop never waits on the disk.

At ``--log-level DEBUG`` every record is also one readable line on the console
(logger ``jalien.audit``); with ``log_format = "json"`` that line is a JSON object whose
``audit`` field is the record itself (jalien.logs).
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import queue
import re
import time
from collections.abc import Sequence
from logging.handlers import QueueListener, RotatingFileHandler
from pathlib import Path
from queue import SimpleQueue
from typing import Any, BinaryIO

import msgspec

from jalien._fast import auditlines, reqstats
from jalien.config import ConfigError, Settings
from jalien.loops import Pool, PoolGauge
from jalien.wire import framing

log = logging.getLogger("jalien.audit")

MAX_ARGS = 512  # characters of all the arguments of a line together
MAX_ARG = 128  # characters of one argument (a JDL given with `submit =<` included)
MAX_ERROR = 512  # characters of the error text
FORWARDED = "forwarded"  # exit code of a forwarded reply that could not be read cheaply
REFUSAL_CODES = frozenset({13})  # EACCES: the policy or a credential said no
FLUSH_DELAY = 0.05  # seconds a request may wait on the loop's side
FLUSH_ENTRIES = 4096  # hand a batch over at once when it grows this big
# commands whose first argument is a secret: commit's is the signed write envelope
SECRET_FIRST = frozenset({"commit"})
_DEBUG = logging.DEBUG


class AuditRecord(msgspec.Struct, gc=False):
    """One line of the audit log (field order is the JSON order). Every field is given,
    positionally: msgspec builds a Struct from positional arguments several times faster
    than from keywords, and this is made once per request."""

    time: str  # ISO 8601 UTC, milliseconds
    level: str  # the server that wrote it: jcentral, jbox, vobox, jobagent
    event: str  # request | connect (a refused connection) | channel (a refused channel)
    peer: str  # address:port of the connection
    personality: str  # websocket | binary
    channel: int  # binary channel (a level's client), 0 on WebSocket
    kind: str  # identity kind (jalien.auth.policy.IdentityKind)
    dn: str
    login: str
    job: str  # the job of a job token
    command: str
    args: list[str]
    exitcode: int | str  # FORWARDED when a level could not read it from the frame
    error: str
    refused: str  # the reason, when the request or connection was refused
    duration_ms: float
    bytes_out: int
    pages: int  # frames (binary) or pages (WebSocket) of the answer


class _ReplyHead(msgspec.Struct, tag="rep"):
    """Just the exit code and error of a Reply (wire.messages.Reply): a level reads the
    outcome of a forwarded frame without building its records."""

    exitcode: int = 0
    error: str = ""


_head_msgpack = msgspec.msgpack.Decoder(_ReplyHead)
_head_json = msgspec.json.Decoder(_ReplyHead)


def raw_outcome(flags: int, body: bytes) -> tuple[int | str, str]:
    """(exit code, error) of a raw reply frame; (FORWARDED, "") when reading it would
    mean inflating it (compressed) or it is not a Reply."""
    if flags & framing.FLAG_COMPRESSED:
        return FORWARDED, ""
    codec = flags & framing.CODEC_MASK
    try:
        if codec == framing.CODEC_MSGPACK:
            head = _head_msgpack.decode(body)
        elif codec == framing.CODEC_JSON:
            head = _head_json.decode(body)
        else:
            return FORWARDED, ""
    except (msgspec.DecodeError, RecursionError):  # a deep reply is not ours to judge
        return FORWARDED, ""
    return head.exitcode, head.error


_ENVELOPE = re.compile(r"[A-Za-z0-9_-]{32,}\.[A-Za-z0-9_-]{32,}")
_AUTHZ = re.compile(r"(authz=)[^&\s]*")


def _masked(arg: str) -> str:
    return f"<masked: {len(arg)} chars>"


def _scrub(arg: str) -> str:
    """A long argument without its secrets: PEM text (keys, token certificates), signed
    envelopes (``<base64url>.<base64url>``), ``authz=`` values of URLs."""
    if "-----BEGIN" in arg:
        return _masked(arg)
    if "authz=" in arg:
        arg = _AUTHZ.sub(r"\1<masked>", arg)
    if "." in arg:
        arg = _ENVELOPE.sub("<masked envelope>", arg)
    return arg


def bound_args(command: str, options: Sequence[str]) -> list[str]:
    """The arguments as the audit log keeps them: secrets masked, at most MAX_ARG
    characters of each and MAX_ARGS of all; a cut argument ends with ``...<N chars>`` (its
    length), the arguments left out are counted by a last ``<+N more>``."""
    if not options:
        return []
    if (
        command not in SECRET_FIRST
        and max(map(len, options)) <= 64
        and len(options) * 64 <= MAX_ARGS
    ):
        return list(options)  # the usual few short words: nothing to scan or cut
    out: list[str] = []
    left = MAX_ARGS
    for i, arg in enumerate(options):
        if left <= 0:
            out.append(f"<+{len(options) - i} more>")
            break
        if i == 0 and command in SECRET_FIRST:
            arg = _masked(arg)
        elif len(arg) > 64:  # short words hold no key, envelope or JDL worth a scan
            arg = _scrub(arg)
        limit = MAX_ARG if left > MAX_ARG else left
        if len(arg) > limit:
            if limit < 16:  # no room left for a useful piece
                out.append(f"<+{len(options) - i} more>")
                break
            arg = f"{arg[:limit]}...<{len(arg)} chars>"
            left -= limit
        else:
            left -= len(arg)
        out.append(arg)
    return out


def _bounded(text: str, limit: int = MAX_ERROR) -> str:
    return text if len(text) <= limit else f"{text[:limit]}...<{len(text)} chars>"


class _Clock:
    """ISO 8601 UTC time with milliseconds, formatted once per millisecond (under load
    many lines share one) and its seconds part once per second."""

    def __init__(self) -> None:
        self._ms = -1
        self._second = -1
        self._prefix = ""
        self._text = ""

    def at(self, t: float) -> str:
        ms = int(t * 1000)
        if ms != self._ms:
            self._ms = ms
            second, rest = divmod(ms, 1000)
            if second != self._second:
                self._second = second
                self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._text = f"{self._prefix}.{rest:03d}Z"
        return self._text


def line_maker(level: str) -> Any:
    """Entries -> the JSON lines of their AuditRecords (``_fast.auditlines``), with this
    module's rules: the clock, arguments bounded and masked, errors bounded, what counts as
    refused. One per thread (it keeps the time and each connection's part)."""
    return auditlines.LineMaker(level, _Clock().at, bound_args, _bounded, REFUSAL_CODES)


_record_of = msgspec.json.Decoder(AuditRecord).decode


Entry = tuple[Any, ...]
"""What the hot path keeps of a request: (time, event, peer, personality, channel,
identity, command, options, exitcode, error, seconds, bytes_out, pages). The values are
never changed afterwards (an Identity is frozen; a Request's options are not touched once
dispatched), so the writer thread may read them."""


class _File(RotatingFileHandler):
    """The stdlib's rotating file (its size check, renames and lock), fed whole batches of
    encoded lines as bytes: no text decoding and encoding back. Created 0600 (DNs are
    personal data); write errors are logged once in a while, not a traceback per batch."""

    stream: BinaryIO  # type: ignore[assignment]  # typeshed: a text file; "ab" here

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.failures = 0
        super().__init__(path, mode="ab", maxBytes=max_bytes, backupCount=backups)

    def _open(self) -> BinaryIO:  # type: ignore[override]  # the stdlib's, binary, 0600
        def opener(path: str, flags: int) -> int:
            return os.open(path, flags, 0o600)

        return open(self.baseFilename, "ab", opener=opener)

    def emit(self, record: logging.LogRecord) -> None:
        """Write the batch, rolling over between lines so that no file exceeds maxBytes
        (a single line longer than that gets a file of its own)."""
        msg: bytearray = record.msg  # type: ignore[assignment]
        view = memoryview(msg)
        pos, end = 0, len(msg)
        try:
            while pos < end:
                if self.stream is None:
                    self.stream = self._open()
                room = self.maxBytes - self.stream.tell()
                if end - pos <= room:
                    self.stream.write(view[pos:])
                    break
                cut = msg.rfind(b"\n", pos, pos + room) + 1
                if cut <= pos:  # not one whole line fits
                    if self.stream.tell() > 0:
                        self.doRollover()
                        continue
                    cut = msg.find(b"\n", pos) + 1 or end
                self.stream.write(view[pos:cut])
                pos = cut
                self.doRollover()
            if self.stream is not None:
                self.stream.flush()
        except Exception:
            self.handleError(record)

    def handleError(self, record: logging.LogRecord) -> None:
        self.failures += 1
        if self.failures == 1 or self.failures % 1000 == 0:
            log.error("audit log %s: write failed %d times", self.baseFilename, self.failures)


class _Writer(QueueListener):
    """The writer thread: the batches of entries waiting in the queue are taken at once,
    become lines (the AuditRecord's JSON, made by ``_fast.auditlines``: ~0.6 us a line
    instead of ~1.5 us through an AuditRecord and msgspec; the writer shares the GIL, and
    its work was about a third of a binary ``ping``'s cost) and one LogRecord of bytes
    here, off the event loop, and one write to the rotating file."""

    _stopping = False
    # the base class's, as typeshed does not declare them (its queue protocol has no get_nowait)
    _sentinel: None
    queue: SimpleQueue[Any]

    def __init__(self, queue_: SimpleQueue[Any], handler: _File, level: str) -> None:
        super().__init__(queue_, handler)
        self.lines = line_maker(level)  # (jalien/_fast/auditlines: a Cython twin)
        self.done = 0  # entries written (only this thread adds)
        self.failed = 0
        # what an admin sees of the thread (background); never paused: entries would pile up
        self.gauge = PoolGauge("audit-writer", queued=queue_.qsize, can_pause=False)

    def dequeue(self, block: bool) -> Any:
        if self._stopping:
            return self._sentinel
        first = self.queue.get(block)
        if first is self._sentinel:
            return first
        entries = list(first)
        while len(entries) < 4 * FLUSH_ENTRIES:
            try:
                more = self.queue.get_nowait()
            except queue.Empty:
                break
            if more is self._sentinel:  # write these, then stop
                self._stopping = True
                break
            entries += more
        return entries

    def prepare(self, record: Any) -> logging.LogRecord:
        data = bytearray()
        add = self.lines.add
        self.gauge.began(len(record))
        failed = self.failed
        for i, entry in enumerate(record):
            size = len(data)
            try:
                add(entry, data)
            except Exception:  # a bug must not end the writer thread
                del data[size:]  # (a part of its line)
                self.failed += 1
                if self.failed == 1 or self.failed % 1000 == 0:
                    log.exception("audit log: %d entries could not be written", self.failed)
                continue
            if i % 512 == 511:
                time.sleep(0)  # let the event loop's thread have the GIL
        self.done += len(record)
        self.gauge.ended(len(record), self.failed - failed)
        return logging.LogRecord("jalien.audit", logging.INFO, "", 0, data, None, None)


def _lock(path: Path) -> int | None:
    """An exclusive lock on *path*'s companion ``.lock`` file: two processes rotating one
    file would lose lines. None when another process holds it."""
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


class AuditLog:
    """The audit log of one server process (shared by its servers, e.g. a JobAgent's
    local sockets). Without a *path* it only shows records at DEBUG on the console.

    The hot path (``record``) keeps a tuple of what it was given and the time; the
    writer thread makes the line. Doing the formatting there, in batches, costs the same
    CPU but runs warm: done per request between two network reads, the same Python code
    cost about three times more (bench_net, 8 connections x 1 request)."""

    def __init__(
        self,
        path: Path | None = None,
        *,
        level: str = "",
        max_bytes: int = 64 * 1024 * 1024,
        backups: int = 5,
        max_pending: int = 200_000,
    ) -> None:
        self.level = level
        # the process's request counters (jalien.metrics reads them), fed from record()
        self.requests: reqstats.RequestCounter | None = None
        self.path: Path | None = None
        self.dropped = 0
        self._dropped_said = -1e9
        self._max_pending = max_pending  # entries handed over but not yet written
        self._sent = 0  # entries handed over (only the loop's thread adds)
        self._console: Any = None  # a line maker of the loop's thread, made at DEBUG
        self._pending: list[Entry] = []
        self._scheduled = False
        self._queue: queue.SimpleQueue[Any] | None = None
        self._writer: _Writer | None = None
        self._file: _File | None = None
        self._lock_fd: int | None = None
        if path is not None:
            self._open(Path(path), max_bytes, backups)

    @classmethod
    def from_settings(cls, settings: Settings, level: str) -> AuditLog:
        """The audit log of a role: ``audit_file`` (default ``<home>/log/audit.jsonl``)."""
        return cls(
            settings.audit_path,
            level=level,
            max_bytes=settings.audit_max_bytes,
            backups=settings.audit_backups,
        )

    def _open(self, path: Path, max_bytes: int, backups: int) -> None:
        if max_bytes <= 0 or backups < 1:
            raise ConfigError("the audit log needs audit_max_bytes > 0 and audit_backups >= 1")
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # another process (a VoBox sharing jcentral's home, a second jcentral) has the
        # file: write one of our own beside it rather than rotate theirs
        suffix = path.suffix or ".jsonl"
        candidates = [
            path,
            path.with_name(f"{path.stem}-{self.level or 'server'}{suffix}"),
            path.with_name(f"{path.stem}-{self.level or 'server'}-{os.getpid()}{suffix}"),
        ]
        for candidate in candidates:
            self._lock_fd = _lock(candidate)
            if self._lock_fd is not None:
                break
        else:  # pragma: no cover - the pid makes the last one ours
            raise OSError(f"audit log {path}: every candidate file is locked")
        if candidate != path:
            log.warning("audit log %s is used by another process: writing %s", path, candidate)
        self.path = candidate
        self._file = _File(candidate, max_bytes, backups)
        self._queue = queue.SimpleQueue()
        self._writer = _Writer(self._queue, self._file, self.level)
        self._writer.start()

    # -- the hot path
    def record(
        self,
        peer: str,
        personality: str,
        channel: int,
        identity: Any,
        command: str,
        options: Sequence[str],
        exitcode: int | str,
        error: str,
        started: float,
        bytes_out: int,
        pages: int = 1,
    ) -> None:
        """One request answered: *started* is its ``time.perf_counter()`` on arrival."""
        elapsed = time.perf_counter() - started
        requests = self.requests
        if requests is not None:
            requests.observe(command, exitcode, elapsed)
        if self._queue is None and not log.isEnabledFor(_DEBUG):
            return
        self._add(
            (
                time.time(),
                "request",
                peer,
                personality,
                channel,
                identity,
                command,
                options,
                exitcode,
                error,
                elapsed,
                bytes_out,
                pages,
            )
        )

    def refused(
        self,
        event: str,
        peer: str,
        personality: str,
        reason: str,
        identity: Any = None,
        channel: int = 0,
        exitcode: int = 13,
    ) -> None:
        """A connection (event ``connect``) or a channel (``channel``) turned away."""
        if self._queue is None and not log.isEnabledFor(_DEBUG):
            return
        self._add(
            (
                time.time(),
                event,
                peer,
                personality,
                channel,
                identity,
                "",
                (),
                exitcode,
                reason,
                0.0,
                0,
                0,
            )
        )

    def _add(self, entry: Entry) -> None:
        if self._queue is not None:
            pending = self._pending
            pending.append(entry)
            if len(pending) >= FLUSH_ENTRIES:
                self.flush()
            elif not self._scheduled:
                self._schedule()
        if log.isEnabledFor(_DEBUG):  # a JSON log line (jalien.logs) carries the record
            record = self._console_record(entry)
            log.debug("%s", readable(record), extra={"fields": {"audit": record}})

    def _console_record(self, entry: Entry) -> AuditRecord:
        """The record of *entry*, read back from its line (the console's slow path: the
        line maker is the one home of what a record holds)."""
        if self._console is None:
            self._console = line_maker(self.level)
        line = bytearray()
        self._console.add(entry, line)
        return _record_of(bytes(line))

    def _schedule(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a tool, a test): write now
            self.flush()
            return
        self._scheduled = True
        loop.call_later(FLUSH_DELAY, self.flush)

    def flush(self) -> None:
        """Hand the entries so far to the writer thread."""
        self._scheduled = False
        batch = self._pending
        if not batch or self._queue is None or self._writer is None:
            return
        self._pending = []
        if self._sent - self._writer.done >= self._max_pending:  # the disk is stalled
            self.dropped += len(batch)
            now = time.monotonic()
            if now - self._dropped_said >= 10.0:  # said at most every 10 s
                self._dropped_said = now
                log.error("audit log %s is behind: %d lines dropped", self.path, self.dropped)
            return
        self._sent += len(batch)
        self._queue.put(batch)

    def pools(self) -> list[Pool]:
        """The writer thread, for the role's registry (none without a file)."""
        return [self._writer.gauge] if self._writer is not None else []

    def close(self) -> None:
        """Write what is pending and stop the writer thread (blocks until written)."""
        self.flush()
        if self._writer is not None:
            self._writer.stop()
            self._writer = None
        if self._file is not None:
            self._file.close()
            self._file = None
        self._queue = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def readable(record: AuditRecord) -> str:
    """The console's line for a record."""
    args = " ".join(record.args)
    who = f"{record.login or '?'}[{record.kind or '?'}]"
    where = f"{record.peer} {record.personality}" + (f"/{record.channel}" if record.channel else "")
    if record.event != "request":
        return f"{where} {who} {record.event} refused: {record.refused}"
    text = (
        f"{where} {who} {record.command}{' ' + args if args else ''} -> exit {record.exitcode}"
        f" in {record.duration_ms:.1f} ms, {record.bytes_out} B"
    )
    if record.pages > 1:
        text += f" in {record.pages} pages"
    if record.error:
        text += f": {record.error}"
    return text
