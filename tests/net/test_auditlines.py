"""The audit log's line maker (jalien/_fast/auditlines_*): both twins write exactly the
bytes msgspec writes for the audit record (net.audit.AuditRecord, made here from the entry
as docs/audit.md says), whatever the text (escapes, non-ASCII), the numbers and the
identity."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jalien._fast import NO_EXTENSIONS, auditlines_py
from jalien.net.audit import REFUSAL_CODES, AuditRecord, _bounded, _Clock, bound_args


def _twins():
    twins = [pytest.param(auditlines_py, id="py")]
    try:
        from jalien._fast import auditlines_c
    except ImportError:
        auditlines_c = None
    if auditlines_c is not None and not NO_EXTENSIONS:
        twins.append(pytest.param(auditlines_c, id="c"))
    return twins


class Kind(enum.Enum):
    USER = "user"
    JOB = "job"


@dataclass(frozen=True)
class Who:
    kind: Kind | None
    dn: str
    login: str
    job_id: str


def record(entry: tuple) -> AuditRecord:
    """The oracle: the record of an entry, field by field."""
    (
        t, event, peer, personality, channel, identity, command, options, exitcode,
        error, seconds, bytes_out, pages,
    ) = entry  # fmt: skip
    if identity is None:
        kind = dn = login = job = ""
    else:
        kind = identity.kind.value if identity.kind is not None else ""
        dn, login, job = identity.dn, identity.login, identity.job_id
    error = _bounded(error) if error else error
    refused = error if event != "request" or exitcode in REFUSAL_CODES else ""
    return AuditRecord(
        _Clock().at(t), "jcentral", event, peer, personality, channel, kind, dn, login, job,
        command, bound_args(command, options), exitcode, error, refused,
        round(seconds * 1000.0, 3), bytes_out, pages,
    )  # fmt: skip


def expected(entry: tuple) -> bytes:
    return msgspec.json.encode(record(entry)) + b"\n"


def made(twin, entries) -> bytes:
    maker = twin.LineMaker("jcentral", _Clock().at, bound_args, _bounded, REFUSAL_CODES)
    out = bytearray()
    for entry in entries:
        maker.add(entry, out)
    return bytes(out)


JDOE = Who(Kind.USER, "/C=ch/O=AliEn/CN=jdoe", "jdoe", "")


@pytest.mark.parametrize("twin", _twins())
def test_the_usual_lines(twin):
    now = time.time()
    entries = [
        (now, "request", "127.0.0.1:4000", "binary", 0, JDOE, "ping", [], 0, "", 1.2e-05, 45, 1),
        (now, "request", "127.0.0.1:4000", "binary", 3, JDOE, "ls", ["-l", "/alice/"], 2,
         "no such file", 0.0021, 120, 1),
        (now + 0.5, "connect", "[::1]:5", "websocket", 0, None, "", (), 13, "no cert", 0.0, 0, 0),
        (now, "request", "127.0.0.1:4000", "binary", 0, JDOE, "commit", ["secret.envelope"],
         "forwarded", "", 123456.0, 1, 2),
        (now, "request", "h:1", "websocket", 0, Who(None, "é\"\\\n", "ü", "7"), "cat",
         ["x" * 600, "\x00\x7f"], 13, "e" * 2000, 5e15, 2**70, 3),
    ]  # fmt: skip
    assert made(twin, entries) == b"".join(map(expected, entries))


texts = st.text(max_size=80)


@st.composite
def entries(draw):
    identity = draw(
        st.none() | st.builds(Who, st.none() | st.sampled_from(Kind), texts, texts, texts)
    )
    return (
        draw(st.floats(min_value=1.6e9, max_value=2.0e9)),
        draw(st.sampled_from(["request", "connect", "channel"])),
        draw(texts),
        draw(st.sampled_from(["binary", "websocket"])),
        draw(st.integers(min_value=0, max_value=2**40)),
        identity,
        draw(texts),
        draw(st.lists(texts, max_size=8)),
        draw(st.integers(min_value=-(2**63), max_value=2**64) | st.just("forwarded")),
        draw(texts),
        draw(
            st.floats(min_value=0, max_value=1e15, allow_nan=False)
            | st.floats(min_value=0, max_value=1e-2)
        ),
        draw(st.integers(min_value=0, max_value=2**70)),
        draw(st.integers(min_value=0, max_value=10**6)),
    )


@pytest.mark.parametrize("twin", _twins())
@settings(max_examples=300, deadline=None)
@given(st.lists(entries(), min_size=1, max_size=6))
def test_any_entry_is_the_record_msgspec_writes(twin, batch):
    assert made(twin, batch) == b"".join(map(expected, batch))


@pytest.mark.parametrize("twin", _twins())
def test_a_connection_s_part_follows_its_identity(twin):
    """The part a connection's lines share is kept by identity: another identity at the same
    address (a reconnect) gets its own."""
    now = time.time()
    other = Who(Kind.JOB, "/CN=job", "jdoe", "42")
    batch = [
        (now, "request", "127.0.0.1:4000", "binary", 0, who, "ping", [], 0, "", 0.001, 1, 1)
        for who in (JDOE, other, JDOE)
    ]
    assert made(twin, batch) == b"".join(map(expected, batch))


@pytest.mark.parametrize("twin", _twins())
@pytest.mark.parametrize(
    "seconds",
    [0.0, -0.0, 1e-7, 5e-7, 0.0000015, 0.0015, 0.0025, 2.675e-3, 1.0005e-3, 0.1, 123.4565,
     999.9999995, 1e6 - 5e-7, 1e6, 1e7, 1e12, float("inf"), float("nan")],
)  # fmt: skip
def test_durations_as_msgspec_writes_them(twin, seconds):
    """Ties and near-ties of the rounding to a microsecond, the edge of the fast path (1e9
    ms), exponents and non-finite values."""
    entry = (1.7e9, "request", "p", "binary", 0, JDOE, "ping", [], 0, "", seconds, 1, 1)
    assert made(twin, [entry]) == expected(entry)
