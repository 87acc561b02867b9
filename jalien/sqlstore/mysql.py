"""A MariaDB database served to an asyncio program without blocking its loop (mysqlclient).

The shape of jalien.sqlstore.sqlite: reads run on a pool of reader threads, each with its
own autocommit connection (a lost connection is replaced and the read tried once more);
writes go to one writer thread that commits everything queued in one transaction (group
commit: ``sqlstore.group_commit``, the one writer of every store), each operation in a
savepoint of its own so that one failure does not undo the others; a write is acknowledged
only once committed. A deadlock makes InnoDB undo the whole transaction: the batch then
runs again one operation at a time. A connection lost before COMMIT is replaced and the
batch runs again (the server rolled it back); lost during COMMIT, the outcome is unknown and
the batch's operations fail.

Also here: DSNs and the connection settings that every MariaDB user of jalien shares; the
sharded catalogue's writers are GroupWriters with hooks (jalien.catalogue.mariadb_backend).
Reader pools run on a ``jalien.loops.WorkPool`` and writers report to a ``PoolGauge``, which
the role's registry lists for admins (pause, resume, resize the readers).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

import MySQLdb
from MySQLdb.constants import CLIENT

from jalien.loops import Pool, WorkPool
from jalien.sqlstore.group_commit import JobWriter, Outcome, WriteJob

log = logging.getLogger(__name__)

# MariaDB error codes
ER_DUP_ENTRY = 1062
ER_LOCK_DEADLOCK = 1213
ER_DATA_TOO_LONG = 1406
ER_XAER_NOTA = 1397
CONNECTION_LOST = {1927, 2006, 2013, 2055, 4031}  # killed, gone away, lost, idle timeout

Op = Callable[[Any], Any]  # runs with a cursor, on a reader or the writer thread


class Dsn(NamedTuple):
    host: str
    port: int
    user: str
    password: str
    database: str
    unix_socket: str
    # other servers holding the same data (the other nodes of a Galera cluster), tried in
    # order when host:port does not answer; the address stays host:port's
    failover: tuple[tuple[str, int], ...] = ()

    @property
    def address(self) -> str:
        return self.unix_socket or f"{self.host}:{self.port}"


def parse_dsn(dsn: str) -> Dsn:
    """mysql://user:password@host:port/database[?unix_socket=path][&failover=h2:p2,h3:p3]
    (or mariadb://)."""
    parts = urlsplit(dsn)
    if parts.scheme not in ("mysql", "mariadb"):
        raise ValueError(f"not a mysql:// or mariadb:// DSN: {dsn!r}")
    database = parts.path.lstrip("/")
    if not database:
        raise ValueError(f"the DSN names no database: {dsn!r}")
    query = parse_qs(parts.query)
    return Dsn(
        parts.hostname or "127.0.0.1",
        parts.port or 3306,
        unquote(parts.username or "root"),
        unquote(parts.password or ""),
        database,
        query.get("unix_socket", [""])[0],
        tuple(_endpoint(e) for v in query.get("failover", []) for e in v.split(",") if e),
    )


def _endpoint(value: str) -> tuple[str, int]:
    host, _, port = value.strip().rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"failover: {value!r} is not host:port")
    return host.strip("[]"), int(port)


CANNOT_CONNECT = {2002, 2003, 2013}  # no server there, refused, lost while connecting
_last_good: dict[tuple[str, int], int] = {}  # a DSN's host:port -> the endpoint that answered


def connect(dsn: Dsn, autocommit: bool = True) -> MySQLdb.Connection:
    """A connection as every thread here uses it: utf8mb4, affected rows = matched rows."""
    kw: dict[str, Any] = {
        "user": dsn.user,
        "password": dsn.password,
        "database": dsn.database,
        "charset": "utf8mb4",
        "autocommit": autocommit,
        "connect_timeout": 10,
        "client_flag": CLIENT.FOUND_ROWS,
    }
    if dsn.unix_socket:
        kw["unix_socket"] = dsn.unix_socket
        conn = MySQLdb.connect(**kw)
    else:
        conn = _connect_any(dsn, kw)
    conn.query("SET SESSION innodb_lock_wait_timeout = 20")
    # on a Galera cluster, reads wait until this node has applied what the cluster
    # committed before them (causal reads): what one jcentral wrote through its node, another
    # reads through its own (no effect without Galera; a server without wsrep refuses it)
    with contextlib.suppress(MySQLdb.Error):
        conn.query("SET SESSION wsrep_sync_wait = 1")
    return conn


def _connect_any(dsn: Dsn, kw: dict[str, Any]) -> MySQLdb.Connection:
    """host:port, else its failover servers in order, starting at the last one that
    answered (a dead node costs one refused connection, not one per reconnection)."""
    ends = [(dsn.host, dsn.port), *dsn.failover]
    first = _last_good.get(ends[0], 0) % len(ends)
    error: Exception | None = None
    for k in range(len(ends)):
        i = (first + k) % len(ends)
        kw["host"], kw["port"] = ends[i]
        try:
            conn = MySQLdb.connect(**kw)
        except MySQLdb.OperationalError as exc:
            if error_code(exc) not in CANNOT_CONNECT or len(ends) == 1:
                raise
            error = exc
            continue
        if i != _last_good.get(ends[0], 0):
            if i:
                log.warning("%s does not answer: connected to %s:%d", dsn.address, *ends[i])
            _last_good[ends[0]] = i
        return conn
    assert error is not None
    raise error


def error_code(exc: BaseException) -> int:
    return exc.args[0] if isinstance(exc, MySQLdb.Error) and exc.args else 0


def is_deadlock(exc: BaseException) -> bool:
    """InnoDB undid the transaction (a lock cycle), or Galera did (a certification
    conflict with another node's commit): the same work may be tried again."""
    return error_code(exc) == ER_LOCK_DEADLOCK


def close_quietly(conn: MySQLdb.Connection | None) -> None:
    if conn is not None:
        with contextlib.suppress(MySQLdb.Error):
            conn.close()


class ReaderPool:
    """Reader threads, each with its own autocommit connection to one server."""

    def __init__(self, dsn: Dsn, readers: int, name: str) -> None:
        self.dsn = dsn
        self.pool = WorkPool(f"{name}-read", readers, on_thread_exit=self._drop_conn)
        self._local = threading.local()
        self._conns: list[MySQLdb.Connection] = []
        self._lock = threading.Lock()

    def _drop_conn(self) -> None:
        """A reader thread ends (the pool shrank or closes): its connection goes too."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            with self._lock:
                if conn in self._conns:
                    self._conns.remove(conn)
            close_quietly(conn)

    def run(self, fn: Op) -> Any:
        """*fn* with a cursor of this thread's connection (on a reader thread)."""
        for attempt in range(2):
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = connect(self.dsn)
                with self._lock:
                    self._conns.append(conn)
            try:
                cur = conn.cursor()
                try:
                    return fn(cur)
                finally:
                    cur.close()
            except MySQLdb.OperationalError as exc:
                if error_code(exc) not in CONNECTION_LOST or attempt:
                    raise
                self._local.conn = None
                close_quietly(conn)
        raise AssertionError("unreachable")

    async def read(self, fn: Op) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, self.run, fn)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        with self._lock:
            for conn in self._conns:
                close_quietly(conn)
            self._conns.clear()


class _Deadlock(Exception):
    pass


class _Reconnect(Exception):
    pass


Result = Outcome  # a value or an error, per operation


class GroupWriter(threading.Thread):
    """One server's single writer: group commit (``sqlstore.group_commit``), a savepoint
    per operation.

    A subclass may widen what an operation gets and what a batch must have done before it
    commits (the sharded catalogue: a transaction object instead of the cursor, and GUID
    references written on another server first) through the four hooks below.
    """

    def __init__(self, dsn: Dsn, name: str, max_batch: int = 1000) -> None:
        super().__init__(name=f"{name}-write", daemon=True)
        self.dsn = dsn
        self.writes = JobWriter(f"{name}-write", max_batch)
        self.conn: MySQLdb.Connection | None = None
        self.gauge = self.writes.gauge

    # -- hooks
    def op_argument(self, cur: Any) -> Any:
        """What each operation of a transaction is called with."""
        return cur

    def batch_started(self, batch: list[WriteJob]) -> Any:
        """Work to start beside the batch; its handle goes to ``before_commit``."""
        return None

    def before_commit(self, started: Any) -> BaseException | None:
        """Why the batch must not commit (it is rolled back and every job fails), if so."""
        return None

    def closing(self) -> None:
        """The writer stops: free what the hooks hold."""

    # -- the thread
    def submit(self, fn: Op, extra: Any = None) -> concurrent.futures.Future:
        return self.writes.submit(fn, extra)

    def stop(self, timeout: float = 30.0) -> None:
        self.writes.stop()  # a paused writer drains what is queued and ends
        self.join(timeout)

    def run(self) -> None:
        self.writes.serve(self._run_batch)
        close_quietly(self.conn)
        self.closing()

    def _run_batch(self, batch: list[WriteJob]) -> list[Result]:
        started = self.batch_started(batch)
        try:
            return self._attempt(batch, started)
        except _Deadlock:  # InnoDB undid the whole transaction: each operation alone
            results: list[Result] = []
            for job in batch:
                for attempt in range(3):
                    try:
                        results.extend(self._attempt([job], started))
                        break
                    except _Deadlock as exc:
                        if attempt == 2:
                            results.append((None, exc.__cause__))
            return results

    def _attempt(self, batch: list[WriteJob], started: Any) -> list[Result]:
        """The batch in one transaction, again on a new connection when the old one was
        lost before COMMIT (the server then rolled it back: nothing happened)."""
        for attempt in range(3):
            try:
                return self._transaction(batch, started)
            except _Reconnect as exc:
                log.warning("%s: writer connection lost (%s), again", self.name, exc.__cause__)
                if attempt == 2:
                    return [(None, exc.__cause__)] * len(batch)
        raise AssertionError("unreachable")

    def _transaction(self, batch: list[WriteJob], started: Any) -> list[Result]:
        committing = False
        try:
            if self.conn is None:
                self.conn = connect(self.dsn, autocommit=False)
            conn = self.conn
            cur = conn.cursor()
            arg = self.op_argument(cur)
            single = len(batch) == 1
            out: list[Result] = []
            # no BEGIN: with autocommit off the first statement opens the transaction; a
            # SAVEPOINT of the same name replaces the previous one (no RELEASE needed)
            for job in batch:
                if not single:
                    cur.execute("SAVEPOINT op")
                try:
                    value = job.fn(arg)
                except BaseException as exc:
                    code = error_code(exc)
                    if code == ER_LOCK_DEADLOCK or code in CONNECTION_LOST:
                        raise
                    if not single:
                        cur.execute("ROLLBACK TO SAVEPOINT op")
                    out.append((None, exc))
                else:
                    out.append((value, None))
            refused = self.before_commit(started)
            if refused is not None:
                conn.rollback()
                return [(None, refused)] * len(batch)
            if single and out[0][1] is not None:
                conn.rollback()
            else:
                committing = True
                conn.commit()  # acknowledged only once committed
            return out
        except MySQLdb.Error as exc:
            if error_code(exc) in CONNECTION_LOST:
                close_quietly(self.conn)
                self.conn = None
                if not committing:
                    raise _Reconnect() from exc
                return [(None, exc)] * len(batch)  # lost during COMMIT: unknown outcome
            if self.conn is not None:
                with contextlib.suppress(MySQLdb.Error):
                    self.conn.rollback()
            if error_code(exc) == ER_LOCK_DEADLOCK:
                raise _Deadlock() from exc
            return [(None, exc)] * len(batch)


class MySQLStore:
    """One database on one server: a reader pool and a group-commit writer; *schema* is
    a list of statements run at start (CREATE TABLE IF NOT EXISTS ...)."""

    def __init__(
        self, dsn: str | Dsn, schema: list[str], *, readers: int = 2, name: str = "mysql"
    ) -> None:
        self.dsn = parse_dsn(dsn) if isinstance(dsn, str) else dsn
        self.schema = schema
        self.name = name
        self.readers = readers
        self._pool: ReaderPool | None = None
        self._writer: GroupWriter | None = None

    async def start(self) -> None:
        await asyncio.to_thread(self._create_schema)
        self._pool = ReaderPool(self.dsn, self.readers, self.name)
        self._writer = GroupWriter(self.dsn, self.name)
        self._writer.start()

    def _create_schema(self) -> None:
        conn = connect(self.dsn)
        try:
            cur = conn.cursor()
            for statement in self.schema:
                cur.execute(statement)
        finally:
            close_quietly(conn)

    def pools(self) -> list[Pool]:
        """The reader pool and the writer, for the role's registry."""
        if self._pool is None or self._writer is None:
            return []
        return [self._pool.pool, self._writer.gauge]

    async def close(self) -> None:
        writer, pool = self._writer, self._pool
        self._writer = self._pool = None
        if writer is not None:
            await asyncio.to_thread(writer.stop)
        if pool is not None:
            await asyncio.to_thread(pool.close)

    async def read(self, fn: Op) -> Any:
        if self._pool is None:
            raise RuntimeError(f"{self.name} store not started")
        return await self._pool.read(fn)

    async def write(self, fn: Op) -> Any:
        if self._writer is None:
            raise RuntimeError(f"{self.name} store not started")
        return await asyncio.wrap_future(self._writer.submit(fn))
