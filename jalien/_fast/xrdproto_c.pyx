# cython: language_level=3
"""Cython twin of xrdproto_py: the same API and the same answers; headers and bodies read
with pointer arithmetic instead of struct."""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy

from jalien._fast.errors import ProtocolError
from jalien._fast.xrdconst import MAX_PAYLOAD

IMPLEMENTATION = "cython"

DEF HANDSHAKE_SIZE = 20
DEF HEADER_SIZE = 24
DEF READV_ELEMENT = 16
DEF HANDSHAKE_ID = 0
DEF STATUS_ERROR = 4003


cdef inline uint16_t _u16(const uint8_t *p) noexcept nogil:
    return ((<uint16_t>p[0]) << 8) | p[1]


cdef inline uint32_t _u32(const uint8_t *p) noexcept nogil:
    return ((<uint32_t>p[0]) << 24) | ((<uint32_t>p[1]) << 16) | ((<uint32_t>p[2]) << 8) | p[3]


cdef inline int64_t _i64(const uint8_t *p) noexcept nogil:
    return <int64_t>(((<uint64_t>_u32(p)) << 32) | _u32(p + 4))


cdef inline void _put_u16(uint8_t *p, uint16_t v) noexcept nogil:
    p[0] = (v >> 8) & 0xFF
    p[1] = v & 0xFF


cdef inline void _put_u32(uint8_t *p, uint32_t v) noexcept nogil:
    p[0] = (v >> 24) & 0xFF
    p[1] = (v >> 16) & 0xFF
    p[2] = (v >> 8) & 0xFF
    p[3] = v & 0xFF


cdef inline void _put_i64(uint8_t *p, int64_t v) noexcept nogil:
    _put_u32(p, <uint32_t>((<uint64_t>v) >> 32))
    _put_u32(p + 4, <uint32_t>(<uint64_t>v))


cdef const uint8_t *_body16(bytes body) except NULL:
    if len(body) < 16:
        raise ValueError("a request body is 16 bytes")
    return <const uint8_t *>PyBytes_AS_STRING(body)


cdef class RequestDecoder:
    cdef bytearray _buf
    cdef Py_ssize_t _max
    cdef bint _shaken

    def __init__(self, max_payload: int = MAX_PAYLOAD, handshake: bool = True):
        self._buf = bytearray()
        self._max = max_payload
        self._shaken = not handshake

    @property
    def buffered(self):
        return len(self._buf)

    def feed(self, data):
        cdef bytearray buf = self._buf
        buf += data
        cdef list out = []
        cdef Py_ssize_t end = len(buf)
        cdef Py_ssize_t pos = 0
        cdef Py_ssize_t start
        cdef int32_t dlen
        cdef const uint8_t *p = <const uint8_t *>(<char *>buf)
        if not self._shaken:
            if end < HANDSHAKE_SIZE:
                return out
            if (_u32(p) != 0 or _u32(p + 4) != 0 or _u32(p + 8) != 0 or _u32(p + 12) != 4
                    or _u32(p + 16) != 2012):
                raise ProtocolError("not an XRootD handshake")
            self._shaken = True
            out.append((0, HANDSHAKE_ID, b"", b""))
            pos = HANDSHAKE_SIZE
        while end - pos >= HEADER_SIZE:
            dlen = <int32_t>_u32(p + pos + 20)
            if dlen < 0 or dlen > self._max:
                raise ProtocolError(
                    f"request {_u16(p + pos + 2)} carries {dlen} bytes (at most {self._max})"
                )
            start = pos + HEADER_SIZE
            if end - start < dlen:
                break
            out.append((
                _u16(p + pos),
                _u16(p + pos + 2),
                PyBytes_FromStringAndSize(<const char *>(p + pos + 4), 16),
                PyBytes_FromStringAndSize(<const char *>(p + start), dlen),
            ))
            pos = start + dlen
        if pos:
            del buf[:pos]
        return out


def open_args(bytes body):
    cdef const uint8_t *p = _body16(body)
    return _u16(p), _u16(p + 2)


def read_args(bytes body):
    cdef const uint8_t *p = _body16(body)
    return _u32(p), _i64(p + 4), <int32_t>_u32(p + 12)


def write_args(bytes body):
    cdef const uint8_t *p = _body16(body)
    return _u32(p), _i64(p + 4)


def handle_arg(bytes body):
    cdef const uint8_t *p = _body16(body)
    return _u32(p)


def stat_args(bytes body):
    cdef const uint8_t *p = _body16(body)
    return p[0], _u32(p + 12)


def query_args(bytes body):
    cdef const uint8_t *p = _body16(body)
    return _u16(p), _u32(p + 4)


def protocol_args(bytes body):
    cdef const uint8_t *p = _body16(body)
    return <int32_t>_u32(p), p[4], p[5]


def dirlist_args(bytes body):
    cdef const uint8_t *p = _body16(body)
    return p[15]


def readv_list(bytes payload):
    cdef Py_ssize_t n = len(payload)
    if n % READV_ELEMENT:
        raise ValueError(f"readv list of {n} bytes is not a multiple of 16")
    cdef const uint8_t *p = <const uint8_t *>PyBytes_AS_STRING(payload)
    cdef list out = []
    cdef Py_ssize_t i = 0
    cdef int32_t rlen
    cdef int64_t offset
    while i < n:
        rlen = <int32_t>_u32(p + i + 4)
        offset = _i64(p + i + 8)
        if rlen < 0 or offset < 0:
            raise ValueError("readv element with a negative length or offset")
        out.append((_u32(p + i), rlen, offset))
        i += READV_ELEMENT
    return out


def path_arg(bytes payload):
    cdef Py_ssize_t end = payload.find(b"\x00")
    raw = payload if end < 0 else payload[:end]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("path is not UTF-8") from None
    path, _, cgi = text.partition("?")
    return path, cgi


cdef bytes _header(int streamid, int status, Py_ssize_t dlen, Py_ssize_t extra):
    cdef bytes out = PyBytes_FromStringAndSize(NULL, 8 + extra)
    cdef uint8_t *q = <uint8_t *>PyBytes_AS_STRING(out)
    _put_u16(q, <uint16_t>streamid)
    _put_u16(q + 2, <uint16_t>status)
    _put_u32(q + 4, <uint32_t>dlen)
    return out


def response(int streamid, int status, body=b""):
    cdef const unsigned char[::1] view = body if len(body) else b"\x00"
    cdef Py_ssize_t n = len(body)
    cdef bytes out = _header(streamid, status, n, n)
    if n:
        memcpy(<uint8_t *>PyBytes_AS_STRING(out) + 8, &view[0], n)
    return out


def response_header(int streamid, int status, Py_ssize_t dlen):
    return _header(streamid, status, dlen, 0)


def error(int streamid, int code, str message):
    cdef bytes text = message.encode("utf-8", "replace") + b"\x00"
    cdef Py_ssize_t n = len(text)
    cdef bytes out = _header(streamid, STATUS_ERROR, n + 4, n + 4)
    cdef uint8_t *q = <uint8_t *>PyBytes_AS_STRING(out)
    _put_u32(q + 8, <uint32_t>code)
    memcpy(q + 12, PyBytes_AS_STRING(text), n)
    return out


def readv_element(uint32_t fhandle, int32_t rlen, int64_t offset):
    cdef bytes out = PyBytes_FromStringAndSize(NULL, READV_ELEMENT)
    cdef uint8_t *q = <uint8_t *>PyBytes_AS_STRING(out)
    _put_u32(q, fhandle)
    _put_u32(q + 4, <uint32_t>rlen)
    _put_i64(q + 8, offset)
    return out
