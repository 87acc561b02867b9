# cython: language_level=3
# A growing output buffer of the Cython twins that write bytes (rowpack_c, lslong_c):
# malloc'd, doubled as it fills; the caller frees ``data``.

from libc.stdlib cimport realloc
from libc.string cimport memcpy


cdef struct Buf:
    char* data
    Py_ssize_t size
    Py_ssize_t cap


cdef inline int grow(Buf* b, Py_ssize_t n) noexcept nogil:
    """Room for *n* more bytes: 0, or -1 when memory is out (for code without the GIL)."""
    cdef Py_ssize_t cap
    cdef char* grown
    if b.size + n <= b.cap:
        return 0
    cap = b.cap * 2 if b.cap else 256
    while cap < b.size + n:
        cap *= 2
    grown = <char*>realloc(b.data, cap)
    if grown == NULL:
        return -1
    b.data = grown
    b.cap = cap
    return 0


cdef inline int room(Buf* b, Py_ssize_t n) except -1:
    """Room for *n* more bytes (MemoryError when memory is out)."""
    if grow(b, n) < 0:
        raise MemoryError()
    return 0


cdef inline int put(Buf* b, const char* data, Py_ssize_t n) except -1:
    if n <= 0:
        return 0
    room(b, n)
    memcpy(b.data + b.size, data, n)
    b.size += n
    return 0
