"""moveDirectory: a populated subtree of an LFN table moves, online, to a table of its own
(on the same or another MariaDB server) while readers and writers keep working on it.

The steps (SPLITS in the index database records where a split is, for a restart):

1. *reserve*: the new table T (created empty on its server) and a SPLITS row, state
   ``copying``; triggers on the source table S log the keys (dir, name) of every change
   inside the subtree into a change log beside S (``SPLITLOG_<t>``, in the changing
   transaction: a committed change is logged).
2. *copy*: the subtree's rows, in key order, chunk by chunk, from S into T (GUID
   references to T first: no entry without its reference).
3. *catch up*: the logged keys, oldest first, are copied again from S's current rows (or
   deleted from T when gone), until few are left.
4. *fence and switch*: triggers on S refuse every write inside the subtree (SQLSTATE
   45000 ``jalien: moved``); the last logged keys are caught up (nothing can change any
   more); INDEXTABLE gets the prefix -> T and SPLITS ``switched``, in one transaction.
   A writer refused by the fence re-reads the index and writes to T (the backend's
   ``rerouted``): a write waits at most for the last catch-up.
5. *clean up*: once every process has re-read the index (``index_ttl``), the old rows go
   from S (in chunks), the triggers and the log table go, the SPLITS row goes.

A split interrupted (kill -9) is settled by the next ``start()`` of a process that can take
its lock (``GET_LOCK('jalien_split_<t>')``, held by the splitting connection: free once the
server has seen it die, waited for up to ``DEAD_HOLDER_WAIT``): still ``copying``, it is
rolled back (T, triggers and log dropped; S never stopped being the table); ``switched``, it
is finished (step 5).

Readers of another process whose index is older than the switch read S's rows until they
re-read the index (at most ``index_ttl``): the rows stay until then.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import MySQLdb

from jalien.catalogue.paths import as_dir, prefix_end
from jalien.catalogue.sharding import GuidIndex, LfnIndex, LfnShard
from jalien.sqlstore.mysql import Dsn, close_quietly, connect, error_code

if TYPE_CHECKING:
    from jalien.catalogue.mariadb_backend import MariaDBBackend

log = logging.getLogger(__name__)

ER_SIGNAL_EXCEPTION = 1644
DEAD_HOLDER_WAIT = 2
"""Seconds a start waits for a split's lock before it counts the splitter alive: a killed
process's lock is free only once the server has seen its connection close, a moment after
the kill (CI: a start right after SIGKILL found it still held and left the split
``copying``); a live splitter holds it for the whole split, and the start then goes on."""
MOVED = "jalien: moved"
ROWS = "dir, name, type, perm, owner, gowner, size, ctime, md5, guid, jobid"
PLACES = ", ".join(["%s"] * 11)

SPLITS_DDL = """CREATE TABLE IF NOT EXISTS SPLITS (
    lfn VARBINARY(2048) NOT NULL PRIMARY KEY, srcHost INT NOT NULL, srcTable INT NOT NULL,
    dstHost INT NOT NULL, dstTable INT NOT NULL UNIQUE, state VARCHAR(16) NOT NULL,
    started BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""


def lock_name(prefix: str) -> str:
    """The named lock its splitting connection holds (free again when that process died)."""
    return "jalien_split_" + hashlib.md5(prefix.encode()).hexdigest()


def is_moved(exc: BaseException) -> bool:
    """A write refused by a split's fence: re-read the index and write again."""
    return error_code(exc) == ER_SIGNAL_EXCEPTION and MOVED in str(exc)


def _hex(text: str) -> str:
    return "X'" + text.encode().hex() + "'"


def _inside(row: str, lo: str, hi: str) -> str:
    return f"{row}.dir >= {lo} AND {row}.dir < {hi}"


class Split:
    """One split's names and SQL (pure)."""

    def __init__(self, prefix: str, src: LfnShard, dst: LfnShard) -> None:
        self.prefix, self.src, self.dst = prefix, src, dst
        self.end = prefix_end(prefix)
        self.log_table = f"SPLITLOG_{dst.table}"
        self.lock = lock_name(prefix)

    def capture_ddl(self) -> list[str]:
        lo, hi, s, t = _hex(self.prefix), _hex(self.end), self.src.sql_table, self.dst.table
        put = f"INSERT INTO {self.log_table} (dir, name) VALUES"
        return [
            f"""CREATE TABLE IF NOT EXISTS {self.log_table} (
                id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
                dir VARBINARY(2048) NOT NULL, name VARBINARY(1024) NOT NULL) ENGINE=InnoDB""",
            f"CREATE TRIGGER IF NOT EXISTS jalien_cap{t}_i AFTER INSERT ON {s} FOR EACH ROW "
            f"IF {_inside('NEW', lo, hi)} THEN {put} (NEW.dir, NEW.name); END IF",
            f"CREATE TRIGGER IF NOT EXISTS jalien_cap{t}_u AFTER UPDATE ON {s} FOR EACH ROW "
            f"BEGIN IF {_inside('OLD', lo, hi)} THEN {put} (OLD.dir, OLD.name); END IF; "
            f"IF {_inside('NEW', lo, hi)} THEN {put} (NEW.dir, NEW.name); END IF; END",
            f"CREATE TRIGGER IF NOT EXISTS jalien_cap{t}_d AFTER DELETE ON {s} FOR EACH ROW "
            f"IF {_inside('OLD', lo, hi)} THEN {put} (OLD.dir, OLD.name); END IF",
        ]

    def fence_ddl(self) -> list[str]:
        lo, hi, s, t = _hex(self.prefix), _hex(self.end), self.src.sql_table, self.dst.table
        refuse = f"SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{MOVED} L{t}L'"
        out = []
        for event, row in (("INSERT", "NEW"), ("UPDATE", "OLD"), ("DELETE", "OLD")):
            cond = _inside(row, lo, hi)
            if event == "UPDATE":  # a rename into the subtree is a write into it too
                cond = f"({cond}) OR ({_inside('NEW', lo, hi)})"
            out.append(
                f"CREATE TRIGGER IF NOT EXISTS jalien_fence{t}_{event[0].lower()} BEFORE {event} "
                f"ON {s} FOR EACH ROW IF @jalien_split IS NULL AND ({cond}) THEN {refuse}; END IF"
            )
        return out

    def drop_ddl(self, fence: bool) -> list[str]:
        t = self.dst.table
        names = [f"jalien_cap{t}_{e}" for e in "iud"]
        if fence:
            names += [f"jalien_fence{t}_{e}" for e in "iud"]
        return [f"DROP TRIGGER IF EXISTS {n}" for n in names] + [
            f"DROP TABLE IF EXISTS {self.log_table}"
        ]


class Splitter:
    """Runs one split on its own connections (a thread of its own: ``asyncio.to_thread``)."""

    def __init__(
        self,
        backend: MariaDBBackend,
        split: Split,
        lfn: LfnIndex,
        guids: GuidIndex,
        *,
        chunk: int,
        pause: float,
        duty: float = 1.0,
        switched: Callable[[], None],
        index: MySQLdb.Connection,
    ) -> None:
        self.b, self.s = backend, split
        self.lfn, self.guids = lfn, guids
        self.chunk, self.pause, self.duty = chunk, pause, min(1.0, max(0.05, duty))
        self.switched = switched  # called once INDEXTABLE has the new table
        self.copied = 0
        self.caught_up = 0
        self.removed = 0
        self._conns: dict[str, MySQLdb.Connection] = {"index": index}  # holds the lock

    def _conn(self, which: str, dsn: Dsn, autocommit: bool = True) -> MySQLdb.Connection:
        conn = self._conns.get(which)
        if conn is None:
            conn = self._conns[which] = connect(dsn, autocommit=autocommit)
            conn.query("SET @jalien_split = 1")  # the fence lets this session through
        return conn

    @property
    def index(self) -> Any:
        return self._conn("index", self.b._dsn(self.b.index_host)).cursor()

    @property
    def src(self) -> Any:
        return self._conn("src", self.b._dsn(self.s.src.host)).cursor()

    def close(self) -> None:
        for conn in self._conns.values():
            close_quietly(conn)
        self._conns.clear()

    # -- the steps
    def run(self, wait_readers: float) -> str:
        began = time.monotonic()
        try:
            self.capture()
            self.copy()
            while self.catch_up() > max(100, self.chunk // 10):
                pass
            self.fence_and_switch()
            switched = time.monotonic() - began
            self.switched()
            time.sleep(max(0.0, wait_readers))  # every process re-reads the index meanwhile
            self.clean_up()
        finally:
            self.close()
        return (
            f"{self.s.prefix}: {self.copied} entries moved from {self.s.src.sql_table} (host "
            f"{self.s.src.host}) to {self.s.dst.sql_table} (host {self.s.dst.host}): switched "
            f"after {switched:.1f} s, old rows removed after {time.monotonic() - began:.1f} s "
            f"({self.caught_up} changed meanwhile, caught up)"
        )

    def capture(self) -> None:
        cur = self.src
        for ddl in self.s.capture_ddl():
            cur.execute(ddl)

    def _write_rows(self, rows: list[tuple], gone: list[tuple[bytes, bytes]]) -> None:
        """*rows* into T (replacing), *gone* keys out of T; their GUID references first."""
        dst = self.s.dst
        refs = [(self.guids.route(g), g, dst.table) for g in {r[9] for r in rows} if g]
        if refs:
            self.b._tx_side().write_refs(refs)
        conn = self._conn("dst", self.b._dsn(dst.host), autocommit=False)
        cur = conn.cursor()
        try:
            if rows:
                cur.executemany(f"REPLACE INTO {dst.sql_table} ({ROWS}) VALUES ({PLACES})", rows)
            for d, n in gone:
                cur.execute(f"DELETE FROM {dst.sql_table} WHERE dir=%s AND name=%s", (d, n))
            conn.commit()
        except BaseException:
            with contextlib.suppress(MySQLdb.Error):
                conn.rollback()
            raise

    def copy(self) -> None:
        s, cur = self.s, self.src
        sql = (
            f"SELECT {ROWS} FROM {s.src.sql_table} WHERE dir >= %s AND dir < %s "
            "AND (dir > %s OR (dir = %s AND name > %s)) ORDER BY dir, name LIMIT %s"
        )
        last: tuple[Any, Any] = (s.prefix, b"")
        while True:
            began = time.monotonic()
            cur.execute(sql, (s.prefix, s.end, last[0], last[0], last[1], self.chunk))
            rows = list(cur.fetchall())
            if not rows:
                return
            self._write_rows(rows, [])
            self.copied += len(rows)
            last = (rows[-1][0], rows[-1][1])
            if len(rows) < self.chunk:
                return
            self._breathe(began)

    def _breathe(self, began: float) -> None:
        """Rest after a step: *duty* is the share of time the split works (the readers and
        writers of the server and of this process have the rest), plus *pause*."""
        worked = time.monotonic() - began
        rest = self.pause + worked * (1.0 - self.duty) / self.duty
        if rest > 0:
            time.sleep(rest)

    def catch_up(self) -> int:
        """The logged changes up to now, once; how many keys there were."""
        s, cur = self.s, self.src
        cur.execute(f"SELECT id, dir, name FROM {s.log_table} ORDER BY id LIMIT %s", (self.chunk,))
        logged = cur.fetchall()
        if not logged:
            return 0
        keys = sorted({(d, n) for _, d, n in logged})
        rows: list[tuple] = []
        for d, n in keys:
            cur.execute(f"SELECT {ROWS} FROM {s.src.sql_table} WHERE dir=%s AND name=%s", (d, n))
            rows.extend(cur.fetchall())
        present = {(r[0], r[1]) for r in rows}
        self._write_rows(rows, [k for k in keys if k not in present])
        cur.execute(f"DELETE FROM {s.log_table} WHERE id <= %s", (logged[-1][0],))
        self.caught_up += len(keys)
        return len(logged)

    def fence_and_switch(self) -> None:
        s = self.s
        cur = self.src
        for ddl in s.fence_ddl():  # waits for the transactions open on S, then refuses
            cur.execute(ddl)
        while self.catch_up():
            pass
        dcur = self._conn("count", self.b._dsn(s.dst.host)).cursor()
        dcur.execute(f"SELECT COUNT(*) FROM {s.dst.sql_table}")  # T's rows, exactly: frozen
        rows = int(dcur.fetchone()[0])
        icur = self.index
        icur.execute("BEGIN")
        try:
            icur.execute(
                "REPLACE INTO TABLECOUNTS (tbl, nrows) VALUES (%s, %s)", (s.dst.sql_table, rows)
            )
            icur.execute(
                "INSERT INTO INDEXTABLE (hostIndex, tableName, lfn) VALUES (%s, %s, %s)",
                (s.dst.host, s.dst.table, s.prefix),
            )
            icur.execute("UPDATE SPLITS SET state='switched' WHERE dstTable=%s", (s.dst.table,))
            icur.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(MySQLdb.Error):
                icur.execute("ROLLBACK")
            raise

    def clean_up(self) -> None:
        """The old rows out of S, the triggers and the log away, SPLITS forgotten."""
        s, cur = self.s, self.src
        inside = "dir >= %s AND dir < %s AND (dir > %s OR (dir = %s AND name > %s))"
        last: tuple[Any, Any] = (s.prefix, b"")
        while True:  # key ranges from the last one on: no rescan of rows deleted already
            began = time.monotonic()
            args = (s.prefix, s.end, last[0], last[0], last[1])
            cur.execute(
                f"SELECT dir, name FROM {s.src.sql_table} WHERE {inside} "
                "ORDER BY dir, name LIMIT 1 OFFSET %s",
                (*args, self.chunk - 1),
            )
            upto = cur.fetchone()
            if upto is None:
                self.removed += cur.execute(f"DELETE FROM {s.src.sql_table} WHERE {inside}", args)
                break
            self.removed += cur.execute(
                f"DELETE FROM {s.src.sql_table} WHERE {inside} "
                "AND (dir < %s OR (dir = %s AND name <= %s))",
                (*args, upto[0], upto[0], upto[1]),
            )
            last = (upto[0], upto[1])
            self._breathe(began)
        for ddl in s.drop_ddl(fence=True):
            cur.execute(ddl)
        self.b._deltas.add(s.src.sql_table, -self.removed)
        self.index.execute("DELETE FROM SPLITS WHERE dstTable=%s", (s.dst.table,))


def reserve(backend: MariaDBBackend, directory: str, host: int | None) -> Split:
    """Step 1 under the index lock: checks, the new table, the SPLITS row."""
    from jalien.catalogue.mariadb_backend import _Admin, lfn_table_ddl

    prefix = as_dir(directory)
    if not prefix.startswith("/") or prefix == "/":
        raise ValueError(f"{directory}: not a directory that can have a table of its own")
    with _Admin(backend) as admin:
        admin.cur.execute(SPLITS_DDL)
        index = admin.lfn_index()
        if any(sh.prefix == prefix for sh in index.shards):
            raise ValueError(f"{prefix} has a table of its own already")
        admin.cur.execute("SELECT CONVERT(lfn USING utf8mb4) FROM SPLITS")
        for (other,) in admin.cur.fetchall():
            if other.startswith(prefix) or prefix.startswith(other):
                raise ValueError(f"{prefix}: a split of {other} is in progress")
        src = index.route(prefix)
        dst_host = src.host if host is None else backend.host_index(host)
        admin.cur.execute(
            "SELECT GREATEST((SELECT COALESCE(MAX(tableName), -1) FROM INDEXTABLE), "
            "(SELECT COALESCE(MAX(dstTable), -1) FROM SPLITS)) + 1"
        )
        dst = LfnShard(prefix, dst_host, int(admin.cur.fetchone()[0]))
        admin.host_cursor(dst_host).execute(lfn_table_ddl(dst.sql_table))
        admin.cur.execute(
            "INSERT INTO SPLITS (lfn, srcHost, srcTable, dstHost, dstTable, state, started) "
            "VALUES (%s, %s, %s, %s, %s, 'copying', %s)",
            (prefix, src.host, src.table, dst.host, dst.table, int(time.time() * 1000)),
        )
        admin.cur.execute(
            "INSERT IGNORE INTO TABLECOUNTS (tbl, nrows) VALUES (%s, 0)", (dst.sql_table,)
        )
    return Split(prefix, src, dst)


def settle(backend: MariaDBBackend) -> list[str]:
    """Splits whose process died: roll back those still copying, finish those switched.
    Returns what was done (one line each)."""
    done: list[str] = []
    conn = connect(backend._dsn(backend.index_host))
    try:
        cur = conn.cursor()
        cur.execute(SPLITS_DDL)
        cur.execute(
            "SELECT CONVERT(lfn USING utf8mb4), srcHost, srcTable, dstHost, dstTable, state "
            "FROM SPLITS"
        )
        for prefix, sh, st, dh, dt, state in cur.fetchall():
            split = Split(prefix, LfnShard(prefix, sh, st), LfnShard(prefix, dh, dt))
            cur.execute("SELECT GET_LOCK(%s, %s)", (split.lock, DEAD_HOLDER_WAIT))
            if cur.fetchone()[0] != 1:
                continue  # its process is alive and splitting
            try:
                done.append(_settle_one(backend, split, state, cur))
            finally:
                cur.execute("DO RELEASE_LOCK(%s)", (split.lock,))
    finally:
        close_quietly(conn)
    for line in done:
        log.warning("%s", line)
    return done


def _settle_one(backend: MariaDBBackend, split: Split, state: str, icur: Any) -> str:
    src = connect(backend._dsn(split.src.host))
    try:
        scur = src.cursor()
        scur.execute("SET @jalien_split = 1")
        if state == "switched":
            gone = 0
            while True:
                n = scur.execute(
                    f"DELETE FROM {split.src.sql_table} WHERE dir >= %s AND dir < %s LIMIT 5000",
                    (split.prefix, split.end),
                )
                gone += n
                if n < 5000:
                    break
            for ddl in split.drop_ddl(fence=True):
                scur.execute(ddl)
            backend._deltas.add(split.src.sql_table, -gone)
            icur.execute("DELETE FROM SPLITS WHERE dstTable=%s", (split.dst.table,))
            return (
                f"{split.prefix}: the interrupted split to {split.dst.sql_table} finished "
                f"({gone} old entries removed from {split.src.sql_table})"
            )
        for ddl in split.drop_ddl(fence=True):
            scur.execute(ddl)
        dst = connect(backend._dsn(split.dst.host))
        try:
            dst.cursor().execute(f"DROP TABLE IF EXISTS {split.dst.sql_table}")
        finally:
            close_quietly(dst)
        icur.execute("DELETE FROM TABLECOUNTS WHERE tbl=%s", (split.dst.sql_table,))
        icur.execute("DELETE FROM SPLITS WHERE dstTable=%s", (split.dst.table,))
        return (
            f"{split.prefix}: the interrupted split to {split.dst.sql_table} rolled back "
            f"(the entries never left {split.src.sql_table})"
        )
    finally:
        close_quietly(src)
