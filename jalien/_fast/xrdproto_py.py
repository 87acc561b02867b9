"""The XRootD request decoder without I/O (pure-Python twin of xrdproto_c): bytes a client
sent in, whole requests out, and the few encoders of the server's answers.

A connection starts with the client's 20-byte handshake (five big-endian int32: 0 0 0 4
2012), reported once as a request of id ``HANDSHAKE``; then every request is a 24-byte
header (streamid[2], requestid u16, body[16], dlen i32) and dlen bytes of payload.
``feed`` returns ``(streamid, requestid, body, payload)`` for each complete request; a bad
handshake, a negative dlen or a payload beyond ``max_payload`` raise ProtocolError (the
connection must close). The ``*_args`` helpers read a request's 16-byte body; a malformed
path or readv list raises ValueError (the request is refused, the connection goes on).
"""

from __future__ import annotations

import struct

from jalien._fast.errors import ProtocolError
from jalien._fast.xrdconst import (
    HANDSHAKE,
    HANDSHAKE_FIFTH,
    HANDSHAKE_FOURTH,
    HANDSHAKE_SIZE,
    HEADER_SIZE,
    MAX_PAYLOAD,
    READV_ELEMENT,
)

IMPLEMENTATION = "python"

_HANDSHAKE = struct.Struct(">5i")
_HEADER = struct.Struct(">HH16si")
_RESPONSE = struct.Struct(">HHi")
_ERROR = struct.Struct(">HHii")
_READ = struct.Struct(">Iqi")
_WRITE = struct.Struct(">Iq")
_OPEN = struct.Struct(">HH")
_U32 = struct.Struct(">I")
_PROTOCOL = struct.Struct(">iBB")
_QUERY = struct.Struct(">H2xI")
_READV = struct.Struct(">Iiq")

Request = tuple[int, int, bytes, bytes]


class RequestDecoder:
    """Whole requests out of the bytes of one connection."""

    def __init__(self, max_payload: int = MAX_PAYLOAD, handshake: bool = True) -> None:
        self._buf = bytearray()
        self._max = max_payload
        self._shaken = not handshake

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Request]:
        buf = self._buf
        buf += data
        out: list[Request] = []
        end = len(buf)
        pos = 0
        if not self._shaken:
            if end < HANDSHAKE_SIZE:
                return out
            if _HANDSHAKE.unpack_from(buf, 0) != (0, 0, 0, HANDSHAKE_FOURTH, HANDSHAKE_FIFTH):
                raise ProtocolError("not an XRootD handshake")
            self._shaken = True
            out.append((0, HANDSHAKE, b"", b""))
            pos = HANDSHAKE_SIZE
        while end - pos >= HEADER_SIZE:
            streamid, requestid, body, dlen = _HEADER.unpack_from(buf, pos)
            if dlen < 0 or dlen > self._max:
                raise ProtocolError(
                    f"request {requestid} carries {dlen} bytes (at most {self._max})"
                )
            start = pos + HEADER_SIZE
            if end - start < dlen:
                break
            out.append((streamid, requestid, body, bytes(buf[start : start + dlen])))
            pos = start + dlen
        if pos:
            del buf[:pos]
        return out


def open_args(body: bytes) -> tuple[int, int]:
    """kXR_open: (mode, options)."""
    return _OPEN.unpack_from(body, 0)


def read_args(body: bytes) -> tuple[int, int, int]:
    """kXR_read: (fhandle, offset, rlen)."""
    return _READ.unpack_from(body, 0)


def write_args(body: bytes) -> tuple[int, int]:
    """kXR_write: (fhandle, offset)."""
    return _WRITE.unpack_from(body, 0)


def handle_arg(body: bytes) -> int:
    """kXR_close, kXR_sync: the file handle (the body's first four bytes)."""
    return int(_U32.unpack_from(body, 0)[0])


def stat_args(body: bytes) -> tuple[int, int]:
    """kXR_stat: (options, fhandle)."""
    return body[0], int(_U32.unpack_from(body, 12)[0])


def query_args(body: bytes) -> tuple[int, int]:
    """kXR_query: (infotype, fhandle)."""
    return _QUERY.unpack_from(body, 0)


def protocol_args(body: bytes) -> tuple[int, int, int]:
    """kXR_protocol: (client protocol version, flags, expect)."""
    return _PROTOCOL.unpack_from(body, 0)


def dirlist_args(body: bytes) -> int:
    """kXR_dirlist: options."""
    return body[15]


def readv_list(payload: bytes) -> list[tuple[int, int, int]]:
    """kXR_readv's payload: [(fhandle, rlen, offset)]."""
    if len(payload) % READV_ELEMENT:
        raise ValueError(f"readv list of {len(payload)} bytes is not a multiple of 16")
    out = [_READV.unpack_from(payload, i) for i in range(0, len(payload), READV_ELEMENT)]
    for _, rlen, offset in out:
        if rlen < 0 or offset < 0:
            raise ValueError("readv element with a negative length or offset")
    return out


def path_arg(payload: bytes) -> tuple[str, str]:
    """A request's path payload: (path, CGI after '?'), trailing NULs dropped."""
    end = payload.find(b"\x00")
    raw = payload if end < 0 else payload[:end]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("path is not UTF-8") from None
    path, _, cgi = text.partition("?")
    return path, cgi


def response(streamid: int, status: int, body: bytes = b"") -> bytes:
    """A response header and its body."""
    return _RESPONSE.pack(streamid, status, len(body)) + body


def response_header(streamid: int, status: int, dlen: int) -> bytes:
    """A response header alone (the body follows by sendfile)."""
    return _RESPONSE.pack(streamid, status, dlen)


def error(streamid: int, code: int, message: str) -> bytes:
    """kXR_error: errnum and a NUL-terminated message."""
    text = message.encode("utf-8", "replace") + b"\x00"
    return _ERROR.pack(streamid, 4003, 4 + len(text), code) + text


def readv_element(fhandle: int, rlen: int, offset: int) -> bytes:
    """The header of one readv element in the answer."""
    return _READV.pack(fhandle, rlen, offset)
