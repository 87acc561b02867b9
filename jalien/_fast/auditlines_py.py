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
        out += self.time_text(t)
        out += b'"level":' + _encode(self.level)
        out += b',"event":' + _encode(event)
        out += b',"peer":' + _encode(peer)
        out += b',"personality":' + _encode(personality)
        out += b',"channel":' + _encode(channel)
        out += b',"kind":' + _encode(kind)
        out += b',"dn":' + _encode(dn)
        out += b',"login":' + _encode(login)
        out += b',"job":' + _encode(job)
        out += b',"command":' + _encode(command)
        out += b',"args":' + _encode(args)
        out += b',"exitcode":' + _encode(exitcode)
        out += b',"error":' + _encode(error)
        out += b',"refused":' + _encode(refused)
        out += b',"duration_ms":' + _encode(round(seconds * 1000.0, 3))
        out += b',"bytes_out":' + _encode(bytes_out)
        out += b',"pages":' + _encode(pages) + b"}\n"
