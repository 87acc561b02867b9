"""A bounded fuzz run of the decoder: whatever the bytes, it returns frames or raises
ProtocolError, and never crashes the process (the Cython twin works on raw pointers)."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jalien._fast.errors import ProtocolError


def _structured(rng: random.Random, framing) -> bytes:
    parts = []
    for _ in range(rng.randint(1, 6)):
        body = rng.randbytes(rng.randint(0, 300)) * rng.randint(1, 50)
        parts.append(framing.encode_frame(rng.getrandbits(32), body, rng.randint(0, 2), 64))
    data = bytearray(b"".join(parts))
    for _ in range(rng.randint(0, 3)):
        data[rng.randrange(len(data))] = rng.getrandbits(8)
    return bytes(data[: rng.randint(0, len(data))])


def test_fuzz_structured(framing):
    rng = random.Random(20261125)
    for _ in range(3000):
        data = _structured(rng, framing)
        dec = framing.FrameDecoder(max_frame_size=rng.choice([16, 1024, 1 << 20]))
        try:
            pos = 0
            while pos < len(data):
                step = rng.randint(1, 64)
                for sid, flags, body in dec.feed(data[pos : pos + step]):
                    assert 0 <= sid < 2**32 and 0 <= flags < 16 and not flags & 4
                    assert isinstance(body, bytes)
                pos += step
        except ProtocolError:
            pass


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=10))
def test_fuzz_random_chunks(framing, chunks):
    dec = framing.FrameDecoder(max_frame_size=4096)
    try:
        for chunk in chunks:
            dec.feed(b"JW\x01" + chunk if len(chunk) % 3 == 0 else chunk)
    except ProtocolError:
        pass
