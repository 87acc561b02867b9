"""Frame encoder and incremental decoder, run against both twins."""

from __future__ import annotations

import os
import zlib

import pytest

from jalien._fast.constants import (
    CODEC_JSON,
    CODEC_MSGPACK,
    CODEC_RAW,
    FLAG_COMPRESSED,
    FLAG_MORE,
    HEADER_SIZE,
)
from jalien._fast.errors import ProtocolError


def frames_of(framing, data: bytes, chunk: int, **kw) -> list:
    decoder = framing.FrameDecoder(**kw)
    out = []
    for i in range(0, len(data), chunk):
        out += decoder.feed(data[i : i + chunk])
    assert decoder.buffered == 0
    return out


def test_round_trip_small(framing):
    wire = framing.encode_frame(3, b"hello", CODEC_JSON)
    assert len(wire) == HEADER_SIZE + 5
    assert wire[:2] == b"JW"
    assert framing.FrameDecoder().feed(wire) == [(3, CODEC_JSON, b"hello")]


def test_more_flag(framing):
    wire = framing.encode_frame(5, b"page", CODEC_MSGPACK | FLAG_MORE)
    assert framing.FrameDecoder().feed(wire) == [(5, FLAG_MORE, b"page")]


def test_empty_body(framing):
    wire = framing.encode_frame(0, b"")
    assert framing.FrameDecoder().feed(wire) == [(0, CODEC_MSGPACK, b"")]


@pytest.mark.parametrize("chunk", [1, 7, 12, 13, 4096, 1 << 20])
def test_any_chunking(framing, chunk):
    bodies = [os.urandom(n) for n in (0, 1, 100, 5000)] + [b"z" * 300_000]
    wire = b"".join(framing.encode_frame(i, b, CODEC_RAW) for i, b in enumerate(bodies))
    got = frames_of(framing, wire, chunk)
    assert [(s, body) for s, _, body in got] == list(enumerate(bodies))


def test_accepts_bytearray_and_memoryview(framing):
    wire = framing.encode_frame(9, bytearray(b"abc")) + framing.encode_frame(10, memoryview(b"d"))
    dec = framing.FrameDecoder()
    assert dec.feed(bytearray(wire[:5])) == []
    assert dec.feed(memoryview(wire)[5:]) == [(9, 0, b"abc"), (10, 0, b"d")]


def test_compression_above_threshold(framing):
    body = b"lfn=/alice/data/2024/LHC24a/000123/AOD.root " * 1000
    wire = framing.encode_frame(1, body, compress_threshold=1024)
    assert wire[3] & FLAG_COMPRESSED
    assert len(wire) < len(body) // 5
    assert framing.FrameDecoder().feed(wire) == [(1, 0, body)]
    # raw mode hands the compressed body over untouched, for a proxy to forward
    ((_sid, flags, raw),) = framing.FrameDecoder(raw=True).feed(wire)
    assert flags & FLAG_COMPRESSED
    assert framing.decompress(raw) == body
    assert framing.encode_raw(77, flags, raw)[HEADER_SIZE:] == wire[HEADER_SIZE:]


def test_incompressible_body_sent_plain(framing):
    body = os.urandom(20_000)
    wire = framing.encode_frame(1, body, compress_threshold=1024)
    assert not wire[3] & FLAG_COMPRESSED
    assert len(wire) == HEADER_SIZE + len(body)


def test_threshold_zero_disables(framing):
    body = b"a" * 100_000
    assert not framing.encode_frame(1, body, compress_threshold=0)[3] & FLAG_COMPRESSED


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (b"XX\x01\x00" + bytes(8), "bad magic"),
        (b"JW\x02\x00" + bytes(8), "unsupported frame version 2"),
        (b"JW\x01\x80" + bytes(8), "unknown frame flags 0x80"),
        (b"JW\x01\x10" + bytes(8), "unknown frame flags 0x10"),
        (b"JW\x01\x00\x00\x00\x00\x01\xff\xff\xff\xff", "exceeds the limit"),
    ],
)
def test_garbage_raises_one_clear_error(framing, wire, message):
    dec = framing.FrameDecoder()
    with pytest.raises(ProtocolError, match=message):
        dec.feed(wire)
    # the decoder stays broken: the connection must be closed
    with pytest.raises(ProtocolError, match=message):
        dec.feed(b"")


def test_max_frame_size(framing):
    dec = framing.FrameDecoder(max_frame_size=100)
    assert dec.feed(framing.encode_frame(1, b"a" * 100))
    with pytest.raises(ProtocolError, match="101 bytes exceeds the limit of 100"):
        dec.feed(framing.encode_frame(1, b"a" * 101)[:HEADER_SIZE])


def test_zip_bomb_refused_before_inflating(framing):
    body = b"\0" * 10_000_000
    wire = framing.encode_frame(1, body, compress_threshold=1)
    assert len(wire) < 100_000
    with pytest.raises(ProtocolError, match="10000000 bytes exceeds the limit of 1000000"):
        framing.FrameDecoder(max_frame_size=1_000_000).feed(wire)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x00\x00\x00",
        b"\x00\x00\x00\x05" + b"not zlib",
        b"\x00\x00\x00\x09" + zlib.compress(b"12345678"),  # declared size too big
        b"\x00\x00\x00\x07" + zlib.compress(b"12345678"),  # declared size too small
        b"\x00\x00\x00\x00" + zlib.compress(b"x"),
        b"\x00\x00\x00\x08" + zlib.compress(b"12345678") + b"trailing",
        b"\x00\x00\x00\x08" + zlib.compress(b"12345678")[:-3],  # truncated
    ],
)
def test_bad_compressed_body(framing, body):
    header = b"JW\x01" + bytes([FLAG_COMPRESSED]) + (1).to_bytes(4, "big")
    with pytest.raises(ProtocolError, match="bad compressed frame body"):
        framing.FrameDecoder().feed(header + len(body).to_bytes(4, "big") + body)


def test_compressed_empty_body(framing):
    assert framing.decompress(framing.compress(b"")) == b""


@pytest.mark.parametrize("stream_id", [-1, 1 << 32])
def test_bad_stream_id(framing, stream_id):
    with pytest.raises(ValueError, match="32 bits"):
        framing.encode_frame(stream_id, b"")


def test_bad_arguments(framing):
    with pytest.raises(ValueError, match="unknown codec"):
        framing.encode_frame(1, b"", codec=7)
    with pytest.raises(ValueError, match="unknown frame flags"):
        framing.encode_raw(1, 0x40, b"")
    with pytest.raises(ValueError, match="unknown codec"):
        framing.encode_frame(1, b"", codec=FLAG_COMPRESSED)
    with pytest.raises(ValueError, match="level"):
        framing.compress(b"abc", 11)
    with pytest.raises(ValueError, match="max_frame_size"):
        framing.FrameDecoder(max_frame_size=0)


def test_many_frames_in_one_burst(framing):
    wire = b"".join(framing.encode_frame(i, i.to_bytes(4, "big")) for i in range(10_000))
    got = framing.FrameDecoder().feed(wire)
    assert len(got) == 10_000
    assert got[-1] == (9999, 0, (9999).to_bytes(4, "big"))
