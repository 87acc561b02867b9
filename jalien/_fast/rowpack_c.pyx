# cython: language_level=3
"""A page of rows from SQLite straight to MessagePack, in C: see rowpack_py, its twin.

The statement runs on the handle of the caller's ``sqlite3.Connection`` (the first field
of CPython's connection object, the same since Python 3.8), on the caller's thread, with
the functions of the libsqlite3 that CPython's _sqlite3 loaded (below).
"""

import sqlite3 as _sqlite3

from cpython.bytes cimport PyBytes_FromStringAndSize

from jalien._fast.outbuf cimport Buf, grow
from cpython.unicode cimport PyUnicode_AsUTF8AndSize, PyUnicode_DecodeUTF8
from libc.stdint cimport int64_t, uint8_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcmp, memcpy

IMPLEMENTATION = "cython"

# SQLite's functions are those of the libsqlite3 Python's _sqlite3 loaded, found by name in
# it when this module starts (dlopen of the loaded library, RTLD_NOLOAD): one copy of SQLite
# in the process (the handle comes from _sqlite3), none linked here, nothing to bundle in the
# single binary. Not loaded (no sqlite3 module): ImportError, and jalien._fast takes the twin.
cdef extern from * nogil:
    """
    #include <dlfcn.h>
    typedef struct sqlite3 sqlite3;
    typedef struct sqlite3_stmt sqlite3_stmt;
    typedef void (*sqlite3_destructor_type)(void*);
    #define SQLITE_TRANSIENT ((sqlite3_destructor_type)-1)
    #define SQLITE_OK 0
    #define SQLITE_ROW 100
    #define SQLITE_DONE 101
    #define SQLITE_INTEGER 1
    #define SQLITE_FLOAT 2
    #define SQLITE_TEXT 3
    #define SQLITE_BLOB 4
    #define SQLITE_NULL 5
    static int (*jalien_sqlite3_prepare_v2)(sqlite3*, const char*, int, sqlite3_stmt**, const char**);
    static int (*jalien_sqlite3_bind_text)(sqlite3_stmt*, int, const char*, int, sqlite3_destructor_type);
    static int (*jalien_sqlite3_bind_blob)(sqlite3_stmt*, int, const void*, int, sqlite3_destructor_type);
    static int (*jalien_sqlite3_bind_int64)(sqlite3_stmt*, int, long long);
    static int (*jalien_sqlite3_bind_double)(sqlite3_stmt*, int, double);
    static int (*jalien_sqlite3_bind_null)(sqlite3_stmt*, int);
    static int (*jalien_sqlite3_bind_parameter_count)(sqlite3_stmt*);
    static int (*jalien_sqlite3_step)(sqlite3_stmt*);
    static int (*jalien_sqlite3_column_count)(sqlite3_stmt*);
    static int (*jalien_sqlite3_column_type)(sqlite3_stmt*, int);
    static const unsigned char* (*jalien_sqlite3_column_text)(sqlite3_stmt*, int);
    static const void* (*jalien_sqlite3_column_blob)(sqlite3_stmt*, int);
    static int (*jalien_sqlite3_column_bytes)(sqlite3_stmt*, int);
    static long long (*jalien_sqlite3_column_int64)(sqlite3_stmt*, int);
    static double (*jalien_sqlite3_column_double)(sqlite3_stmt*, int);
    static int (*jalien_sqlite3_finalize)(sqlite3_stmt*);
    static const char* (*jalien_sqlite3_errmsg)(sqlite3*);
    static const char* (*jalien_sqlite3_libversion)(void);
    #define sqlite3_prepare_v2 jalien_sqlite3_prepare_v2
    #define sqlite3_bind_text jalien_sqlite3_bind_text
    #define sqlite3_bind_blob jalien_sqlite3_bind_blob
    #define sqlite3_bind_int64 jalien_sqlite3_bind_int64
    #define sqlite3_bind_double jalien_sqlite3_bind_double
    #define sqlite3_bind_null jalien_sqlite3_bind_null
    #define sqlite3_bind_parameter_count jalien_sqlite3_bind_parameter_count
    #define sqlite3_step jalien_sqlite3_step
    #define sqlite3_column_count jalien_sqlite3_column_count
    #define sqlite3_column_type jalien_sqlite3_column_type
    #define sqlite3_column_text jalien_sqlite3_column_text
    #define sqlite3_column_blob jalien_sqlite3_column_blob
    #define sqlite3_column_bytes jalien_sqlite3_column_bytes
    #define sqlite3_column_int64 jalien_sqlite3_column_int64
    #define sqlite3_column_double jalien_sqlite3_column_double
    #define sqlite3_finalize jalien_sqlite3_finalize
    #define sqlite3_errmsg jalien_sqlite3_errmsg
    #define sqlite3_libversion jalien_sqlite3_libversion
    static const char* jalien_sqlite3_load(void) {
        void* lib = dlopen("libsqlite3.so.0", RTLD_NOW | RTLD_NOLOAD);
        if (lib == NULL) return "libsqlite3.so.0 (not loaded)";
        #define LOAD(name) if ((*(void**)&jalien_##name = dlsym(lib, #name)) == NULL) return #name;
        LOAD(sqlite3_prepare_v2)
        LOAD(sqlite3_bind_text)
        LOAD(sqlite3_bind_blob)
        LOAD(sqlite3_bind_int64)
        LOAD(sqlite3_bind_double)
        LOAD(sqlite3_bind_null)
        LOAD(sqlite3_bind_parameter_count)
        LOAD(sqlite3_step)
        LOAD(sqlite3_column_count)
        LOAD(sqlite3_column_type)
        LOAD(sqlite3_column_text)
        LOAD(sqlite3_column_blob)
        LOAD(sqlite3_column_bytes)
        LOAD(sqlite3_column_int64)
        LOAD(sqlite3_column_double)
        LOAD(sqlite3_finalize)
        LOAD(sqlite3_errmsg)
        LOAD(sqlite3_libversion)
        #undef LOAD
        return NULL;
    }
    /* the head of CPython's pysqlite_Connection (Modules/_sqlite/connection.h) */
    typedef struct { PyObject_HEAD sqlite3 *db; } jalien_sqlite_connection;
    """
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
    const char* jalien_sqlite3_load()
    ctypedef struct jalien_sqlite_connection:
        sqlite3* db

cdef const char* _missing = jalien_sqlite3_load()
if _missing != NULL:
    raise ImportError(f"rowpack_c: SQLite's {_missing.decode()} not found")
if sqlite3_libversion().decode() != _sqlite3.sqlite_version:
    raise ImportError(
        f"rowpack_c finds SQLite {sqlite3_libversion().decode()}, "
        f"Python's sqlite3 {_sqlite3.sqlite_version}"
    )


# Writing runs without the GIL (as Python's sqlite3 steps without it: a read that waits on a
# lock must not stop the process's other threads): every writer returns 0, or OUT_OF_MEMORY.
cdef int64_t _U32_MAX = 0xFFFFFFFF
cdef int64_t _I32_MIN = -2147483648

cdef enum:
    OUT_OF_MEMORY = -1
    BAD_TEXT = -2  # a TEXT value that is not UTF-8 (Python's sqlite3 refuses to read it)


cdef inline void _be(char* at, uint64_t value, int n) noexcept nogil:
    cdef int i
    for i in range(n):
        at[i] = <char>((value >> (8 * (n - 1 - i))) & 0xFF)


cdef inline int _byte(Buf* b, uint8_t value) noexcept nogil:
    if grow(b, 1) < 0:
        return OUT_OF_MEMORY
    b.data[b.size] = <char>value
    b.size += 1
    return 0


cdef int _head(Buf* b, uint8_t tag, uint64_t value, int n) noexcept nogil:
    if grow(b, 1 + n) < 0:
        return OUT_OF_MEMORY
    b.data[b.size] = <char>tag
    _be(b.data + b.size + 1, value, n)
    b.size += 1 + n
    return 0


cdef int _int(Buf* b, int64_t v) noexcept nogil:
    # as msgspec writes an int: the shortest form, unsigned ones for v >= 0
    if v >= 0:
        if v < 128:
            return _byte(b, <uint8_t>v)
        if v <= 0xFF:
            return _head(b, 0xCC, <uint64_t>v, 1)
        if v <= 0xFFFF:
            return _head(b, 0xCD, <uint64_t>v, 2)
        if v <= _U32_MAX:
            return _head(b, 0xCE, <uint64_t>v, 4)
        return _head(b, 0xCF, <uint64_t>v, 8)
    if v >= -32:
        return _byte(b, <uint8_t>(v & 0xFF))
    if v >= -128:
        return _head(b, 0xD0, <uint64_t>v, 1)
    if v >= -32768:
        return _head(b, 0xD1, <uint64_t>v, 2)
    if v >= _I32_MIN:
        return _head(b, 0xD2, <uint64_t>v, 4)
    return _head(b, 0xD3, <uint64_t>v, 8)


cdef int _bytes(Buf* b, const char* data, Py_ssize_t n, bint text) noexcept nogil:
    cdef int rc
    if text and n < 32:
        rc = _byte(b, <uint8_t>(0xA0 | n))
    elif n <= 0xFF:
        rc = _head(b, 0xD9 if text else 0xC4, n, 1)
    elif n <= 0xFFFF:
        rc = _head(b, 0xDA if text else 0xC5, n, 2)
    else:
        rc = _head(b, 0xDB if text else 0xC6, n, 4)
    if rc < 0 or grow(b, n) < 0:
        return OUT_OF_MEMORY
    if n:
        memcpy(b.data + b.size, data, n)
    b.size += n
    return 0


cdef int _array(Buf* b, Py_ssize_t n) noexcept nogil:
    if n < 16:
        return _byte(b, <uint8_t>(0x90 | n))
    if n <= 0xFFFF:
        return _head(b, 0xDC, n, 2)
    return _head(b, 0xDD, n, 4)


cdef bint _utf8(const unsigned char* s, Py_ssize_t n) noexcept nogil:
    """Whether *s* is UTF-8 as Python decodes it (no overlong forms, no surrogates, no
    code point above U+10FFFF)."""
    cdef Py_ssize_t i = 0
    cdef unsigned char c
    while i < n:
        c = s[i]
        if c < 0x80:
            i += 1
        elif 0xC2 <= c <= 0xDF:
            if i + 1 >= n or s[i + 1] & 0xC0 != 0x80:
                return False
            i += 2
        elif 0xE0 <= c <= 0xEF:
            if i + 2 >= n or s[i + 1] & 0xC0 != 0x80 or s[i + 2] & 0xC0 != 0x80:
                return False
            if (c == 0xE0 and s[i + 1] < 0xA0) or (c == 0xED and s[i + 1] > 0x9F):
                return False  # overlong, or a surrogate
            i += 3
        elif 0xF0 <= c <= 0xF4:
            if (
                i + 3 >= n or s[i + 1] & 0xC0 != 0x80 or s[i + 2] & 0xC0 != 0x80
                or s[i + 3] & 0xC0 != 0x80
            ):
                return False
            if (c == 0xF0 and s[i + 1] < 0x90) or (c == 0xF4 and s[i + 1] > 0x8F):
                return False  # overlong, or above U+10FFFF
            i += 4
        else:
            return False
    return True


cdef int _column(Buf* b, sqlite3_stmt* stmt, int i) noexcept nogil:
    cdef int kind = sqlite3_column_type(stmt, i)
    cdef double d
    cdef uint64_t bits
    cdef const unsigned char* text
    cdef Py_ssize_t n
    if kind == SQLITE_INTEGER:
        return _int(b, sqlite3_column_int64(stmt, i))
    if kind == SQLITE_TEXT:
        text = sqlite3_column_text(stmt, i)
        n = sqlite3_column_bytes(stmt, i)
        if not _utf8(text, n):
            return BAD_TEXT
        return _bytes(b, <const char*>text, n, True)
    if kind == SQLITE_FLOAT:
        d = sqlite3_column_double(stmt, i)
        memcpy(&bits, &d, 8)
        return _head(b, 0xCB, bits, 8)
    if kind == SQLITE_BLOB:
        blob = sqlite3_column_blob(stmt, i)
        return _bytes(b, <const char*>blob, sqlite3_column_bytes(stmt, i), False)
    return _byte(b, 0xC0)


cdef struct First:
    # the first column of the last row read, copied (a row's values die with the next step)
    int kind
    int64_t integer
    double real
    Buf raw  # a text's or a blob's bytes


cdef int _keep_first(First* first, sqlite3_stmt* stmt) noexcept nogil:
    cdef int kind = sqlite3_column_type(stmt, 0)
    cdef Py_ssize_t n
    cdef const char* data
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
        if grow(&first.raw, n) < 0:
            return OUT_OF_MEMORY
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


cdef bytes _packed(Buf* body, Py_ssize_t count):
    """The body's rows behind their array's header, which goes in the 5 bytes left free
    at the body's start."""
    cdef Buf head
    cdef char space[5]
    head.data = space
    head.size = 0
    head.cap = 5
    _array(&head, count)  # (never grows: 5 bytes hold any array header)
    memcpy(body.data + 5 - head.size, space, head.size)
    return PyBytes_FromStringAndSize(body.data + 5 - head.size, body.size - 5 + head.size)


cdef struct Walk:
    # what one statement's walk was asked and found
    bint hide_dot
    const char* skip
    Py_ssize_t skip_n
    int columns
    Py_ssize_t packed
    Py_ssize_t read
    int rc  # the last step's code, or OUT_OF_MEMORY, BAD_TEXT


cdef void _walk(sqlite3_stmt* stmt, Buf* body, First* first, Walk* w) noexcept nogil:
    """Step *stmt* to its end, packing the rows shown into *body*; w.rc says how it ended."""
    cdef int i, rc
    cdef const unsigned char* kind
    while True:
        rc = sqlite3_step(stmt)
        if rc != SQLITE_ROW:
            w.rc = rc
            return
        w.read += 1
        if w.columns == 0:
            continue
        rc = _keep_first(first, stmt)
        if rc < 0:
            w.rc = rc
            return
        if w.hide_dot and first.kind == SQLITE_TEXT and first.raw.size and first.raw.data[0] == 46:
            continue  # a name starting with "."
        if w.skip_n and w.columns > 1 and sqlite3_column_type(stmt, 1) == SQLITE_TEXT:
            kind = sqlite3_column_text(stmt, 1)
            if sqlite3_column_bytes(stmt, 1) == w.skip_n and memcmp(kind, w.skip, w.skip_n) == 0:
                continue
        rc = _array(body, w.columns)
        i = 0
        while rc == 0 and i < w.columns:
            rc = _column(body, stmt, i)
            i += 1
        if rc < 0:
            w.rc = rc
            return
        w.packed += 1


def pack_rows(conn, str sql, tuple args, bint hide_dot, str skip_type):
    cdef sqlite3* db = _handle(conn)
    cdef sqlite3_stmt* stmt = NULL
    cdef Buf body
    cdef First first
    cdef Walk walk
    cdef bytes sql_utf8 = sql.encode()
    cdef const char* sql_c = sql_utf8
    cdef int sql_n = <int>len(sql_utf8)
    cdef bytes skip = skip_type.encode()
    cdef int rc
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
        with nogil:
            rc = sqlite3_prepare_v2(db, sql_c, sql_n, &stmt, NULL)
        if rc != SQLITE_OK:
            raise _sqlite3.OperationalError(sqlite3_errmsg(db).decode(errors="replace"))
        _bind(db, stmt, args)
        walk.hide_dot = hide_dot
        walk.skip = skip
        walk.skip_n = len(skip)
        walk.columns = sqlite3_column_count(stmt)
        walk.packed = walk.read = 0
        with nogil:
            _walk(stmt, &body, &first, &walk)
        if walk.rc == OUT_OF_MEMORY:
            raise MemoryError()
        if walk.rc == BAD_TEXT:
            raise _sqlite3.OperationalError(f"Could not decode to UTF-8 a text of row {walk.read}")
        if walk.rc != SQLITE_DONE:
            raise _sqlite3.OperationalError(sqlite3_errmsg(db).decode(errors="replace"))
        last = _first_value(&first) if walk.read and walk.columns else None
        return _packed(&body, walk.packed), walk.packed, walk.read, last
    finally:
        with nogil:
            sqlite3_finalize(stmt)
        free(body.data)
        free(first.raw.data)
