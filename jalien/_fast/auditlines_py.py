"""Audit log lines (jalien/net/audit.py), pure-Python twin: entries -> JSON lines.

An entry is the tuple the server keeps of a request answered, ``net.audit.Entry``: (time,
event, peer, personality, channel, identity, command, options, exitcode, error, seconds,
bytes_out, pages); an identity is None or has ``kind`` (an Enum or None), ``dn``,
``login`` and ``job_id``. A line is exactly ``msgspec.json.encode(AuditRecord) + b"\\n"``
(net.audit's record, the fields in its order): ``tests/net/test_auditlines.py`` holds both
twins to those bytes. The policy stays with the audit log: *clock* writes a time (ISO 8601
UTC, milliseconds), *args_of* bounds and masks the arguments, *error_of* bounds an error
text, *refusal_codes* are the exit codes that say "refused"."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec

IMPLEMENTATION = "python"

_encode = msgspec.json.encode


class _Who(msgspec.Struct, gc=False):
    """The fields of a line a connection's requests share (the record's order)."""

    level: str
    event: str
    peer: str
    personality: str
    channel: int
    kind: str
    dn: str
    login: str
    job: str


class _What(msgspec.Struct, gc=False):
    """The fields of a line that are the request's own (the record's order)."""

    command: str
    args: list[str]
    exitcode: int | str
    error: str
    refused: str
    duration_ms: float
    bytes_out: int
    pages: int


class LineMaker:
    """Makes the lines of one level (jcentral, jbox, ...); one per writing thread."""

    def __init__(
        self,
        level: str,
        clock: Callable[[float], str],
        args_of: Callable[[str, Sequence[str]], list[str]],
        error_of: Callable[[str], str],
        refusal_codes: frozenset[int],
    ) -> None:
        self.level = level
        self.clock = clock
        self.args_of = args_of
        self.error_of = error_of
        self.refusal_codes = refusal_codes
        self._ms = -1
        self._time = b""

    def time_text(self, t: float) -> bytes:
        """``{"time":"...",`` opening a line (the clock asked once per millisecond)."""
        ms = int(t * 1000)
        if ms != self._ms:
            self._ms = ms
            self._time = b'{"time":' + _encode(self.clock(t)) + b","
        return self._time

    def add(self, entry: tuple[Any, ...], out: bytearray) -> None:
        """Append the line of *entry* (newline included) to *out*."""
        (
            t, event, peer, personality, channel, identity, command, options, exitcode,
            error, seconds, bytes_out, pages,
        ) = entry  # fmt: skip
        if identity is None:
            kind = dn = login = job = ""
        else:
            kind = identity.kind.value if identity.kind is not None else ""
            dn, login, job = identity.dn, identity.login, identity.job_id
        if error:
            error = self.error_of(error)
        refused = error if event != "request" or exitcode in self.refusal_codes else ""
        args = self.args_of(command, options) if options else []
        who = _Who(self.level, event, peer, personality, channel, kind, dn, login, job)
        what = _What(
            command, args, exitcode, error, refused, round(seconds * 1000.0, 3), bytes_out, pages
        )
        out += self.time_text(t)
        out += _encode(who)[1:-1]  # '"level":...,"job":"..."'
        out += b","
        out += _encode(what)[1:]  # '"command":...}'
        out += b"\n"
