"""Pure-Python twin of framing_c: frame encoder, incremental decoder and zlib bodies.

Sans-IO: bytes in, frames out. Both twins must give identical bytes and identical
errors for any input (tests/wire/test_twins_differential.py checks it).
"""

import struct
import zlib
from typing import TypeAlias

from jalien._fast.constants import (
    CODEC_MASK,
    DEFAULT_COMPRESS_THRESHOLD,
    DEFAULT_LEVEL,
    DEFAULT_MAX_FRAME,
    FLAG_COMPRESSED,
    FLAG_MORE,
    FLAGS_KNOWN,
    HEADER_SIZE,
    MAGIC,
    MAX_STREAM_ID,
    SIZE_PREFIX,
    VERSION,
)
from jalien._fast.errors import ProtocolError

_HEADER = struct.Struct(">2sBBII")
_U32 = struct.Struct(">I")
IMPLEMENTATION = "python"

# what the twins take as a body (framing_c.pyi declares the same)
BytesLike: TypeAlias = bytes | bytearray | memoryview
Frame: TypeAlias = tuple[int, int, bytes]  # (stream_id, flags, body)


def compress(data: BytesLike, level: int = DEFAULT_LEVEL) -> bytes:
    """zlib-compress *data*; the uncompressed size goes in front as a u32."""
    if not -1 <= level <= 9:
        raise ValueError("compression level must be between -1 and 9")
    return _U32.pack(len(data)) + zlib.compress(data, level)


def decompress(body: BytesLike, max_size: int = DEFAULT_MAX_FRAME) -> bytes:
    """Inverse of compress(); refuses a declared size above *max_size* before inflating."""
    if len(body) < SIZE_PREFIX:
        raise ProtocolError("bad compressed frame body")
    (size,) = _U32.unpack_from(body, 0)
    if size > max_size:
        raise ProtocolError(f"frame of {size} bytes exceeds the limit of {max_size}")
    inflater = zlib.decompressobj()
    try:
        # size + 1: room to notice a body that inflates past its declared size
        out = inflater.decompress(memoryview(body)[SIZE_PREFIX:], size + 1)
    except zlib.error:
        raise ProtocolError("bad compressed frame body") from None
    if len(out) != size or not inflater.eof or inflater.unconsumed_tail or inflater.unused_data:
        raise ProtocolError("bad compressed frame body")
    return out


def _check_stream(stream_id: int) -> None:
    if not 0 <= stream_id <= MAX_STREAM_ID:
        raise ValueError("stream id must fit in 32 bits")


def encode_frame(
    stream_id: int,
    body: BytesLike,
    codec: int = 0,
    compress_threshold: int = DEFAULT_COMPRESS_THRESHOLD,
    level: int = DEFAULT_LEVEL,
) -> bytes:
    """One frame for *body*; zlib-compressed when it is at least *compress_threshold* bytes
    and compression makes it smaller (compress_threshold <= 0 disables compression).
    *codec* may carry FLAG_MORE."""
    _check_stream(stream_id)
    if codec & ~(CODEC_MASK | FLAG_MORE):
        raise ValueError("unknown codec")
    flags = codec
    if 0 < compress_threshold <= len(body):
        packed = compress(body, level)
        if len(packed) < len(body):
            body = packed
            flags |= FLAG_COMPRESSED
    return _HEADER.pack(MAGIC, VERSION, flags, stream_id, len(body)) + bytes(body)


def encode_raw(stream_id: int, flags: int, wire_body: BytesLike) -> bytes:
    """Re-frame a body exactly as it came off the wire (a proxy changing the stream id)."""
    _check_stream(stream_id)
    if flags & ~FLAGS_KNOWN:
        raise ValueError("unknown frame flags")
    return _HEADER.pack(MAGIC, VERSION, flags, stream_id, len(wire_body)) + bytes(wire_body)


class FrameDecoder:
    """Incremental decoder: feed() any chunking, get back complete frames.

    Each frame is a tuple (stream_id, flags, body). With raw=False (the default) bodies
    come back inflated and FLAG_COMPRESSED cleared; with raw=True they are as on the wire.
    After a ProtocolError the decoder stays broken: the connection has to go.
    """

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME, raw: bool = False) -> None:
        if max_frame_size <= 0 or max_frame_size > 0xFFFFFFFF:
            raise ValueError("max_frame_size must be between 1 and 2**32-1")
        self._max = max_frame_size
        self._raw = raw
        self._buf = bytearray()
        self._error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return len(self._buf)

    def feed(self, data: BytesLike) -> list[Frame]:
        if self._error is not None:
            raise self._error
        view: memoryview | bytes
        if self._buf:
            self._buf += data
            view = memoryview(self._buf)
        else:
            view = memoryview(data).cast("B") if not isinstance(data, bytes) else data
        frames: list[Frame] = []
        pos = 0
        end = len(view)
        try:
            while end - pos >= HEADER_SIZE:
                magic, version, flags, stream_id, length = _HEADER.unpack_from(view, pos)
                if magic != MAGIC:
                    raise ProtocolError("not a jalien frame (bad magic)")
                if version != VERSION:
                    raise ProtocolError(f"unsupported frame version {version}")
                if flags & ~FLAGS_KNOWN:
                    raise ProtocolError(f"unknown frame flags 0x{flags:02x}")
                if length > self._max:
                    raise ProtocolError(f"frame of {length} bytes exceeds the limit of {self._max}")
                if end - pos - HEADER_SIZE < length:
                    break
                start = pos + HEADER_SIZE
                body = bytes(view[start : start + length])
                pos = start + length
                if flags & FLAG_COMPRESSED and not self._raw:
                    body = decompress(body, self._max)
                    flags &= ~FLAG_COMPRESSED
                frames.append((stream_id, flags, body))
        except ProtocolError as exc:
            self._error = exc
            self._buf = bytearray()
            raise
        rest = view[pos:end]
        if self._buf:
            del view, rest
            del self._buf[:pos]
        elif len(rest):
            self._buf = bytearray(rest)
        return frames
