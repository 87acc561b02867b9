"""Both twins give identical bytes and identical errors on random input (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jalien._fast import NO_EXTENSIONS, framing_py
from jalien._fast.errors import ProtocolError

framing_c = pytest.importorskip("jalien._fast.framing_c")
pytestmark = [
    pytest.mark.cython_only,
    pytest.mark.skipif(NO_EXTENSIONS, reason="extensions disabled"),
]


def outcome(impl, fn):
    try:
        return ("ok", fn(impl))
    except ProtocolError as exc:
        return ("ProtocolError", str(exc))
    except ValueError as exc:
        return ("ValueError", str(exc))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    stream_id=st.integers(0, 2**32 - 1),
    body=st.binary(max_size=4096)
    | st.builds(lambda n, c: c * n, st.integers(0, 5000), st.binary(min_size=1, max_size=3)),
    codec=st.integers(0, 15),
    threshold=st.integers(-1, 5000),
    level=st.integers(-1, 9),
)
def test_encode_identical(stream_id, body, codec, threshold, level):
    def fn(m):
        return m.encode_frame(stream_id, body, codec, threshold, level)

    assert outcome(framing_py, fn) == outcome(framing_c, fn)


def _decode_all(data: bytes, cuts: list[int], max_size: int, raw: bool):
    def fn(m):
        dec = m.FrameDecoder(max_frame_size=max_size, raw=raw)
        out = []
        prev = 0
        for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
            out += dec.feed(data[prev:cut])
            prev = cut
        return out, dec.buffered

    return fn


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.binary(max_size=2048),
    cuts=st.lists(st.integers(0, 4096), max_size=6),
    max_size=st.integers(1, 4096),
    raw=st.booleans(),
)
def test_decode_random_bytes_identical(data, cuts, max_size, raw):
    fn = _decode_all(data, cuts, max_size, raw)
    assert outcome(framing_py, fn) == outcome(framing_c, fn)


frame_parts = st.tuples(
    st.integers(0, 2**32 - 1), st.binary(max_size=3000), st.integers(0, 2), st.integers(0, 2000)
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    frames=st.lists(frame_parts, max_size=8),
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4),
    cuts=st.lists(st.integers(0, 30000), max_size=6),
)
def test_decode_mutated_frames_identical(frames, flips, cuts):
    """Valid frames (some compressed) with a few bytes overwritten: same frames or same error."""
    data = bytearray(b"".join(framing_py.encode_frame(s, b, c, t) for s, b, c, t in frames))
    for pos, value in flips:
        if data:
            data[pos % len(data)] = value
    fn = _decode_all(bytes(data), cuts, 1 << 20, False)
    assert outcome(framing_py, fn) == outcome(framing_c, fn)
