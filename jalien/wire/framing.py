"""Frames of the binary channel: the header layout and the chosen twin's functions.

A frame is a 12-byte header (magic ``JW``, version, flags, stream id, body length) and a
body. Flags carry the codec (MessagePack, JSON, raw bytes), whether the body is
zlib-compressed (per frame, above a size threshold, so that a proxy can forward a frame
without inflating it) and whether more frames of the same reply follow (FLAG_MORE).
Stream ids name a channel and a request (jalien.wire.streams). See docs/PROTOCOL.md.
"""

from __future__ import annotations

from jalien._fast import IMPLEMENTATION, framing
from jalien._fast.constants import (
    CODEC_JSON,
    CODEC_MASK,
    CODEC_MSGPACK,
    CODEC_RAW,
    DEFAULT_COMPRESS_THRESHOLD,
    DEFAULT_MAX_FRAME,
    FLAG_COMPRESSED,
    FLAG_MORE,
    HEADER_SIZE,
    MAGIC,
    VERSION,
)
from jalien._fast.errors import ProtocolError

FrameDecoder = framing.FrameDecoder
encode_frame = framing.encode_frame
encode_raw = framing.encode_raw
compress = framing.compress
decompress = framing.decompress

__all__ = [
    "CODEC_JSON",
    "CODEC_MASK",
    "CODEC_MSGPACK",
    "CODEC_RAW",
    "DEFAULT_COMPRESS_THRESHOLD",
    "DEFAULT_MAX_FRAME",
    "FLAG_COMPRESSED",
    "FLAG_MORE",
    "HEADER_SIZE",
    "IMPLEMENTATION",
    "MAGIC",
    "VERSION",
    "FrameDecoder",
    "ProtocolError",
    "compress",
    "decompress",
    "encode_frame",
    "encode_raw",
]
