# cython: language_level=3
"""Cython twin of framing_py: the same API and the same bytes, without per-frame
Python overhead. zlib is called through its C API (compress2/uncompress2)."""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from libc.string cimport memcpy, memmove
from libc.stdint cimport uint8_t, uint32_t

from jalien._fast.constants import (
    DEFAULT_COMPRESS_THRESHOLD,
    DEFAULT_LEVEL,
    DEFAULT_MAX_FRAME,
)
from jalien._fast.errors import ProtocolError

IMPLEMENTATION = "cython"

cdef extern from "zlib.h":
    ctypedef unsigned long uLong
    ctypedef unsigned long uLongf
    ctypedef unsigned char Bytef
    int Z_OK
    uLong compressBound(uLong sourceLen) nogil
    int compress2(Bytef *dest, uLongf *destLen, const Bytef *source, uLong sourceLen,
                  int level) nogil
    int uncompress2(Bytef *dest, uLongf *destLen, const Bytef *source, uLong *sourceLen) nogil

DEF HEADER_SIZE = 12
DEF SIZE_PREFIX = 4
DEF CODEC_MASK = 0x03
DEF FLAG_COMPRESSED = 0x04
DEF FLAG_MORE = 0x08
DEF FLAGS_KNOWN = 0x0F
DEF VERSION = 1
DEF MAGIC0 = 0x4A  # 'J'
DEF MAGIC1 = 0x57  # 'W'


cdef inline void _put_u32(uint8_t *p, uint32_t v) noexcept nogil:
    p[0] = (v >> 24) & 0xFF
    p[1] = (v >> 16) & 0xFF
    p[2] = (v >> 8) & 0xFF
    p[3] = v & 0xFF


cdef inline uint32_t _get_u32(const uint8_t *p) noexcept nogil:
    return ((<uint32_t>p[0]) << 24) | ((<uint32_t>p[1]) << 16) | ((<uint32_t>p[2]) << 8) | p[3]


cdef inline void _put_header(uint8_t *p, int flags, uint32_t stream_id, uint32_t length) noexcept nogil:
    p[0] = MAGIC0
    p[1] = MAGIC1
    p[2] = VERSION
    p[3] = <uint8_t>flags
    _put_u32(p + 4, stream_id)
    _put_u32(p + 8, length)


cdef bytes _compress(const uint8_t *src, Py_ssize_t n, int level):
    cdef uLongf dest_len = compressBound(<uLong>n)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>dest_len + SIZE_PREFIX)
    cdef uint8_t *dst = <uint8_t *>PyBytes_AS_STRING(out)
    cdef int rc
    _put_u32(dst, <uint32_t>n)
    with nogil:
        rc = compress2(dst + SIZE_PREFIX, &dest_len, src, <uLong>n, level)
    if rc != Z_OK:
        raise MemoryError("zlib compress2 failed")
    return out[:<Py_ssize_t>dest_len + SIZE_PREFIX]


cdef bytes _decompress(const uint8_t *src, Py_ssize_t n, Py_ssize_t max_size):
    if n < SIZE_PREFIX:
        raise ProtocolError("bad compressed frame body")
    cdef uint32_t size = _get_u32(src)
    if size > max_size:
        raise ProtocolError(f"frame of {size} bytes exceeds the limit of {max_size}")
    cdef bytes out = PyBytes_FromStringAndSize(NULL, size)
    cdef uint8_t dummy = 0
    cdef uint8_t *dst = <uint8_t *>PyBytes_AS_STRING(out)
    cdef uLongf dest_len = size
    cdef uLong src_len = <uLong>(n - SIZE_PREFIX)
    cdef int rc
    if size == 0:
        # zlib refuses a zero-length destination; inflate into a one-byte scratch instead
        dst = &dummy
        dest_len = 1
    with nogil:
        rc = uncompress2(dst, &dest_len, src + SIZE_PREFIX, &src_len)
    if rc != Z_OK or dest_len != size or src_len != <uLong>(n - SIZE_PREFIX):
        raise ProtocolError("bad compressed frame body")
    return out


def compress(data, int level=DEFAULT_LEVEL):
    """zlib-compress *data*; the uncompressed size goes in front as a u32."""
    if not -1 <= level <= 9:
        raise ValueError("compression level must be between -1 and 9")
    cdef Py_buffer buf
    PyObject_GetBuffer(data, &buf, PyBUF_SIMPLE)
    try:
        return _compress(<const uint8_t *>buf.buf, buf.len, level)
    finally:
        PyBuffer_Release(&buf)


def decompress(body, Py_ssize_t max_size=DEFAULT_MAX_FRAME):
    """Inverse of compress(); refuses a declared size above *max_size* before inflating."""
    cdef Py_buffer buf
    PyObject_GetBuffer(body, &buf, PyBUF_SIMPLE)
    try:
        return _decompress(<const uint8_t *>buf.buf, buf.len, max_size)
    finally:
        PyBuffer_Release(&buf)


cdef inline int _check_stream(object stream_id) except -1:
    cdef unsigned long long v
    if type(stream_id) is int:
        try:
            v = stream_id
        except OverflowError:
            v = 1ULL << 40
        if v <= 0xFFFFFFFFULL:
            return 0
    elif 0 <= stream_id <= 0xFFFFFFFF:
        return 0
    raise ValueError("stream id must fit in 32 bits")


cdef bytes _frame(int flags, uint32_t stream_id, const uint8_t *body, Py_ssize_t n):
    cdef bytes out = PyBytes_FromStringAndSize(NULL, n + HEADER_SIZE)
    cdef uint8_t *p = <uint8_t *>PyBytes_AS_STRING(out)
    _put_header(p, flags, stream_id, <uint32_t>n)
    if n:
        memcpy(p + HEADER_SIZE, body, n)
    return out


def encode_frame(stream_id, body, int codec=0,
                 Py_ssize_t compress_threshold=DEFAULT_COMPRESS_THRESHOLD,
                 int level=DEFAULT_LEVEL):
    """One frame for *body*; zlib-compressed when it is at least *compress_threshold* bytes
    and compression makes it smaller (compress_threshold <= 0 disables compression).
    *codec* may carry FLAG_MORE."""
    _check_stream(stream_id)
    if codec & ~(CODEC_MASK | FLAG_MORE):
        raise ValueError("unknown codec")
    cdef Py_buffer buf
    cdef bytes packed
    cdef Py_ssize_t n
    if type(body) is bytes:  # the common case: no buffer protocol round trip
        n = len(<bytes>body)
        if not (0 < compress_threshold <= n):
            return _frame(codec, <uint32_t>stream_id,
                          <const uint8_t *>PyBytes_AS_STRING(body), n)
    PyObject_GetBuffer(body, &buf, PyBUF_SIMPLE)
    try:
        if 0 < compress_threshold <= buf.len:
            if not -1 <= level <= 9:
                raise ValueError("compression level must be between -1 and 9")
            packed = _compress(<const uint8_t *>buf.buf, buf.len, level)
            if len(packed) < buf.len:
                return _frame(codec | FLAG_COMPRESSED, <uint32_t>stream_id,
                              <const uint8_t *>PyBytes_AS_STRING(packed), len(packed))
        return _frame(codec, <uint32_t>stream_id, <const uint8_t *>buf.buf, buf.len)
    finally:
        PyBuffer_Release(&buf)


def encode_raw(stream_id, int flags, wire_body):
    """Re-frame a body exactly as it came off the wire (a proxy changing the stream id)."""
    _check_stream(stream_id)
    if flags & ~FLAGS_KNOWN:
        raise ValueError("unknown frame flags")
    cdef Py_buffer buf
    PyObject_GetBuffer(wire_body, &buf, PyBUF_SIMPLE)
    try:
        return _frame(flags, <uint32_t>stream_id, <const uint8_t *>buf.buf, buf.len)
    finally:
        PyBuffer_Release(&buf)


cdef class FrameDecoder:
    """Incremental decoder: feed() any chunking, get back complete frames.

    Each frame is a tuple (stream_id, flags, body). With raw=False (the default) bodies
    come back inflated and FLAG_COMPRESSED cleared; with raw=True they are as on the wire.
    After a ProtocolError the decoder stays broken: the connection has to go.
    """
    cdef bytearray _buf
    cdef Py_ssize_t _max
    cdef bint _raw
    cdef object _error

    def __init__(self, max_frame_size=DEFAULT_MAX_FRAME, bint raw=False):
        if max_frame_size <= 0 or max_frame_size > 0xFFFFFFFF:
            raise ValueError("max_frame_size must be between 1 and 2**32-1")
        self._max = max_frame_size
        self._raw = raw
        self._buf = bytearray()
        self._error = None

    @property
    def buffered(self):
        """Bytes held back waiting for the rest of a frame."""
        return len(self._buf)

    cdef list _parse(self, const uint8_t *p, Py_ssize_t end, Py_ssize_t *consumed):
        cdef list frames = []
        cdef Py_ssize_t pos = 0
        cdef int flags
        cdef uint32_t stream_id, length
        cdef object body
        while end - pos >= HEADER_SIZE:
            if p[pos] != MAGIC0 or p[pos + 1] != MAGIC1:
                raise ProtocolError("not a jalien frame (bad magic)")
            if p[pos + 2] != VERSION:
                raise ProtocolError(f"unsupported frame version {p[pos + 2]}")
            flags = p[pos + 3]
            if flags & ~FLAGS_KNOWN:
                raise ProtocolError(f"unknown frame flags 0x{flags:02x}")
            stream_id = _get_u32(p + pos + 4)
            length = _get_u32(p + pos + 8)
            if length > self._max:
                raise ProtocolError(f"frame of {length} bytes exceeds the limit of {self._max}")
            if end - pos - HEADER_SIZE < length:
                break
            pos += HEADER_SIZE
            if flags & FLAG_COMPRESSED and not self._raw:
                body = _decompress(p + pos, length, self._max)
                flags &= ~FLAG_COMPRESSED
            else:
                body = PyBytes_FromStringAndSize(<const char *>(p + pos), length)
            pos += length
            frames.append((stream_id, flags, body))
        consumed[0] = pos
        return frames

    def feed(self, data):
        if self._error is not None:
            raise self._error
        cdef Py_buffer buf
        cdef Py_ssize_t consumed = 0
        cdef list frames
        cdef Py_ssize_t old
        try:
            if len(self._buf) == 0:
                PyObject_GetBuffer(data, &buf, PyBUF_SIMPLE)
                try:
                    frames = self._parse(<const uint8_t *>buf.buf, buf.len, &consumed)
                    if consumed < buf.len:
                        self._buf = bytearray((<const char *>buf.buf)[consumed:buf.len])
                finally:
                    PyBuffer_Release(&buf)
            else:
                self._buf += data
                old = len(self._buf)
                frames = self._parse(<const uint8_t *>(<char *>self._buf), old, &consumed)
                if consumed:
                    del self._buf[:consumed]
        except ProtocolError as exc:
            self._error = exc
            self._buf = bytearray()
            raise
        return frames
