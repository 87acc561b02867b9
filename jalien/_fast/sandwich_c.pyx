# cython: language_level=3
"""Cython twin of sandwich_py: the same merge3, keys compared with memcmp on the bytes'
own buffers (no Python comparison per key), batches walked by index."""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.string cimport memcmp

IMPLEMENTATION = "cython"
NAMES = ("first dump", "listing", "second dump")


cdef inline int _cmp(bytes x, bytes y):
    cdef Py_ssize_t nx = PyBytes_GET_SIZE(x), ny = PyBytes_GET_SIZE(y)
    cdef int r = memcmp(PyBytes_AS_STRING(x), PyBytes_AS_STRING(y), nx if nx < ny else ny)
    if r:
        return r
    return (nx > ny) - (nx < ny)


cdef class _Cursor:
    cdef object batches
    cdef list batch
    cdef Py_ssize_t i, n
    cdef bytes head
    cdef bint done
    cdef Py_ssize_t count
    cdef str name

    def __cinit__(self, batches, str name):
        self.batches = iter(batches)
        self.batch = []
        self.i = 0
        self.n = 0
        self.head = b""
        self.done = False
        self.count = 0
        self.name = name

    cdef int advance(self) except -1:
        cdef bytes key
        cdef object batch
        cdef int c
        while True:
            while self.i >= self.n:
                batch = next(self.batches, None)
                if batch is None:
                    self.done = True
                    return 0
                if type(batch) is not list:
                    batch = list(batch)
                self.batch = <list>batch
                self.i = 0
                self.n = len(self.batch)
            key = <bytes?>self.batch[self.i]
            self.i += 1
            self.count += 1
            if self.count == 1:
                self.head = key
                return 0
            c = _cmp(key, self.head)
            if c > 0:
                self.head = key
                return 0
            if c < 0:
                raise ValueError(f"{self.name} is not sorted: {key!r} after {self.head!r}")


def merge3(first, listing, second, dark, lost):
    cdef _Cursor a = _Cursor(first, NAMES[0])
    cdef _Cursor s = _Cursor(listing, NAMES[1])
    cdef _Cursor b = _Cursor(second, NAMES[2])
    cdef bytes key
    cdef bint found, in_a, in_s, in_b
    a.advance()
    s.advance()
    b.advance()
    while not (a.done and s.done and b.done):
        found = False
        key = b""
        if not a.done:
            key = a.head
            found = True
        if not s.done and (not found or _cmp(s.head, key) < 0):
            key = s.head
            found = True
        if not b.done and (not found or _cmp(b.head, key) < 0):
            key = b.head
        in_a = not a.done and (a.head is key or _cmp(a.head, key) == 0)
        in_s = not s.done and (s.head is key or _cmp(s.head, key) == 0)
        in_b = not b.done and (b.head is key or _cmp(b.head, key) == 0)
        if in_a:
            a.advance()
        if in_s:
            s.advance()
        if in_b:
            b.advance()
        if in_s:
            if not in_a and not in_b:
                dark(key)
        elif in_a and in_b:
            lost(key)
    return a.count, s.count, b.count
