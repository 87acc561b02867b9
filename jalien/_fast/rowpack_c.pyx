# cython: language_level=3
"""A page of rows from SQLite straight to MessagePack, in C: see rowpack_py, its twin.

The statement runs on the handle of the caller's ``sqlite3.Connection`` (the first field
of CPython's connection object, the same since Python 3.8), on the caller's thread; this
module links the libsqlite3 that CPython's _sqlite3 links. A different library version
than sqlite3.sqlite_version refuses to import (jalien._fast then takes the twin).
"""

import sqlite3 as _sqlite3

from cpython.bytes cimport PyBytes_FromStringAndSize

from jalien._fast.outbuf cimport Buf, room
from cpython.unicode cimport PyUnicode_AsUTF8AndSize, PyUnicode_DecodeUTF8
from libc.stdint cimport int64_t, uint8_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, strcmp

IMPLEMENTATION = "cython"

cdef extern from "sqlite3.h":
    ctypedef struct sqlite3:
        pass
    ctypedef struct sqlite3_stmt:
        pass
    ctypedef void (*sqlite3_destructor_type)(void*)
    sqlite3_destructor_type SQLITE_TRANSIENT
    int SQLITE_OK
    int SQLITE_ROW
    int SQLITE_DONE
    int SQLITE_INTEGER
    int SQLITE_FLOAT
    int SQLITE_TEXT
    int SQLITE_BLOB
    int SQLITE_NULL
    int sqlite3_prepare_v2(sqlite3*, const char*, int, sqlite3_stmt**, const char**)
    int sqlite3_bind_text(sqlite3_stmt*, int, const char*, int, sqlite3_destructor_type)
    int sqlite3_bind_blob(sqlite3_stmt*, int, const void*, int, sqlite3_destructor_type)
    int sqlite3_bind_int64(sqlite3_stmt*, int, long long)
    int sqlite3_bind_double(sqlite3_stmt*, int, double)
    int sqlite3_bind_null(sqlite3_stmt*, int)
    int sqlite3_bind_parameter_count(sqlite3_stmt*)
    int sqlite3_step(sqlite3_stmt*)
    int sqlite3_column_count(sqlite3_stmt*)
    int sqlite3_column_type(sqlite3_stmt*, int)
    const unsigned char* sqlite3_column_text(sqlite3_stmt*, int)
    const void* sqlite3_column_blob(sqlite3_stmt*, int)
    int sqlite3_column_bytes(sqlite3_stmt*, int)
    long long sqlite3_column_int64(sqlite3_stmt*, int)
    double sqlite3_column_double(sqlite3_stmt*, int)
    int sqlite3_finalize(sqlite3_stmt*)
    const char* sqlite3_errmsg(sqlite3*)
    const char* sqlite3_libversion()

cdef extern from *:
    """
    #include <sqlite3.h>
    /* the head of CPython's pysqlite_Connection (Modules/_sqlite/connection.h) */
    typedef struct { PyObject_HEAD sqlite3 *db; } jalien_sqlite_connection;
    """
    ctypedef struct jalien_sqlite_connection:
        sqlite3* db

if sqlite3_libversion().decode() != _sqlite3.sqlite_version:
    raise ImportError(
        f"rowpack_c links SQLite {sqlite3_libversion().decode()}, "
        f"Python's sqlite3 {_sqlite3.sqlite_version}"
    )


cdef inline void _be(char* at, uint64_t value, int n) noexcept:
    cdef int i
    for i in range(n):
        at[i] = <char>((value >> (8 * (n - 1 - i))) & 0xFF)


cdef int _head(Buf* b, uint8_t tag, uint64_t value, int n) except -1:
    room(b, 1 + n)
    b.data[b.size] = <char>tag
    _be(b.data + b.size + 1, value, n)
    b.size += 1 + n
    return 0


cdef int _int(Buf* b, int64_t v) except -1:
    # as msgspec writes an int: the shortest form, unsigned ones for v >= 0
    if v >= 0:
        if v < 128:
            room(b, 1)
            b.data[b.size] = <char>v
            b.size += 1
        elif v <= 0xFF:
            _head(b, 0xCC, <uint64_t>v, 1)
        elif v <= 0xFFFF:
            _head(b, 0xCD, <uint64_t>v, 2)
        elif v <= 0xFFFFFFFF:
            _head(b, 0xCE, <uint64_t>v, 4)
        else:
            _head(b, 0xCF, <uint64_t>v, 8)
    elif v >= -32:
        room(b, 1)
        b.data[b.size] = <char>(<uint8_t>(v & 0xFF))
        b.size += 1
    elif v >= -128:
        _head(b, 0xD0, <uint64_t>v, 1)
    elif v >= -32768:
        _head(b, 0xD1, <uint64_t>v, 2)
    elif v >= -2147483648:
        _head(b, 0xD2, <uint64_t>v, 4)
    else:
        _head(b, 0xD3, <uint64_t>v, 8)
    return 0


cdef int _bytes(Buf* b, const char* data, size_t n, bint text) except -1:
    if text and n < 32:
        room(b, 1 + n)
        b.data[b.size] = <char>(0xA0 | n)
        b.size += 1
    elif n <= 0xFF:
        _head(b, 0xD9 if text else 0xC4, n, 1)
    elif n <= 0xFFFF:
        _head(b, 0xDA if text else 0xC5, n, 2)
    else:
        _head(b, 0xDB if text else 0xC6, n, 4)
    room(b, n)
    if n:
        memcpy(b.data + b.size, data, n)
    b.size += n
    return 0


cdef int _array(Buf* b, size_t n) except -1:
    if n < 16:
        room(b, 1)
        b.data[b.size] = <char>(0x90 | n)
        b.size += 1
    elif n <= 0xFFFF:
        _head(b, 0xDC, n, 2)
    else:
        _head(b, 0xDD, n, 4)
    return 0


cdef int _column(Buf* b, sqlite3_stmt* stmt, int i) except -1:
    cdef int kind = sqlite3_column_type(stmt, i)
    cdef double d
    cdef uint64_t bits
    if kind == SQLITE_INTEGER:
        _int(b, sqlite3_column_int64(stmt, i))
    elif kind == SQLITE_TEXT:
        text = sqlite3_column_text(stmt, i)
        _bytes(b, <const char*>text, sqlite3_column_bytes(stmt, i), True)
    elif kind == SQLITE_FLOAT:
        d = sqlite3_column_double(stmt, i)
        memcpy(&bits, &d, 8)
        _head(b, 0xCB, bits, 8)
    elif kind == SQLITE_BLOB:
        blob = sqlite3_column_blob(stmt, i)
        _bytes(b, <const char*>blob, sqlite3_column_bytes(stmt, i), False)
    else:
        room(b, 1)
        b.data[b.size] = <char>0xC0
        b.size += 1
    return 0


cdef struct First:
    # the first column of the last row read, copied (a row's values die with the next step)
    int kind
    int64_t integer
    double real
    Buf raw  # a text's or a blob's bytes


cdef int _keep_first(First* first, sqlite3_stmt* stmt) except -1:
    cdef int kind = sqlite3_column_type(stmt, 0)
    cdef size_t n
    first.kind = kind
    if kind == SQLITE_INTEGER:
        first.integer = sqlite3_column_int64(stmt, 0)
    elif kind == SQLITE_FLOAT:
        first.real = sqlite3_column_double(stmt, 0)
    elif kind == SQLITE_TEXT or kind == SQLITE_BLOB:
        data = <const char*>(
            sqlite3_column_text(stmt, 0) if kind == SQLITE_TEXT else sqlite3_column_blob(stmt, 0)
        )
        n = sqlite3_column_bytes(stmt, 0)
        first.raw.size = 0
        room(&first.raw, n)
        if n:
            memcpy(first.raw.data, data, n)
        first.raw.size = n
    return 0


cdef object _first_value(First* first):
    """That value as Python's sqlite3 gives it."""
    if first.kind == SQLITE_INTEGER:
        return first.integer
    if first.kind == SQLITE_FLOAT:
        return first.real
    if first.kind == SQLITE_TEXT:
        return PyUnicode_DecodeUTF8(first.raw.data, first.raw.size, NULL)
    if first.kind == SQLITE_BLOB:
        return PyBytes_FromStringAndSize(first.raw.data, first.raw.size)
    return None


cdef int _bind(sqlite3* db, sqlite3_stmt* stmt, tuple args) except -1:
    cdef Py_ssize_t n
    cdef const char* text
    cdef int i, rc
    if sqlite3_bind_parameter_count(stmt) != len(args):
        raise _sqlite3.ProgrammingError(
            f"the statement takes {sqlite3_bind_parameter_count(stmt)} values, {len(args)} given"
        )
    for i, value in enumerate(args, 1):
        if value is None:
            rc = sqlite3_bind_null(stmt, i)
        elif isinstance(value, int):
            rc = sqlite3_bind_int64(stmt, i, value)
        elif isinstance(value, float):
            rc = sqlite3_bind_double(stmt, i, value)
        elif isinstance(value, str):
            text = PyUnicode_AsUTF8AndSize(value, &n)
            rc = sqlite3_bind_text(stmt, i, text, <int>n, SQLITE_TRANSIENT)
        elif isinstance(value, bytes):
            rc = sqlite3_bind_blob(stmt, i, <const char*>value, <int>len(value), SQLITE_TRANSIENT)
        else:
            raise _sqlite3.ProgrammingError(f"value {i} of type {type(value).__name__} not supported")
        if rc != SQLITE_OK:
            raise _sqlite3.OperationalError(sqlite3_errmsg(db).decode(errors="replace"))
    return 0


cdef sqlite3* _handle(conn) except NULL:
    if not isinstance(conn, _sqlite3.Connection):
        raise TypeError(f"a sqlite3.Connection, not {type(conn).__name__}")
    cdef sqlite3* db = (<jalien_sqlite_connection*><void*>conn).db
    if db == NULL:
        raise _sqlite3.ProgrammingError("Cannot operate on a closed database.")
    return db


cdef bytes _packed(Buf* body, size_t count):
    """The body's rows behind their array's header, which goes in the 5 bytes left free
    at the body's start."""
    cdef Buf head
    cdef char room[5]
    head.data = room
    head.size = 0
    head.cap = 5
    _array(&head, count)
    memcpy(body.data + 5 - head.size, room, head.size)
    return PyBytes_FromStringAndSize(body.data + 5 - head.size, body.size - 5 + head.size)


def pack_rows(conn, str sql, tuple args, bint hide_dot, str skip_type):
    cdef sqlite3* db = _handle(conn)
    cdef sqlite3_stmt* stmt = NULL
    cdef Buf body
    cdef First first
    cdef bytes sql_utf8 = sql.encode()
    cdef bytes skip = skip_type.encode()
    cdef const char* skip_c = skip
    cdef bint skipping = len(skip) > 0
    cdef int rc, i, columns
    cdef size_t packed = 0, read = 0
    cdef const unsigned char* text
    first.kind = SQLITE_NULL
    first.raw.data = <char*>malloc(256)
    first.raw.size = 0
    first.raw.cap = 256
    body.data = <char*>malloc(65536)
    body.size = 5  # room for the array's header, written last
    body.cap = 65536
    try:
        if body.data == NULL or first.raw.data == NULL:
            raise MemoryError()
        rc = sqlite3_prepare_v2(db, sql_utf8, <int>len(sql_utf8), &stmt, NULL)
        if rc != SQLITE_OK:
            raise _sqlite3.OperationalError(sqlite3_errmsg(db).decode(errors="replace"))
        _bind(db, stmt, args)
        columns = sqlite3_column_count(stmt)
        while True:
            rc = sqlite3_step(stmt)
            if rc == SQLITE_DONE:
                break
            if rc != SQLITE_ROW:
                raise _sqlite3.OperationalError(sqlite3_errmsg(db).decode(errors="replace"))
            read += 1
            if columns == 0:
                continue
            _keep_first(&first, stmt)
            if hide_dot and first.kind == SQLITE_TEXT and first.raw.size and first.raw.data[0] == 46:
                continue  # a name starting with "."
            if skipping and columns > 1 and sqlite3_column_type(stmt, 1) == SQLITE_TEXT:
                text = sqlite3_column_text(stmt, 1)
                if strcmp(<const char*>text, skip_c) == 0:
                    continue
            _array(&body, columns)
            for i in range(columns):
                _column(&body, stmt, i)
            packed += 1
        last = _first_value(&first) if read and columns else None
        return _packed(&body, packed), packed, read, last
    finally:
        sqlite3_finalize(stmt)
        free(body.data)
        free(first.raw.data)
