# cython: language_level=3
"""Cython twin of lslong_py: ``ls -l``'s records of packed rows as JSON, byte for byte
what msgspec writes for the records ``wire.listing_views`` makes, written straight from
the MessagePack rows (no row becomes Python objects, no record a dict). What the rows of
a directory share (type, permissions, owners) is formatted once per run of equal values;
a minute's text once per minute. Rows of another shape than ``ls -l`` reads (7 fields:
name, type, perm, owner, gowner, size, ctime) are rendered by the pure twin."""

from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.unicode cimport PyUnicode_AsUTF8AndSize, PyUnicode_DecodeUTF8
from libc.stdint cimport int64_t, uint8_t, uint64_t
from libc.stdio cimport snprintf
from libc.stdlib cimport free
from libc.string cimport memcmp, memcpy

from jalien._fast import lslong_py
from jalien._fast.outbuf cimport Buf, put, room

IMPLEMENTATION = "cython"


cdef class _Shape(Exception):
    pass


cdef inline int _room(Buf* b, Py_ssize_t n) except -1:
    return room(b, n)


cdef inline int _put(Buf* b, const char* data, Py_ssize_t n) except -1:
    return put(b, data, n)


cdef inline int _put_buf(Buf* b, Buf* other) except -1:
    return _put(b, other.data, other.size)


cdef const char* _HEX = b"0123456789abcdef"


cdef int _escape(Buf* b, const char* s, Py_ssize_t n) except -1:
    """UTF-8 text as a JSON string's content, escaped as msgspec escapes it."""
    cdef Py_ssize_t i, start = 0
    cdef unsigned char c
    _room(b, n)
    for i in range(n):
        c = <unsigned char>s[i]
        if c >= 0x20 and c != 34 and c != 92:
            continue
        _put(b, s + start, i - start)
        start = i + 1
        if c == 34:
            _put(b, b'\\"', 2)
        elif c == 92:
            _put(b, b"\\\\", 2)
        elif c == 10:
            _put(b, b"\\n", 2)
        elif c == 13:
            _put(b, b"\\r", 2)
        elif c == 9:
            _put(b, b"\\t", 2)
        elif c == 8:
            _put(b, b"\\b", 2)
        elif c == 12:
            _put(b, b"\\f", 2)
        else:
            _room(b, 6)
            memcpy(b.data + b.size, b"\\u00", 4)
            b.data[b.size + 4] = _HEX[c >> 4]
            b.data[b.size + 5] = _HEX[c & 15]
            b.size += 6
    _put(b, s + start, n - start)
    return 0


cdef Py_ssize_t _width(const char* s, Py_ssize_t n) noexcept:
    """Code points of UTF-8 text (what Python's format pads by)."""
    cdef Py_ssize_t i, w = 0
    for i in range(n):
        if (<unsigned char>s[i] & 0xC0) != 0x80:
            w += 1
    return w


cdef int _pad(Buf* b, const char* s, Py_ssize_t n, Py_ssize_t width) except -1:
    """*s* right-aligned in *width* (Python's ``:>width``), escaped."""
    cdef Py_ssize_t w = _width(s, n)
    while w < width:
        _put(b, b" ", 1)
        w += 1
    return _escape(b, s, n)


cdef int _escape_str(Buf* b, str text) except -1:
    cdef Py_ssize_t n
    cdef const char* s = PyUnicode_AsUTF8AndSize(text, &n)
    return _escape(b, s, n)


# -- reading the packed rows (the forms msgspec and rowpack write)

cdef struct Reader:
    const unsigned char* p
    const unsigned char* end


cdef inline uint64_t _be(Reader* r, int n) except? 0:
    cdef uint64_t v = 0
    cdef int i
    if r.end - r.p < n:
        raise _Shape()
    for i in range(n):
        v = (v << 8) | r.p[i]
    r.p += n
    return v


cdef inline uint8_t _tag(Reader* r) except? 0:
    cdef uint8_t t
    if r.p >= r.end:
        raise _Shape()
    t = r.p[0]
    r.p += 1
    return t


cdef Py_ssize_t _array(Reader* r) except -1:
    cdef uint8_t t = _tag(r)
    if 0x90 <= t <= 0x9F:
        return t & 0x0F
    if t == 0xDC:
        return <Py_ssize_t>_be(r, 2)
    if t == 0xDD:
        return <Py_ssize_t>_be(r, 4)
    raise _Shape()


cdef const char* _str(Reader* r, Py_ssize_t* n) except NULL:
    cdef uint8_t t = _tag(r)
    cdef const char* s
    if 0xA0 <= t <= 0xBF:
        n[0] = t & 0x1F
    elif t == 0xD9:
        n[0] = <Py_ssize_t>_be(r, 1)
    elif t == 0xDA:
        n[0] = <Py_ssize_t>_be(r, 2)
    elif t == 0xDB:
        n[0] = <Py_ssize_t>_be(r, 4)
    else:
        raise _Shape()
    if r.end - r.p < n[0]:
        raise _Shape()
    s = <const char*>r.p
    r.p += n[0]
    return s


cdef int64_t _int(Reader* r) except? -1:
    cdef uint8_t t = _tag(r)
    cdef uint64_t u
    if t <= 0x7F:
        return t
    if t >= 0xE0:
        return <int64_t>t - 256
    if t == 0xCC:
        return <int64_t>_be(r, 1)
    if t == 0xCD:
        return <int64_t>_be(r, 2)
    if t == 0xCE:
        return <int64_t>_be(r, 4)
    if t == 0xCF:
        u = _be(r, 8)
        if u > 0x7FFFFFFFFFFFFFFF:
            raise _Shape()
        return <int64_t>u
    if t == 0xD0:
        return <int64_t>(<signed char>_be(r, 1))
    if t == 0xD1:
        return <int64_t>(<short>_be(r, 2))
    if t == 0xD2:
        return <int64_t>(<int>_be(r, 4))
    if t == 0xD3:
        return <int64_t>_be(r, 8)
    raise _Shape()


cdef struct Head:
    # a run of rows sharing type, permissions and owners: their bytes in the rows, and
    # their parts of the record, escaped (perms, owner, gowner, the message's start)
    const char* kind
    Py_ssize_t kind_n
    const char* perm
    Py_ssize_t perm_n
    const char* owner
    Py_ssize_t owner_n
    const char* gowner
    Py_ssize_t gowner_n
    Buf perms
    Buf message


cdef inline bint _same(const char* a, Py_ssize_t an, const char* b, Py_ssize_t bn) noexcept:
    return an == bn and memcmp(a, b, an) == 0


cdef int _new_head(
    Head* h, const char* kind, Py_ssize_t kind_n, const char* perm, Py_ssize_t perm_n,
    const char* owner, Py_ssize_t owner_n, const char* gowner, Py_ssize_t gowner_n, view,
) except -1:
    h.kind, h.kind_n, h.perm, h.perm_n = kind, kind_n, perm, perm_n
    h.owner, h.owner_n, h.gowner, h.gowner_n = owner, owner_n, gowner, gowner_n
    perms = view.permissions(
        PyUnicode_DecodeUTF8(kind, kind_n, NULL), PyUnicode_DecodeUTF8(perm, perm_n, NULL)
    )
    h.perms.size = 0
    _escape_str(&h.perms, perms)
    h.message.size = 0
    _put_buf(&h.message, &h.perms)
    _put(&h.message, b"   ", 3)
    _pad(&h.message, owner, owner_n, 8)
    _put(&h.message, b" ", 1)
    _pad(&h.message, gowner, gowner_n, 8)
    _put(&h.message, b" ", 1)
    return 0


cdef int _render(Buf* out, Reader* r, Buf* base, bint slash, bint human, view) except -1:
    cdef Py_ssize_t rows = _array(r), i
    cdef Py_ssize_t name_n, kind_n, perm_n, owner_n, gowner_n, size_n
    cdef const char* name
    cdef const char* kind
    cdef const char* perm
    cdef const char* owner
    cdef const char* gowner
    cdef int64_t size, ctime, minute_key, last_minute = 0
    cdef bint have_head = False, have_minute = False, is_dir
    cdef char number[32]
    cdef char ctime_text[32]
    cdef Py_ssize_t ctime_n
    cdef Head head
    cdef Buf minute
    cdef Buf shown
    head.perms.data = head.message.data = minute.data = shown.data = NULL
    head.perms.size = head.perms.cap = head.message.size = head.message.cap = 0
    minute.size = minute.cap = shown.size = shown.cap = 0
    try:
        for i in range(rows):
            if _array(r) != 7:
                raise _Shape()
            name = _str(r, &name_n)
            kind = _str(r, &kind_n)
            perm = _str(r, &perm_n)
            owner = _str(r, &owner_n)
            gowner = _str(r, &gowner_n)
            size = _int(r)
            ctime = _int(r)
            if not (
                have_head
                and _same(kind, kind_n, head.kind, head.kind_n)
                and _same(perm, perm_n, head.perm, head.perm_n)
                and _same(owner, owner_n, head.owner, head.owner_n)
                and _same(gowner, gowner_n, head.gowner, head.gowner_n)
            ):
                _new_head(
                    &head, kind, kind_n, perm, perm_n, owner, owner_n, gowner, gowner_n, view
                )
                have_head = True
            is_dir = kind_n == 1 and kind[0] == 100  # "d"
            minute_key = ctime // 60000  # C division truncates: Python's floor below
            if ctime < 0 and ctime % 60000:
                minute_key -= 1
            if not have_minute or minute_key != last_minute or ctime == 0:
                minute.size = 0
                _escape_str(&minute, view.minute(ctime))
                last_minute = minute_key
                have_minute = ctime != 0  # 0: "" (the minute of another 0 is not kept)
            size_n = snprintf(number, 32, "%lld", <long long>size)
            if i:
                _put(out, b",", 1)
            _put(out, b'{"permissions":"', 16)
            _put_buf(out, &head.perms)
            _put(out, b'","user":"', 10)
            _escape(out, owner, owner_n)
            _put(out, b'","group":"', 11)
            _escape(out, gowner, gowner_n)
            _put(out, b'","size":"', 10)
            _put(out, number, size_n)
            _put(out, b'","ctime":"', 11)
            if ctime:
                ctime_n = snprintf(ctime_text, 32, "%lld", <long long>ctime)
                _put(out, ctime_text, ctime_n)
            _put(out, b'","name":"', 10)
            _escape(out, name, name_n)
            if is_dir and slash:
                _put(out, b"/", 1)
            _put(out, b'","path":"', 10)
            _put_buf(out, base)
            _escape(out, name, name_n)
            if is_dir:
                _put(out, b"/", 1)
            _put(out, b'","message":"', 13)
            _put_buf(out, &head.message)
            if human:
                shown.size = 0
                text = view.human_size(size)
                _escape_str(&shown, text)
                _pad(out, shown.data, shown.size, 12)
            else:
                _pad(out, number, size_n, 12)
            _put(out, b" ", 1)
            _put_buf(out, &minute)
            _put(out, b"    ", 4)
            _escape(out, name, name_n)
            if is_dir and slash:
                _put(out, b"/", 1)
            _put(out, b'"}', 2)
        if r.p != r.end:
            raise _Shape()
    finally:
        free(head.perms.data)
        free(head.message.data)
        free(minute.data)
        free(shown.data)
    return 0


def ls_long_json(bytes rows, str base, bint slash, bint human, view):
    cdef Reader r
    cdef Buf out, base_json
    out.data = base_json.data = NULL
    out.size = out.cap = base_json.size = base_json.cap = 0
    r.p = <const unsigned char*><const char*>rows
    r.end = r.p + len(rows)
    try:
        _room(&out, 128 + len(rows) * 4)
        _escape_str(&base_json, base)
        try:
            _render(&out, &r, &base_json, slash, human, view)
        except _Shape:
            return lslong_py.ls_long_json(rows, base, slash, human, view)
        return PyBytes_FromStringAndSize(out.data, out.size)
    finally:
        free(out.data)
        free(base_json.data)
