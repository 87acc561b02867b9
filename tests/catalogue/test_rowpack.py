"""A listing's page from SQLite straight to MessagePack (jalien/_fast rowpack twins): the
bytes are what msgspec writes for the rows as tuples (so they decode as the typed rows a
client expects), the filters leave out what ``ls`` hides, the last row read is reported,
and bad input is an error of sqlite3's kind. The Cython twin gives byte for byte what the
pure one gives (the pure pass runs this with the twin alone)."""

from __future__ import annotations

import sqlite3

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jalien._fast import rowpack, rowpack_py
from jalien.wire.messages import DirEntry

TWINS = [rowpack_py] if rowpack is rowpack_py else [rowpack_py, rowpack]
ids = {"ids": lambda m: m.IMPLEMENTATION}

EDGES = [0, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, -32, -33, -128, -129]
EDGES += [-32768, -32769, -(2**31), -(2**31) - 1]  # where MessagePack's int forms change
EDGES = [0, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, -32, -33, -128, -129]
EDGES += [-32768, -32769, -(2**31), -(2**31) - 1]  # where MessagePack's int forms change
values = st.one_of(
    st.none(),
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from(EDGES),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.text(min_size=250, max_size=300),
    st.binary(max_size=40),
)


def table(rows: list[tuple]) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, a, b, c)")
    conn.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", rows)
    return conn


@pytest.mark.parametrize("impl", TWINS, **ids)
@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.tuples(values, values, values), max_size=40))
def test_rows_are_packed_as_msgspec_writes_their_tuples(impl, rows):
    conn = table([(i, *r) for i, r in enumerate(rows)])
    sql = "SELECT a, b, c FROM t WHERE k >= ? ORDER BY k"
    packed, count, read, last = impl.pack_rows(conn, sql, (0,), False, "")
    expected = conn.execute(sql, (0,)).fetchall()
    assert packed == msgspec.msgpack.encode(expected)
    assert (count, read) == (len(rows), len(rows))
    assert last == (expected[-1][0] if expected else None)
    assert impl.pack_rows(conn, sql, (0,), False, "") == rowpack_py.pack_rows(
        conn, sql, (0,), False, ""
    )  # the twins agree


names = st.text(alphabet=".ab", min_size=1, max_size=4)


@pytest.mark.parametrize("impl", TWINS, **ids)
@settings(max_examples=200, deadline=None)
@given(
    entries=st.dictionaries(names, st.sampled_from("fdl"), max_size=30),
    hide_dot=st.booleans(),
    skip_type=st.sampled_from(["", "d", "dd"]),
)
def test_a_page_decodes_as_the_listing_ls_shows(impl, entries, hide_dot, skip_type):
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE e (name TEXT PRIMARY KEY, type TEXT, size INTEGER)")
    conn.executemany("INSERT INTO e VALUES (?, ?, ?)", [(n, t, len(n)) for n, t in entries.items()])
    sql = "SELECT name, type, '755', 'o', 'g', size, 0 FROM e WHERE name > ? ORDER BY name"
    packed, count, read, last = impl.pack_rows(conn, sql, ("",), hide_dot, skip_type)
    got = msgspec.msgpack.decode(packed, type=list[DirEntry])
    shown = [
        DirEntry(n, t, "755", "o", "g", len(n), 0)
        for n, t in sorted(entries.items())
        if not (hide_dot and n.startswith(".")) and not (skip_type and t == skip_type)
    ]
    assert got == shown
    assert (count, read) == (len(shown), len(entries))
    assert last == (max(entries) if entries else None)  # read, shown or not


@pytest.mark.parametrize("impl", TWINS, **ids)
def test_a_big_page_has_the_long_array_header(impl):
    conn = table([(i, "x" * (i % 300), i * 7919, None) for i in range(70_000)])
    packed, count, _read, last = impl.pack_rows(conn, "SELECT a, b FROM t", (), False, "")
    assert packed[0] == 0xDD and count == 70_000 and last == "x" * (69_999 % 300)
    assert msgspec.msgpack.decode(packed) == [list(r) for r in conn.execute("SELECT a, b FROM t")]


@pytest.mark.parametrize("impl", TWINS, **ids)
def test_bad_input_is_an_error_of_sqlite3s_kind(impl):
    conn = table([(1, "a", "b", "c")])
    with pytest.raises(sqlite3.OperationalError):
        impl.pack_rows(conn, "SELECT nothing FROM nowhere", (), False, "")
    with pytest.raises(sqlite3.ProgrammingError):
        impl.pack_rows(conn, "SELECT a FROM t WHERE k = ?", (), False, "")  # a value missing
    with pytest.raises(TypeError):
        impl.pack_rows("not a connection", "SELECT 1", (), False, "")
    conn.close()
    with pytest.raises(sqlite3.ProgrammingError):
        impl.pack_rows(conn, "SELECT 1", (), False, "")


@pytest.mark.parametrize("impl", TWINS, **ids)
def test_values_bind_as_sqlite3_binds_them(impl):
    conn = table([(1, "é", b"\x00b", 1.5), (2, None, -5, 2**40)])
    sql = "SELECT k FROM t WHERE a IS ? OR b = ? OR c = ? OR b = ? OR c = ?"
    for args in [("é", None, None, None, None), (None, b"\x00b", 1.5, -5, 2**40)]:
        assert impl.pack_rows(conn, sql, args, False, "") == rowpack_py.pack_rows(
            conn, sql, args, False, ""
        )


@pytest.mark.parametrize("impl", TWINS, **ids)
def test_a_text_that_is_not_utf8_is_refused_as_sqlite3_refuses_it(impl):
    conn = table([(1, "ok", "d\x00x", None)])
    conn.execute("INSERT INTO t VALUES (2, CAST(X'66FF' AS TEXT), 'f', NULL)")
    conn.execute("INSERT INTO t VALUES (3, CAST(X'EDA080' AS TEXT), 'f', NULL)")  # a surrogate
    for k in (2, 3):
        with pytest.raises(sqlite3.OperationalError):
            impl.pack_rows(conn, "SELECT a FROM t WHERE k = ?", (k,), False, "")
    # a type with a NUL in it is not "d"
    packed, count, _read, _last = impl.pack_rows(
        conn, "SELECT a, b FROM t WHERE k = 1", (), False, "d"
    )
    assert count == 1 and msgspec.msgpack.decode(packed) == [["ok", "d\x00x"]]


@pytest.mark.parametrize("impl", TWINS, **ids)
def test_a_read_waiting_on_a_lock_lets_the_other_threads_run(impl, tmp_path):
    """As Python's sqlite3 steps without the GIL: a read that waits for a lock (here an
    exclusive transaction of another connection) must not stop the process."""
    import threading
    import time

    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (a)")
    holder.execute("BEGIN EXCLUSIVE")
    reader = sqlite3.connect(path, timeout=1.0)
    ticks = 0
    done = threading.Event()

    def tick() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            time.sleep(0.001)

    ticker = threading.Thread(target=tick)
    ticker.start()
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            impl.pack_rows(reader, "SELECT a FROM t", (), False, "")
    finally:
        done.set()
        ticker.join()
        holder.execute("ROLLBACK")
    assert ticks > 50  # the ticker ran while the read waited its second (~1000 ticks)
