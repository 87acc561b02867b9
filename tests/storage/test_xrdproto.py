"""The XRootD request decoder: every test runs against both twins (xrdproto_py and, when
built, xrdproto_c), hypothesis fuzzes each alone (no exception but ProtocolError/ValueError)
and compares them (identical requests, answers and errors on random bytes)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jalien._fast import NO_EXTENSIONS, xrdproto_py
from jalien._fast import xrdconst as X
from jalien._fast.errors import ProtocolError

try:
    from jalien._fast import xrdproto_c
except ImportError:
    xrdproto_c = None  # type: ignore[assignment]

TWINS = [pytest.param(xrdproto_py, id="py")]
if xrdproto_c is not None and not NO_EXTENSIONS:
    TWINS.append(pytest.param(xrdproto_c, id="c"))
else:
    TWINS.append(pytest.param(None, id="c", marks=pytest.mark.skip("xrdproto_c not built")))

HANDSHAKE = struct.pack(">5i", 0, 0, 0, 4, 2012)


def request(streamid: int, requestid: int, body: bytes = b"", payload: bytes = b"") -> bytes:
    return (
        struct.pack(">HH16si", streamid, requestid, body.ljust(16, b"\0"), len(payload)) + payload
    )


@pytest.fixture(params=TWINS)
def xp(request):
    return request.param


def test_handshake_then_requests_in_pieces(xp):
    wire = HANDSHAKE + request(1, X.kXR_protocol) + request(2, X.kXR_open, b"", b"/se/x?authz=e")
    dec = xp.RequestDecoder()
    out = []
    for i in range(len(wire)):  # one byte at a time
        out += dec.feed(wire[i : i + 1])
    assert out == [
        (0, X.HANDSHAKE, b"", b""),
        (1, X.kXR_protocol, bytes(16), b""),
        (2, X.kXR_open, bytes(16), b"/se/x?authz=e"),
    ]
    assert dec.buffered == 0


def test_bad_handshake_and_oversized_payload_close(xp):
    with pytest.raises(ProtocolError):
        xp.RequestDecoder().feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    dec = xp.RequestDecoder(max_payload=100, handshake=False)
    with pytest.raises(ProtocolError):
        dec.feed(struct.pack(">HH16si", 1, X.kXR_write, bytes(16), 101))
    with pytest.raises(ProtocolError):
        xp.RequestDecoder(handshake=False).feed(
            struct.pack(">HH16si", 1, X.kXR_write, bytes(16), -1)
        )


def test_bodies(xp):
    assert xp.open_args(struct.pack(">HH12x", 0o644, X.kXR_new | X.kXR_mkpath)) == (
        0o644,
        X.kXR_new | X.kXR_mkpath,
    )
    assert xp.read_args(struct.pack(">Iqi", 7, 2**40, 1 << 20)) == (7, 2**40, 1 << 20)
    assert xp.write_args(struct.pack(">Iq4x", 9, 123)) == (9, 123)
    assert xp.handle_arg(struct.pack(">I12x", 0xDEADBEEF)) == 0xDEADBEEF
    assert xp.stat_args(struct.pack(">B11xI", 1, 5)) == (1, 5)
    assert xp.query_args(struct.pack(">H2xI8x", X.kXR_Qcksum, 3)) == (X.kXR_Qcksum, 3)
    assert xp.protocol_args(struct.pack(">iBB10x", 0x520, 3, 1)) == (0x520, 3, 1)
    assert xp.dirlist_args(bytes(15) + b"\x02") == 2
    chunks = struct.pack(">Iiq", 1, 10, 0) + struct.pack(">Iiq", 1, 5, 1 << 33)
    assert xp.readv_list(chunks) == [(1, 10, 0), (1, 5, 1 << 33)]
    with pytest.raises(ValueError):
        xp.readv_list(chunks[:-1])
    with pytest.raises(ValueError):
        xp.readv_list(struct.pack(">Iiq", 1, -1, 0))
    assert xp.path_arg(b"/se/a?x=1&authz=e\x00\x00") == ("/se/a", "x=1&authz=e")
    with pytest.raises(ValueError):
        xp.path_arg(b"/se/\xff")


def test_encoders(xp):
    assert xp.response(5, 0, b"abc") == b"\x00\x05\x00\x00\x00\x00\x00\x03abc"
    assert xp.response(5, 0) == b"\x00\x05\x00\x00\x00\x00\x00\x00"
    assert xp.response_header(1, 0, 1 << 30) == struct.pack(">HHi", 1, 0, 1 << 30)
    assert xp.error(2, 3010, "no") == struct.pack(">HHii", 2, 4003, 7, 3010) + b"no\x00"
    assert xp.readv_element(1, 10, 1 << 33) == struct.pack(">Iiq", 1, 10, 1 << 33)


def _outcome(fn):
    try:
        return ("ok", fn())
    except ProtocolError as exc:
        return ("ProtocolError", str(exc))
    except ValueError as exc:
        return ("ValueError", str(exc))


def _feed_all(xp, data: bytes, cuts: list[int], handshake: bool):
    def run():
        dec = xp.RequestDecoder(max_payload=4096, handshake=handshake)
        out, prev = [], 0
        for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
            out += dec.feed(data[prev:cut])
            prev = cut
        return out, dec.buffered

    return run


_requests = st.lists(
    st.tuples(
        st.integers(0, 65535), st.integers(0, 65535), st.binary(max_size=16), st.binary(max_size=64)
    ),
    max_size=5,
).map(lambda rs: b"".join(request(*r) for r in rs))
_wire = st.one_of(st.binary(max_size=300), _requests, _requests.map(lambda b: HANDSHAKE + b))


@pytest.mark.slow
@settings(
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    deadline=None,
)
@given(data=_wire, cuts=st.lists(st.integers(0, 400), max_size=5), handshake=st.booleans())
def test_fuzz_decoder(xp, data, cuts, handshake):
    """Random bytes in any pieces: whole requests, or ProtocolError; never anything else."""
    kind, _ = _outcome(_feed_all(xp, data, cuts, handshake))
    assert kind in ("ok", "ProtocolError")


@pytest.mark.slow
@settings(
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    deadline=None,
)
@given(body=st.binary(min_size=16, max_size=16), payload=st.binary(max_size=80))
def test_fuzz_bodies(xp, body, payload):
    for fn in (
        xp.open_args,
        xp.read_args,
        xp.write_args,
        xp.handle_arg,
        xp.stat_args,
        xp.query_args,
        xp.protocol_args,
        xp.dirlist_args,
    ):
        fn(body)
    _outcome(lambda: xp.readv_list(payload))
    _outcome(lambda: xp.path_arg(payload))


twins_differ = pytest.mark.skipif(
    xrdproto_c is None or NO_EXTENSIONS, reason="xrdproto_c not built or disabled"
)


@pytest.mark.cython_only
@twins_differ
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=_wire, cuts=st.lists(st.integers(0, 400), max_size=5), handshake=st.booleans())
def test_twins_decode_identically(data, cuts, handshake):
    assert _outcome(_feed_all(xrdproto_py, data, cuts, handshake)) == _outcome(
        _feed_all(xrdproto_c, data, cuts, handshake)
    )


@pytest.mark.cython_only
@twins_differ
@settings(
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    deadline=None,
)
@given(
    body=st.binary(min_size=16, max_size=16),
    payload=st.binary(max_size=80),
    sid=st.integers(0, 65535),
    code=st.integers(3000, 3040),
    text=st.text(max_size=40),
)
def test_twins_bodies_and_answers_identical(body, payload, sid, code, text):
    for name in (
        "open_args",
        "read_args",
        "write_args",
        "handle_arg",
        "stat_args",
        "query_args",
        "protocol_args",
        "dirlist_args",
    ):
        assert getattr(xrdproto_py, name)(body) == getattr(xrdproto_c, name)(body), name
    for name in ("readv_list", "path_arg"):
        py, c = getattr(xrdproto_py, name), getattr(xrdproto_c, name)
        assert _outcome(lambda f=py: f(payload)) == _outcome(lambda f=c: f(payload)), name
    assert xrdproto_py.response(sid, 0, payload) == xrdproto_c.response(sid, 0, payload)
    assert xrdproto_py.error(sid, code, text) == xrdproto_c.error(sid, code, text)
