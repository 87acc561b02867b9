# cython: language_level=3
"""Cython twin of auditlines_py: the same lines, byte for byte. Plain ASCII strings (the
usual DN, login, peer, command and arguments), small ints and short floats are written
straight into the output; anything else (non-ASCII or escaped text, huge ints, exponents)
is written by msgspec, as the pure twin writes everything. The fields a connection's
requests share are written once per connection and channel. The pure twin's lines cost
the audit writer thread about a third of a binary ``ping``'s server time (bench_requests)."""

from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE

import msgspec

IMPLEMENTATION = "cython"

cdef object _encode = msgspec.json.encode
cdef Py_ssize_t _MAX_KEPT = 4096  # connections and channels whose shared part is kept

cdef extern from "Python.h":
    char *PyOS_double_to_string(double, char, int, int, int *) except NULL
    void PyMem_Free(void *)
    int PyUnicode_IS_ASCII(object)
    void *PyUnicode_DATA(object)
    Py_ssize_t PyUnicode_GET_LENGTH(object)
    int PyByteArray_Resize(object, Py_ssize_t) except -1
    long long PyLong_AsLongLongAndOverflow(object, int *) except? -1


cdef struct Buf:
    char *data
    Py_ssize_t size
    Py_ssize_t cap


cdef int _put(Buf *buf, const char *data, Py_ssize_t n) except -1:
    cdef Py_ssize_t cap
    cdef char *grown
    if buf.size + n > buf.cap:
        cap = (buf.size + n) * 2
        grown = <char *>realloc(buf.data, cap)
        if grown == NULL:
            raise MemoryError()
        buf.data = grown
        buf.cap = cap
    memcpy(buf.data + buf.size, data, n)
    buf.size += n
    return 0


cdef inline int _put_bytes(Buf *buf, bytes data) except -1:
    return _put(buf, <const char *>data, len(data))


cdef int _put_str(Buf *buf, object text) except -1:
    """*text* as a JSON string: copied when it is ASCII with nothing to escape."""
    cdef const unsigned char *data
    cdef Py_ssize_t i, n
    cdef unsigned char c
    if type(text) is str and PyUnicode_IS_ASCII(text):
        data = <const unsigned char *>PyUnicode_DATA(text)
        n = PyUnicode_GET_LENGTH(text)
        for i in range(n):
            c = data[i]
            if c < 0x20 or c == 0x22 or c == 0x5C or c == 0x7F:
                break
        else:
            _put(buf, '"', 1)
            _put(buf, <const char *>data, n)
            _put(buf, '"', 1)
            return 0
    return _put_bytes(buf, _encode(text))


cdef int _put_int(Buf *buf, object value) except -1:
    cdef int overflow = 0
    cdef long long v
    cdef unsigned long long u
    cdef char digits[24]
    cdef int i = 24
    if type(value) is int:
        v = PyLong_AsLongLongAndOverflow(value, &overflow)
        if not overflow:
            u = <unsigned long long>(-(v + 1)) + 1 if v < 0 else <unsigned long long>v
            while True:
                i -= 1
                digits[i] = <char>(48 + u % 10)
                u //= 10
                if u == 0:
                    break
            if v < 0:
                i -= 1
                digits[i] = 45  # '-'
            return _put(buf, digits + i, 24 - i)
    return _put_bytes(buf, _encode(value))


cdef int _put_millis(Buf *buf, double seconds) except -1:
    """``round(seconds * 1000, 3)`` as msgspec writes it. Below 1e9 ms that is the correctly
    rounded ``%.3f`` text without its trailing zeros (one kept after the point): a decimal
    with 3 places there is one double and its shortest repr; one dtoa call instead of
    round()'s two and repr()'s. Above, and for non-finite values, Python and msgspec do it."""
    cdef double millis = seconds * 1000.0
    cdef char *text
    cdef Py_ssize_t n
    if -1e9 < millis < 1e9:
        text = PyOS_double_to_string(millis, b'f', 3, 0, NULL)
        try:
            n = len(text)  # "123.450": never an exponent in 'f' format
            while text[n - 1] == 48 and text[n - 2] != 46:  # '0' after more than "x."
                n -= 1
            _put(buf, text, n)
        finally:
            PyMem_Free(text)
        return 0
    return _put_bytes(buf, _encode(round(millis, 3)))


cdef class LineMaker:
    cdef readonly str level
    cdef object clock
    cdef object args_of
    cdef object error_of
    cdef object refusal_codes
    cdef long long _ms
    cdef bytes _time
    cdef dict _shared
    cdef Buf _buf  # the line being made, reused

    def __cinit__(self):
        self._buf.data = <char *>malloc(1024)
        if self._buf.data == NULL:
            raise MemoryError()
        self._buf.cap = 1024
        self._buf.size = 0

    def __dealloc__(self):
        free(self._buf.data)

    def __init__(self, str level, clock, args_of, error_of, refusal_codes):
        self.level = level
        self.clock = clock
        self.args_of = args_of
        self.error_of = error_of
        self.refusal_codes = refusal_codes
        self._ms = -1
        self._time = b""
        self._shared = {}

    def time_text(self, double t):
        return self._time_text(t)

    cdef bytes _time_text(self, double t):
        cdef long long ms = <long long>(t * 1000)
        if ms != self._ms:
            self._ms = ms
            self._time = b'{"time":' + _encode(self.clock(t)) + b","
        return self._time

    cdef bytes _who(self, object event, object peer, object personality, object channel,
                    object identity):
        """'"level":...,"job":"...",' for a connection's (and channel's) requests."""
        cdef Buf part
        key = (event, peer, personality, channel, id(identity))
        kept = self._shared.get(key)
        if kept is not None and (<tuple>kept)[0] is identity:  # (an id is unique while it lives)
            return <bytes>(<tuple>kept)[1]
        if identity is None:
            kind = dn = login = job = ""
        else:
            kind = identity.kind.value if identity.kind is not None else ""
            dn, login, job = identity.dn, identity.login, identity.job_id
        part.data = <char *>malloc(256)
        if part.data == NULL:
            raise MemoryError()
        part.cap = 256
        part.size = 0
        try:
            _put(&part, '"level":', 8)
            _put_str(&part, self.level)
            _put(&part, ',"event":', 9)
            _put_str(&part, event)
            _put(&part, ',"peer":', 8)
            _put_str(&part, peer)
            _put(&part, ',"personality":', 15)
            _put_str(&part, personality)
            _put(&part, ',"channel":', 11)
            _put_int(&part, channel)
            _put(&part, ',"kind":', 8)
            _put_str(&part, kind)
            _put(&part, ',"dn":', 6)
            _put_str(&part, dn)
            _put(&part, ',"login":', 9)
            _put_str(&part, login)
            _put(&part, ',"job":', 7)
            _put_str(&part, job)
            _put(&part, ',', 1)
            made = part.data[:part.size]
        finally:
            free(part.data)
        if len(self._shared) >= _MAX_KEPT:
            self._shared.clear()
        self._shared[key] = (identity, made)
        return made

    def add(self, tuple entry not None, bytearray out not None):
        cdef Buf *buf = &self._buf
        cdef Py_ssize_t size
        if len(entry) != 13:
            raise ValueError("an audit entry has 13 fields")
        t = entry[0]
        event = entry[1]
        exitcode = entry[8]
        error = entry[9]
        options = entry[7]
        command = entry[6]
        if error:
            error = self.error_of(error)
        refused = error if event != "request" or exitcode in self.refusal_codes else ""
        buf.size = 0
        _put_bytes(buf, self._time_text(t))
        _put_bytes(buf, self._who(event, entry[2], entry[3], entry[4], entry[5]))
        _put(buf, '"command":', 10)
        _put_str(buf, command)
        _put(buf, ',"args":[', 9)
        if options:
            first = True
            for arg in self.args_of(command, options):
                if not first:
                    _put(buf, ',', 1)
                first = False
                _put_str(buf, arg)
        _put(buf, '],"exitcode":', 13)
        if type(exitcode) is int:
            _put_int(buf, exitcode)
        else:
            _put_str(buf, exitcode)
        _put(buf, ',"error":', 9)
        _put_str(buf, error)
        _put(buf, ',"refused":', 11)
        _put_str(buf, refused)
        _put(buf, ',"duration_ms":', 15)
        _put_millis(buf, <double>entry[10])
        _put(buf, ',"bytes_out":', 13)
        _put_int(buf, entry[11])
        _put(buf, ',"pages":', 9)
        _put_int(buf, entry[12])
        _put(buf, '}\n', 2)
        size = PyByteArray_GET_SIZE(out)
        PyByteArray_Resize(out, size + buf.size)
        memcpy(PyByteArray_AS_STRING(out) + size, buf.data, buf.size)
