# cython: language_level=3
"""Cython twin of reqstats_py: the same API and the same counts, in C ints and doubles
(the pure twin's dict-and-bisect costs ~10% of a binary ``ping``'s server time)."""

from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject

from jalien._fast.constants import MAX_COMMANDS, OTHER_COMMAND, REQUEST_BUCKETS

IMPLEMENTATION = "cython"

DEF MAXB = 32


cdef class _Row:
    cdef long long counts[MAXB + 1]
    cdef double total
    cdef long long failures


cdef class RequestCounter:
    cdef dict _rows
    cdef double bounds[MAXB]
    cdef int n
    cdef Py_ssize_t max_commands
    cdef str other

    def __init__(self):
        self._rows = {}
        self.n = len(REQUEST_BUCKETS)
        if self.n > MAXB:
            raise ValueError("too many request buckets")
        for i, bound in enumerate(REQUEST_BUCKETS):
            self.bounds[i] = bound
        self.max_commands = MAX_COMMANDS
        self.other = OTHER_COMMAND

    cpdef observe(self, str command, object exitcode, double seconds):
        cdef PyObject *found = PyDict_GetItem(self._rows, command)
        cdef _Row row
        if found is NULL:
            row = self._row(command)
        else:
            row = <_Row>found
        cdef int i = 0
        cdef int n = self.n
        while i < n and seconds > self.bounds[i]:  # bisect_left: the first bound >= seconds
            i += 1
        row.counts[i] += 1
        row.total += seconds
        if type(exitcode) is int and exitcode:  # a level's "forwarded" is not known
            row.failures += 1

    cdef _Row _row(self, str command):
        if len(self._rows) >= self.max_commands:
            command = self.other
            if command in self._rows:
                return <_Row>self._rows[command]
        cdef _Row row = _Row()
        cdef int i
        for i in range(MAXB + 1):
            row.counts[i] = 0
        row.total = 0.0
        row.failures = 0
        self._rows[command] = row
        return row

    def snapshot(self):
        """command -> (count per bucket and above the last one, sum of seconds, failures)"""
        cdef _Row row
        out = {}
        for command, value in self._rows.items():
            row = <_Row>value
            out[command] = ([row.counts[i] for i in range(self.n + 1)], row.total, row.failures)
        return out
