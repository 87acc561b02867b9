"""The SE's XRootD session without I/O: the rules of a connection (handshake first, login
before files, what is answered at once, what becomes an event) on bytes alone."""

from __future__ import annotations

import struct

import pytest

from jalien._fast import xrdconst as X
from jalien._fast.errors import ProtocolError
from jalien.storage.xrd_session import (
    PROTOCOL_VERSION,
    Answer,
    Checksum,
    Close,
    Dirlist,
    Open,
    Read,
    ReadV,
    Session,
    Stat,
    Write,
    cgi_value,
)

HANDSHAKE = struct.pack(">5i", 0, 0, 0, 4, 2012)


def request(sid: int, rid: int, body: bytes = b"", payload: bytes = b"") -> bytes:
    return struct.pack(">HH16si", sid, rid, body.ljust(16, b"\0"), len(payload)) + payload


def answer(event) -> tuple[int, int, bytes]:
    assert isinstance(event, Answer)
    sid, status, dlen = struct.unpack(">HHi", event.data[:8])
    assert dlen == len(event.data) - 8
    return sid, status, event.data[8:]


def logged_in() -> Session:
    session: Session[object] = Session()
    session.receive(HANDSHAKE + request(1, X.kXR_protocol) + request(2, X.kXR_login))
    return session


def test_handshake_protocol_login_in_one_read():
    session: Session[object] = Session()
    shake, proto, login = session.receive(
        HANDSHAKE
        + request(1, X.kXR_protocol, struct.pack(">iBB", 0x520, 3, 3))
        + request(2, X.kXR_login)
    )
    assert answer(shake) == (0, X.kXR_ok, struct.pack(">ii", PROTOCOL_VERSION, X.kXR_DataServer))
    sid, status, body = answer(proto)
    version, flags = struct.unpack(">ii", body)
    assert (sid, status) == (1, X.kXR_ok)
    assert version < 0x511 and not flags & X.kXR_suppgrw  # clients read and write plainly
    sid, status, body = answer(login)
    assert (sid, status, len(body)) == (2, X.kXR_ok, 16)


def test_not_xrootd_closes():
    with pytest.raises(ProtocolError):
        Session().receive(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")


def test_files_need_a_login():
    session: Session[object] = Session()
    (_, event) = session.receive(HANDSHAKE + request(5, X.kXR_open, b"", b"/se/x"))
    sid, status, body = answer(event)
    assert (sid, status) == (5, X.kXR_error)
    assert struct.unpack(">i", body[:4])[0] == X.kXR_InvalidRequest


def test_file_requests_become_events():
    session = logged_in()
    events = session.receive(
        request(3, X.kXR_open, struct.pack(">HH", 0o644, X.kXR_new), b"/se/a?x=1&authz=E\0")
        + request(4, X.kXR_read, struct.pack(">Iqi", 7, 100, 4096))
        + request(5, X.kXR_write, struct.pack(">Iq", 7, 0), b"data")
        + request(6, X.kXR_readv, b"", struct.pack(">Iiq", 7, 10, 0) * 2)
        + request(7, X.kXR_close, struct.pack(">I", 7))
        + request(8, X.kXR_stat, b"", b"/se/a?authz=E")
        + request(9, X.kXR_query, struct.pack(">H", X.kXR_Qcksum), b"/se/a")
        + request(10, X.kXR_dirlist, bytes(15) + b"\x02", b"/se")
    )
    assert events == [
        Open(3, "/se/a", "x=1&authz=E", X.kXR_new, 0o644),
        Read(4, 7, 100, 4096),
        Write(5, 7, 0, b"data"),
        ReadV(6, [(7, 10, 0), (7, 10, 0)]),
        Close(7, 7),
        Stat(8, "/se/a", "authz=E", 0),
        Checksum(9, "/se/a", ""),
        Dirlist(10, "/se", "", True),
    ]
    assert cgi_value("x=1&authz=E", "authz") == "E" and cgi_value("x=1", "authz") == ""


def test_answered_at_once():
    session = logged_in()
    ping, config, pgread, relative, big = session.receive(
        request(3, X.kXR_ping)
        + request(4, X.kXR_query, struct.pack(">H", X.kXR_Qconfig), b"readv_iov_max chksum")
        + request(5, X.kXR_pgread)
        + request(6, X.kXR_open, b"", b"se/relative")
        + request(7, X.kXR_readv, b"", struct.pack(">Iiq", 1, 3_000_000, 0))
    )
    assert answer(ping) == (3, X.kXR_ok, b"")
    assert answer(config) == (4, X.kXR_ok, b"1024\n0:md5\n")
    for event, code, text in (
        (pgread, X.kXR_Unsupported, b"pgread is not supported"),
        (relative, X.kXR_ArgInvalid, b"not an absolute path"),
        (big, X.kXR_ArgInvalid, b"readv element beyond"),
    ):
        _, status, body = answer(event)
        assert status == X.kXR_error and struct.unpack(">i", body[:4])[0] == code
        assert text in body


def test_handles():
    session: Session[str] = Session()
    first, second = session.add_file("a"), session.add_file("b")
    assert first != second and session.file(first) == "a"
    assert session.remove_file(first) == "a" and session.file(first) is None
    assert session.open_body(second, None) == second.to_bytes(4, "big")
