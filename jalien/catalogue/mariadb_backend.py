"""The catalogue on sharded MariaDB, the AliEn way.

Layout (names as AliEn's):
- the index database (in the database of the index host) holds HOSTS (hostIndex ->
  address, db), INDEXTABLE (LFN prefix -> hostIndex, tableName), GUIDINDEX (GUID start time
  -> hostIndex, tableName), SE (storage elements) and XALOG (commit decisions of
  two-phase transactions);
- ``L<n>L`` tables hold entries keyed (dir, name), dir and name as VARBINARY so that the
  key fits InnoDB's 3072 bytes and orders by code point as Python does; an entry lives in
  the table of the longest prefix its dir starts with (jalien.catalogue.sharding);
- ``G<n>L`` tables hold GUID -> LFN-table references and ``G<n>L_PFN`` the replicas; a GUID
  lives in the table of its time (version-1 UUIDs), so GUID tables rotate by time.

Threads: every host has a pool of reader threads (one autocommit connection each) and one
writer thread that commits everything queued in one transaction, each operation in a
savepoint of its own (group commit, as the SQLite backend). An operation whose tables lie
on several hosts runs on a small coordinator pool as an XA transaction: every host it
touches gets a branch; one branch commits in one phase, several are prepared, the decision
is logged in XALOG on the index host, then committed. A crash between the decision and the
last commit leaves prepared branches that `recover()` (called by `start()`) commits when
the decision is logged and rolls back when it is not. Moving entries across shards is a
copy and a delete inside such a transaction.

GUID references are written, committed, before the entries that need them (on their own
connections), so every committed entry with a GUID has its reference; a reference may
outlive its entries (a delete does not touch it), and `by_guid` only trusts what the
referenced tables hold.

Limits: dir <= 2048 bytes and name <= 1024 bytes (InnoDB's key; longer is a BadPath);
`add_shard` takes an empty prefix only (a populated subtree moves with `move_directory`,
online: jalien.catalogue.mariadb_split); every process re-reads the index each `index_ttl`
seconds, as AliEn's caches do, so a shard is added before anything is written under it,
and a GUID table starts in the future (the default start of `add_guid_table` leaves that
margin; the guid-tables optimizer adds one when the newest is full). GUID lookups look in
every GUID table. Each process counts the rows its commits add and remove per table
(jalien.catalogue.table_counts; `table_counts()`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import itertools
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import msgspec
import MySQLdb
from msgspec.structs import astuple

from jalien.catalogue import find_sql
from jalien.catalogue.backend import (
    ALL_FIELDS,
    PAGE,
    CatalogueBackend,
    DiskUsage,
    Exists,
    FindQuery,
    NotFound,
    PackedEntries,
    listing_fields,
    pack_shown,
    page_rows,
)
from jalien.catalogue.change_log import PENDING, Pending
from jalien.catalogue.mariadb_split import Splitter, is_moved, lock_name, reserve, settle
from jalien.catalogue.model import DIRECTORY, Entry, Replica, StorageElement, now_ms
from jalien.catalogue.paths import BadPath, as_dir, prefix_end, split
from jalien.catalogue.sharding import (
    GuidIndex,
    GuidShard,
    LfnIndex,
    LfnShard,
    entry_key,
    merge_pages,
)
from jalien.catalogue.table_counts import COUNTS_DDL, Deltas, TableCount, start_at_zero
from jalien.catalogue.table_counts import flush as flush_counts
from jalien.catalogue.table_counts import stored as stored_counts
from jalien.loops import Pool, WorkPool
from jalien.sqlstore.mysql import (
    CONNECTION_LOST,
    ER_DATA_TOO_LONG,
    ER_DUP_ENTRY,
    ER_LOCK_DEADLOCK,
    ER_XAER_NOTA,
    Dsn,
    GroupWriter,
    ReaderPool,
    WriteJob,
    connect,
    parse_dsn,
)
from jalien.sqlstore.mysql import close_quietly as _close_quietly
from jalien.sqlstore.mysql import error_code as _code
from jalien.wire.errors import EXIT_INVALID, RequestError
from jalien.wire.messages import DirEntry

log = logging.getLogger(__name__)

MAX_DIR_BYTES = 2048  # dir + name must fit InnoDB's 3072-byte key
MAX_NAME_BYTES = 1024
COPY_CHUNK = 5000
KEYS_PER_QUERY = 1000

# the SELECTed columns in Entry's order (rows convert positionally); a listing's: _listing_columns
ENTRY_COLUMNS = (
    "CONVERT(dir USING utf8mb4), CONVERT(name USING utf8mb4), "
    "type, perm, owner, gowner, size, ctime, md5, guid, jobid"
)
INSERT_COLUMNS = "dir, name, type, perm, owner, gowner, size, ctime, md5, guid, jobid"
INSERT_VALUES = ", ".join(["%s"] * 11)
TEXT = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin"

INDEX_SCHEMA = [
    f"""CREATE TABLE IF NOT EXISTS HOSTS (
        hostIndex INT NOT NULL PRIMARY KEY, address VARCHAR(255) NOT NULL,
        db VARCHAR(64) NOT NULL, UNIQUE KEY host (address, db)) {TEXT}""",
    f"""CREATE TABLE IF NOT EXISTS INDEXTABLE (
        indexId INT NOT NULL AUTO_INCREMENT PRIMARY KEY, hostIndex INT NOT NULL,
        tableName INT NOT NULL UNIQUE, lfn VARBINARY({MAX_DIR_BYTES}) NOT NULL UNIQUE) {TEXT}""",
    f"""CREATE TABLE IF NOT EXISTS GUIDINDEX (
        indexId INT NOT NULL AUTO_INCREMENT PRIMARY KEY, hostIndex INT NOT NULL,
        tableName INT NOT NULL UNIQUE, guidTime BIGINT NOT NULL UNIQUE) {TEXT}""",
    f"""CREATE TABLE IF NOT EXISTS SE (
        name VARCHAR(255) NOT NULL PRIMARY KEY, doc BLOB NOT NULL) {TEXT}""",
    f"""CREATE TABLE IF NOT EXISTS XALOG (
        gtrid VARCHAR(64) NOT NULL PRIMARY KEY, created BIGINT NOT NULL) {TEXT}""",
    COUNTS_DDL,
]


def lfn_table_ddl(table: str) -> str:
    return f"""CREATE TABLE IF NOT EXISTS {table} (
        dir VARBINARY({MAX_DIR_BYTES}) NOT NULL, name VARBINARY({MAX_NAME_BYTES}) NOT NULL,
        type CHAR(1) NOT NULL, perm VARCHAR(8) NOT NULL, owner VARCHAR(255) NOT NULL,
        gowner VARCHAR(255) NOT NULL, size BIGINT NOT NULL, ctime BIGINT NOT NULL,
        md5 VARCHAR(64) NOT NULL, guid VARCHAR(64) NOT NULL, jobid BIGINT NOT NULL,
        PRIMARY KEY (dir, name), KEY guid (guid)) {TEXT}"""


def guid_tables_ddl(shard: GuidShard) -> list[str]:
    return [
        f"""CREATE TABLE IF NOT EXISTS {shard.refs_table} (
            guid VARCHAR(64) NOT NULL, lfnTable INT NOT NULL,
            PRIMARY KEY (guid, lfnTable)) {TEXT}""",
        f"""CREATE TABLE IF NOT EXISTS {shard.pfn_table} (
            guid VARCHAR(64) NOT NULL, se VARCHAR(255) NOT NULL, pfn VARCHAR(4096) NOT NULL,
            UNIQUE KEY replica (guid, se, pfn), KEY guid (guid)) {TEXT}""",
    ]


class MariaDBConfig(msgspec.Struct, kw_only=True, frozen=True):
    """How to reach the catalogue's servers; the role (or a test) builds it."""

    hosts: list[str]  # DSNs, mysql://user:password@host:port/database[?unix_socket=path]
    index_host: int = 0  # position in hosts of the server holding the index database
    prefixes: dict[str, int] = {}  # LFN prefix -> position in hosts; added at start if missing
    readers: int = 4  # reader threads (each with its connection) per host
    index_ttl: float = 300.0  # seconds before INDEXTABLE/GUIDINDEX are read again
    # a new GUID table starts this long after every process has re-read the index (clocks)
    guid_switch_margin: float = 60.0
    split_chunk: int = 1000  # rows per step of moveDirectory's copy and clean-up
    split_duty: float = 0.5  # the share of time a split works (readers have the rest)
    split_pause: float = 0.0  # seconds more between two steps
    xa_recover_age: float = 30.0  # start() settles prepared XA branches older than this
    # the name each host is registered under in HOSTS (default: its DSN's host:port).
    # Several jcentrals reaching one Galera cluster, each through its own node, give it the
    # same name (their DSNs differ, the host is one); Galera has no XA: one host there
    names: list[str] = []


def _check_lengths(d: str, n: str) -> None:
    if len(d) * 4 > MAX_DIR_BYTES and len(d.encode()) > MAX_DIR_BYTES:
        raise BadPath(f"{d}: directory longer than {MAX_DIR_BYTES} bytes")
    if len(n) * 4 > MAX_NAME_BYTES and len(n.encode()) > MAX_NAME_BYTES:
        raise BadPath(f"{n}: name longer than {MAX_NAME_BYTES} bytes")


def _where_keys(keys: list[tuple[str, str]]) -> tuple[str, list[str]]:
    """A WHERE clause matching (dir, name) keys, grouped by dir (range scans of the key)."""
    by_dir: dict[str, list[str]] = {}
    for d, n in keys:
        by_dir.setdefault(d, []).append(n)
    parts, args = [], []
    for d, names in by_dir.items():
        parts.append(f"(dir=%s AND name IN ({','.join(['%s'] * len(names))}))")
        args.append(d)
        args.extend(names)
    return " OR ".join(parts), args


def _chunks(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# -- transactions as an operation sees them: tx.cursor(host) and tx.add_refs(refs)

Ref = tuple[GuidShard, str, int]  # (GUID table, guid, LFN tableName)
Op = Callable[[Any], Any]


class _Side:
    """Autocommit-style connections of one thread to any host, for GUID references that
    must be committed before the entries that need them."""

    def __init__(self, dsns: Callable[[int], Dsn], deltas: Deltas | None = None) -> None:
        self._dsns = dsns
        self._deltas = deltas  # references added, counted once committed
        self._conns: dict[int, MySQLdb.Connection] = {}

    def write_refs(self, refs: Iterable[Ref]) -> None:
        by_host: dict[int, dict[GuidShard, set[tuple[str, int]]]] = {}
        for shard, guid, table in refs:
            by_host.setdefault(shard.host, {}).setdefault(shard, set()).add((guid, table))
        for host, tables in by_host.items():
            for attempt in range(3):
                conn = self._conns.get(host)
                if conn is None:
                    conn = self._conns[host] = connect(self._dsns(host), autocommit=False)
                try:
                    cur = conn.cursor()
                    added: dict[str, int] = {}
                    for shard, rows in sorted(tables.items()):
                        added[shard.refs_table] = (
                            cur.executemany(
                                f"INSERT IGNORE INTO {shard.refs_table} (guid, lfnTable) "
                                "VALUES (%s, %s)",
                                sorted(rows),
                            )
                            or 0
                        )
                    conn.commit()
                    if self._deltas is not None:
                        self._deltas.add_all(added)
                    break
                except MySQLdb.Error as exc:
                    if _code(exc) in CONNECTION_LOST:
                        self.drop(host)
                    else:
                        conn.rollback()
                    if attempt == 2 or _code(exc) not in (ER_LOCK_DEADLOCK, *CONNECTION_LOST):
                        raise

    def drop(self, host: int) -> None:
        _close_quietly(self._conns.pop(host, None))

    def close(self) -> None:
        for host in list(self._conns):
            self.drop(host)


def _with_change(fn: Op, host: int, pending: Pending) -> Op:
    """*fn*, then the change log's row on *host*, in the same transaction (and savepoint)."""

    def run(tx: Any) -> Any:
        value = fn(tx)
        sql, args = pending.row()
        tx.cursor(host).execute(sql, args)
        return value

    return run


class _HostTx:
    """One host's transaction, inside the writer's group commit."""

    def __init__(self, host: int, cur: Any, writer: _Writer) -> None:
        self.host, self.cur, self.writer = host, cur, writer

    def cursor(self, host: int) -> Any:
        if host != self.host:
            raise RuntimeError(f"operation planned for host {self.host} touched host {host}")
        return self.cur

    def add_refs(self, refs: Iterable[Ref]) -> None:
        self.writer.write_refs(list(refs)).result()


class _Writer(GroupWriter):
    """A host's single writer (group commit, a savepoint per operation): operations get a
    _HostTx, and the GUID references a batch declares are written by a helper thread while
    the batch runs, and committed before the batch is (no entry without its reference)."""

    def __init__(
        self, host: int, dsn: Dsn, dsns: Callable[[int], Dsn], deltas: Deltas | None = None
    ) -> None:
        super().__init__(dsn, f"mariadb{host}")
        self.host = host
        self.side = _Side(dsns, deltas)  # used on the helper thread only
        self.helper = WorkPool(f"mariadb{host}-refs", 1)

    def write_refs(self, refs: list[Ref]) -> concurrent.futures.Future:
        return self.helper.submit(self.side.write_refs, refs)

    def op_argument(self, cur: Any) -> _HostTx:
        return _HostTx(self.host, cur, self)

    def batch_started(self, batch: list[WriteJob]) -> concurrent.futures.Future | None:
        refs = [r for job in batch for r in job.extra]
        return self.write_refs(refs) if refs else None

    def before_commit(self, started: concurrent.futures.Future | None) -> BaseException | None:
        return started.exception() if started is not None else None

    def closing(self) -> None:
        self.helper.submit(self.side.close).result()
        self.helper.shutdown()


class _XaTx:
    """A transaction over several hosts: an XA branch on each host it touches; one phase
    when it touched one, two phases with the decision logged in XALOG when more."""

    def __init__(self, conns: dict[int, MySQLdb.Connection], backend: MariaDBBackend) -> None:
        self.gtrid = f"jalien-{now_ms()}-{uuid.uuid4().hex[:16]}"
        self._conns = conns
        self._backend = backend
        self._side = backend._tx_side()
        self.branches: dict[int, Any] = {}

    def _xid(self, host: int) -> str:
        return f"'{self.gtrid}','{host}'"

    def cursor(self, host: int) -> Any:
        cur = self.branches.get(host)
        if cur is None:
            conn = self._conns.get(host)
            if conn is None:
                conn = self._conns[host] = connect(self._backend._dsn(host))
            cur = conn.cursor()
            try:
                cur.execute(f"XA START {self._xid(host)}")
            except MySQLdb.Error:  # a dead or confused connection: a new one next time
                _close_quietly(self._conns.pop(host, None))
                raise
            self.branches[host] = cur
        return cur

    def add_refs(self, refs: Iterable[Ref]) -> None:
        self._side.write_refs(refs)

    def commit(self) -> None:
        for host, cur in self.branches.items():
            cur.execute(f"XA END {self._xid(host)}")
        if len(self.branches) == 1:
            ((host, cur),) = self.branches.items()
            cur.execute(f"XA COMMIT {self._xid(host)} ONE PHASE")
            return
        try:
            for host, cur in self.branches.items():
                cur.execute(f"XA PREPARE {self._xid(host)}")
            self._backend._log_decision(self.gtrid)
        except BaseException:
            self.rollback(ended=True)
            raise
        for host, cur in self.branches.items():  # decided: a failure here is for recover()
            try:
                cur.execute(f"XA COMMIT {self._xid(host)}")
            except MySQLdb.Error:
                log.exception("XA COMMIT of %s on host %s failed; recover() will", self.gtrid, host)
                return
        self._backend._forget_decision(self.gtrid)

    def rollback(self, ended: bool = False) -> None:
        for host, cur in self.branches.items():
            if not ended:
                with contextlib.suppress(MySQLdb.Error):
                    cur.execute(f"XA END {self._xid(host)}")
            try:
                cur.execute(f"XA ROLLBACK {self._xid(host)}")
            except MySQLdb.Error as exc:
                if _code(exc) in CONNECTION_LOST:
                    _close_quietly(self._conns.pop(host, None))
                elif _code(exc) != ER_XAER_NOTA:
                    log.warning("XA ROLLBACK of %s on host %s: %s", self.gtrid, host, exc)


class _Host:
    """One server (hostIndex): reader threads with a connection each, and the writer."""

    def __init__(
        self,
        index: int,
        dsn: Dsn,
        readers: int,
        dsns: Callable[[int], Dsn],
        deltas: Deltas | None = None,
    ) -> None:
        self.index, self.dsn = index, dsn
        self.readers = ReaderPool(dsn, readers, f"mariadb{index}")
        self.writer = _Writer(index, dsn, dsns, deltas)
        self.writer.start()

    async def read(self, fn: Callable[[Any], Any]) -> Any:
        return await self.readers.read(fn)

    def pools(self) -> list[Pool]:
        return [self.readers.pool, self.writer.gauge, self.writer.helper]

    def close(self) -> None:
        self.writer.stop(30)
        self.readers.close()


P = ParamSpec("P")
R = TypeVar("R")


def _rerouted(
    method: Callable[Concatenate[MariaDBBackend, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[MariaDBBackend, P], Coroutine[Any, Any, R]]:
    """A write refused by a split's fence (its subtree moved, or is about to) runs again
    with the index re-read: the split's last catch-up is short."""

    @functools.wraps(method)
    async def run(self: MariaDBBackend, *args: P.args, **kwargs: P.kwargs) -> R:
        for attempt in itertools.count():
            try:
                return await method(self, *args, **kwargs)
            except MySQLdb.Error as exc:
                if not is_moved(exc) or attempt >= 100:
                    raise
            await self.reload()
            await asyncio.sleep(min(0.01 * 2**attempt, 0.25))
        raise AssertionError("unreachable")

    return run


def _execute(host: int, sql: str, args: Any) -> Callable[[Any], int]:
    """An operation of one statement on *host*: its affected rows."""

    def run(tx: Any) -> int:
        return int(tx.cursor(host).execute(sql, args))

    return run


def _listing_columns(fields: int) -> str:
    """The columns a listing of DirEntry's first *fields* fields SELECTs (name as text)."""
    return ", ".join(["CONVERT(name USING utf8mb4)", *listing_fields(fields)[1:]])


def _fetchall(sql: str, args: Any) -> Callable[[Any], tuple]:
    def run(cur: Any) -> tuple:
        cur.execute(sql, args)
        return cur.fetchall()

    return run


class _Admin:
    """The index database under its named lock, with short-lived connections to the hosts:
    for creating the index, adding shards and GUID tables (rare, serialised)."""

    def __init__(self, backend: MariaDBBackend) -> None:
        self.backend = backend
        self.conn = connect(backend._dsns[backend.config.index_host])
        self.cur = self.conn.cursor()
        self._conns: dict[int, MySQLdb.Connection] = {}
        self.cur.execute("SELECT GET_LOCK('jalien_catalogue_index', 60)")
        if self.cur.fetchone()[0] != 1:
            self.close()
            raise TimeoutError("the catalogue index is locked by another process")

    def host_cursor(self, host: int) -> Any:
        conn = self._conns.get(host)
        if conn is None:
            conn = self._conns[host] = connect(self.backend._dsn(host))
        return conn.cursor()

    def lfn_index(self) -> LfnIndex:
        self.cur.execute("SELECT CONVERT(lfn USING utf8mb4), hostIndex, tableName FROM INDEXTABLE")
        return LfnIndex([LfnShard(*row) for row in self.cur.fetchall()])

    def guid_shards(self) -> list[GuidShard]:
        self.cur.execute("SELECT guidTime, hostIndex, tableName FROM GUIDINDEX")
        return sorted(GuidShard(*row) for row in self.cur.fetchall())

    def next_table(self, index: str) -> int:
        self.cur.execute(f"SELECT COALESCE(MAX(tableName), -1) + 1 FROM {index}")
        return int(self.cur.fetchone()[0])

    def add_lfn_table(self, prefix: str, host: int) -> LfnShard:
        shard = LfnShard(prefix, host, self.next_table("INDEXTABLE"))
        self.host_cursor(host).execute(lfn_table_ddl(shard.sql_table))
        start_at_zero(self.cur, [shard.sql_table])
        self.cur.execute(
            "INSERT INTO INDEXTABLE (hostIndex, tableName, lfn) VALUES (%s, %s, %s)",
            (host, shard.table, prefix),
        )
        return shard

    def add_guid_table(self, since: int, host: int) -> GuidShard:
        shard = GuidShard(since, host, self.next_table("GUIDINDEX"))
        cur = self.host_cursor(host)
        for ddl in guid_tables_ddl(shard):
            cur.execute(ddl)
        start_at_zero(self.cur, [shard.refs_table, shard.pfn_table])
        self.cur.execute(
            "INSERT INTO GUIDINDEX (hostIndex, tableName, guidTime) VALUES (%s, %s, %s)",
            (host, shard.table, since),
        )
        return shard

    def close(self) -> None:
        with contextlib.suppress(MySQLdb.Error):
            self.cur.execute("DO RELEASE_LOCK('jalien_catalogue_index')")
        _close_quietly(self.conn)
        for conn in self._conns.values():
            _close_quietly(conn)

    def __enter__(self) -> _Admin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MariaDBBackend:
    def __init__(self, config: MariaDBConfig) -> None:
        if not config.hosts or not 0 <= config.index_host < len(config.hosts):
            raise ValueError("the configuration needs hosts and an index_host among them")
        self.config = config
        if config.names and len(config.names) != len(config.hosts):
            raise ValueError("the configuration's names must name every host, in order")
        self._dsns = [parse_dsn(d) for d in config.hosts]
        self._names = list(config.names) or [d.address for d in self._dsns]
        self._by_address = {
            (n, d.database): d for n, d in zip(self._names, self._dsns, strict=True)
        }
        self._host_index: list[int] = []  # config position -> hostIndex
        self._host_dsn: dict[int, Dsn] = {}  # hostIndex -> DSN
        self._hosts: dict[int, _Host] = {}
        self._lfn_index: LfnIndex | None = None
        self._guid_index: GuidIndex | None = None
        self._lfn_tables: dict[int, LfnShard] = {}
        self._deadline = 0.0
        self._reloading: asyncio.Task | None = None
        self._tx_pool: WorkPool | None = None
        self._tx_local = threading.local()
        self._tx_state: list[tuple[dict[int, MySQLdb.Connection], _Side]] = []
        self._log_lock = threading.Lock()
        self._log_conn: MySQLdb.Connection | None = None
        self._deltas = Deltas()  # rows this process's commits added or removed, per table

    # -- plumbing
    def pools(self) -> list[Pool]:
        """Every host's readers, writer and GUID-reference helper, and the pool of
        transactions over several hosts (for the role's registry)."""
        out: list[Pool] = [] if self._tx_pool is None else [self._tx_pool]
        for host in list(self._hosts.values()):
            out.extend(host.pools())
        return out

    def _dsn(self, host: int) -> Dsn:
        dsn = self._host_dsn.get(host)
        if dsn is None:
            raise RuntimeError(f"host {host} of the catalogue index is not configured")
        return dsn

    @property
    def index_host(self) -> int:
        """The hostIndex of the server holding the index database."""
        return self._host_index[self.config.index_host]

    def host_index(self, position: int) -> int:
        """The hostIndex of config.hosts[position]."""
        return self._host_index[position]

    async def start(self) -> None:
        await asyncio.to_thread(self._init_index)
        self._tx_pool = WorkPool("mariadb-tx", 2)
        await self.reload()
        await self.recover(self.config.xa_recover_age)
        if await asyncio.to_thread(settle, self):  # splits a killed process left
            await self.reload()

    async def close(self) -> None:
        if self._reloading is not None:
            self._reloading.cancel()
            with contextlib.suppress(BaseException):
                await self._reloading
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        """Finish what is queued, then close every thread and connection."""
        if self._tx_pool is not None:
            self._tx_pool.shutdown(wait=True)
            self._tx_pool = None
        hosts, self._hosts = list(self._hosts.values()), {}
        for host in hosts:
            host.close()
        for conns, side in self._tx_state:
            for conn in conns.values():
                _close_quietly(conn)
            side.close()
        self._tx_state.clear()
        _close_quietly(self._log_conn)
        self._log_conn = None

    def _init_index(self) -> None:
        """Create the index (once, under its lock), register the hosts, create the root
        LFN table and the first GUID table, add the configured prefixes."""
        with _Admin(self) as admin:
            for ddl in INDEX_SCHEMA:
                admin.cur.execute(ddl)
            self._host_index = []
            for name, dsn in zip(self._names, self._dsns, strict=True):
                admin.cur.execute(
                    "SELECT hostIndex FROM HOSTS WHERE address=%s AND db=%s",
                    (name, dsn.database),
                )
                row = admin.cur.fetchone()
                if row is None:
                    admin.cur.execute("SELECT COALESCE(MAX(hostIndex), -1) + 1 FROM HOSTS")
                    row = admin.cur.fetchone()
                    admin.cur.execute(
                        "INSERT INTO HOSTS (hostIndex, address, db) VALUES (%s, %s, %s)",
                        (row[0], name, dsn.database),
                    )
                self._host_index.append(int(row[0]))
                self._host_dsn[int(row[0])] = dsn
            admin.cur.execute("SELECT hostIndex, address, db FROM HOSTS")
            for index, address, db in admin.cur.fetchall():
                if (address, db) in self._by_address:
                    self._host_dsn[index] = self._by_address[address, db]
            admin.cur.execute("SELECT COUNT(*) FROM INDEXTABLE")
            if admin.cur.fetchone()[0] == 0:
                admin.add_lfn_table("/", self.index_host)
            admin.cur.execute("SELECT COUNT(*) FROM GUIDINDEX")
            if admin.cur.fetchone()[0] == 0:
                admin.add_guid_table(0, self.index_host)
            present = {s.prefix for s in admin.lfn_index().shards}
            for prefix, position in self.config.prefixes.items():
                if as_dir(prefix) not in present:
                    self._add_shard_locked(admin, as_dir(prefix), self._host_index[position])

    async def reload(self) -> None:
        """Read HOSTS, INDEXTABLE and GUIDINDEX again (each process caches them for
        config.index_ttl seconds, as AliEn does)."""

        def read() -> tuple[list, list, list]:
            conn = connect(self._dsns[self.config.index_host])
            try:
                cur = conn.cursor()
                cur.execute("SELECT hostIndex, address, db FROM HOSTS")
                hosts = list(cur.fetchall())
                cur.execute(
                    "SELECT CONVERT(lfn USING utf8mb4), hostIndex, tableName FROM INDEXTABLE"
                )
                lfns = [LfnShard(*row) for row in cur.fetchall()]
                cur.execute("SELECT guidTime, hostIndex, tableName FROM GUIDINDEX")
                guids = [GuidShard(*row) for row in cur.fetchall()]
                return hosts, lfns, guids
            finally:
                _close_quietly(conn)

        hosts, lfns, guids = await asyncio.to_thread(read)
        for index, address, db in hosts:
            if (address, db) in self._by_address:
                self._host_dsn[index] = self._by_address[address, db]
        for index in {s.host for s in lfns} | {s.host for s in guids}:
            if index not in self._hosts:
                dsn = self._dsn(index)  # raises for a host missing from the configuration
                self._hosts[index] = _Host(index, dsn, self.config.readers, self._dsn, self._deltas)
        self._lfn_index = LfnIndex(lfns)
        self._guid_index = GuidIndex(guids)
        self._lfn_tables = {s.table: s for s in lfns}
        self._deadline = time.monotonic() + self.config.index_ttl

    async def _reload_in_background(self) -> None:
        try:
            await self.reload()
        except Exception:
            log.exception("re-reading the catalogue index failed; keeping the old one")
            self._deadline = time.monotonic() + 10
        finally:
            self._reloading = None

    def _index(self) -> tuple[LfnIndex, GuidIndex]:
        if self._lfn_index is None or self._guid_index is None:
            raise RuntimeError("backend not started")
        if time.monotonic() >= self._deadline and self._reloading is None:
            self._reloading = asyncio.get_running_loop().create_task(self._reload_in_background())
        return self._lfn_index, self._guid_index

    def _lfn(self) -> LfnIndex:
        return self._index()[0]

    def _guids(self) -> GuidIndex:
        return self._index()[1]

    def _tx_side(self) -> _Side:
        return self._tx_thread()[1]

    def _tx_thread(self) -> tuple[dict[int, MySQLdb.Connection], _Side]:
        state = getattr(self._tx_local, "state", None)
        if state is None:
            state = self._tx_local.state = ({}, _Side(self._dsn, self._deltas))
            self._tx_state.append(state)
        return state

    def _log_decision(self, gtrid: str) -> None:
        with self._log_lock:
            for attempt in range(2):
                if self._log_conn is None:
                    self._log_conn = connect(self._dsn(self.index_host))
                try:
                    self._log_conn.cursor().execute(
                        "INSERT INTO XALOG (gtrid, created) VALUES (%s, %s)", (gtrid, now_ms())
                    )
                    return
                except MySQLdb.Error as exc:
                    if attempt and _code(exc) == ER_DUP_ENTRY:
                        return  # the first try landed before its connection was lost
                    _close_quietly(self._log_conn)
                    self._log_conn = None
                    if attempt or _code(exc) not in CONNECTION_LOST:
                        raise

    def _forget_decision(self, gtrid: str) -> None:
        try:
            with self._log_lock:
                if self._log_conn is None:
                    self._log_conn = connect(self._dsn(self.index_host))
                self._log_conn.cursor().execute("DELETE FROM XALOG WHERE gtrid=%s", (gtrid,))
        except MySQLdb.Error:  # recover() forgets it later
            log.warning("could not forget the XA decision %s", gtrid)

    def _run_xa(self, fn: Op, refs: list[Ref]) -> Any:
        conns, side = self._tx_thread()
        for attempt in range(3):
            side.write_refs(refs)
            tx = _XaTx(conns, self)
            try:
                value = fn(tx)
            except BaseException as exc:
                tx.rollback()
                if _code(exc) in CONNECTION_LOST:
                    for host in list(tx.branches):
                        _close_quietly(conns.pop(host, None))
                if (
                    _code(exc) == ER_LOCK_DEADLOCK or _code(exc) in CONNECTION_LOST
                ) and attempt < 2:
                    continue  # the servers rolled the branches back: run it again
                raise
            try:
                tx.commit()
            except BaseException:  # the connections' XA state is unknown: start afresh
                for host in list(tx.branches):
                    _close_quietly(conns.pop(host, None))
                raise
            return value
        raise AssertionError("unreachable")

    async def _write(self, hosts: set[int], fn: Op, refs: list[Ref] | None = None) -> Any:
        """Run *fn(tx)* in one transaction over *hosts* (every host it may touch); the
        change log's row of the catalogue write it is part of goes in the same transaction
        when the index host is among them (catalogue.change_log: no window, no extra commit)."""
        pending = PENDING.get()
        if pending is not None and self.index_host in hosts:
            fn = _with_change(fn, self.index_host, pending)
        else:
            pending = None
        try:
            if len(hosts) == 1:
                (host,) = hosts
                future = self._hosts[host].writer.submit(fn, refs or [])
                value = await asyncio.wrap_future(future)
                if pending is not None:
                    pending.logged = True
                return value
            assert self._tx_pool is not None, "backend not started"
            value = await asyncio.get_running_loop().run_in_executor(
                self._tx_pool, self._run_xa, fn, refs or []
            )
            if pending is not None:
                pending.logged = True
            return value
        except MySQLdb.Error as exc:
            if _code(exc) == ER_DATA_TOO_LONG:
                raise BadPath(f"too long for the catalogue: {exc.args[1]}") from None
            raise

    async def recover(self, min_age: float = 0.0) -> tuple[int, int]:
        """Settle prepared XA branches of this catalogue older than *min_age* seconds:
        commit those whose decision is in XALOG, roll back the others. Returns (committed,
        rolled back)."""
        return await asyncio.to_thread(self._recover, min_age)

    def _recover(self, min_age: float) -> tuple[int, int]:
        cutoff = now_ms() - int(min_age * 1000)
        committed = rolled_back = 0
        index = connect(self._dsn(self.index_host))
        try:
            cur = index.cursor()
            cur.execute("SELECT gtrid FROM XALOG")
            decided = {row[0] for row in cur.fetchall()}
            pending: set[str] = set()
            seen: set[tuple[str, str, str]] = set()
            for host in sorted(self._hosts):
                dsn = self._dsn(host)
                conn = connect(dsn)
                try:
                    hcur = conn.cursor()
                    hcur.execute("XA RECOVER")
                    for _fmt, glen, blen, data in hcur.fetchall():
                        data = data.decode() if isinstance(data, bytes) else data
                        gtrid, bqual = data[:glen], data[glen : glen + blen]
                        if not gtrid.startswith("jalien-") or (dsn.address, gtrid, bqual) in seen:
                            continue
                        seen.add((dsn.address, gtrid, bqual))
                        if int(gtrid.split("-")[1]) > cutoff:
                            pending.add(gtrid)
                            continue
                        action = "COMMIT" if gtrid in decided else "ROLLBACK"
                        try:
                            hcur.execute(f"XA {action} '{gtrid}','{bqual}'")
                        except MySQLdb.Error as exc:
                            if _code(exc) != ER_XAER_NOTA:
                                raise
                            continue
                        if action == "COMMIT":
                            committed += 1
                        else:
                            rolled_back += 1
                finally:
                    _close_quietly(conn)
            for gtrid in decided - pending:
                if int(gtrid.split("-")[1]) <= cutoff:
                    cur.execute("DELETE FROM XALOG WHERE gtrid=%s", (gtrid,))
        finally:
            _close_quietly(index)
        if committed or rolled_back:
            log.warning(
                "XA recovery: %d branches committed, %d rolled back", committed, rolled_back
            )
        return committed, rolled_back

    # -- administration
    async def add_shard(self, prefix: str, host: int) -> LfnShard:
        """Give LFN *prefix* a table of its own on config.hosts[*host*]. The prefix must be
        empty in the table that holds it now (moving a subtree is not supported)."""
        prefix = as_dir(prefix)
        if not prefix.startswith("/"):
            raise ValueError(f"{prefix}: not an absolute LFN prefix")

        def run() -> LfnShard:
            with _Admin(self) as admin:
                return self._add_shard_locked(admin, prefix, self._host_index[host])

        shard = await asyncio.to_thread(run)
        await self.reload()
        return shard

    def _add_shard_locked(self, admin: _Admin, prefix: str, host: int) -> LfnShard:
        index = admin.lfn_index()
        if any(s.prefix == prefix for s in index.shards):
            raise ValueError(f"{prefix} is already a shard")
        owner = index.route(prefix)
        cur = admin.host_cursor(owner.host)
        cur.execute(
            f"SELECT 1 FROM {owner.sql_table} WHERE dir >= %s AND dir < %s LIMIT 1",
            (prefix, prefix_end(prefix)),
        )
        if cur.fetchone():
            raise ValueError(f"{prefix} already has entries in {owner.sql_table}")
        return admin.add_lfn_table(prefix, host)

    async def add_guid_table(self, host: int, since: int | None = None) -> GuidShard:
        """Rotate GUID tables: GUIDs from *since* (ms since the epoch; default: once every
        process has re-read the index) on go to a new table on config.hosts[*host*]. A
        rotation never takes over times already handed out: *since* must lie ahead."""
        if since is None:
            margin = self.config.index_ttl + self.config.guid_switch_margin
            since = now_ms() + int(margin * 1000)

        def run() -> GuidShard:
            with _Admin(self) as admin:
                newest = admin.guid_shards()[-1]
                if since <= max(newest.since, now_ms()):
                    raise ValueError("a new GUID table must start after now and the newest one")
                return admin.add_guid_table(since, self._host_index[host])

        shard = await asyncio.to_thread(run)
        await self.reload()
        return shard

    async def rotate_guid_table(self) -> str:
        """A new GUID table on the newest one's server (the GUID-table optimizer, when the
        newest one is full), starting once every process has re-read the index; what was
        done, in words."""
        newest = self._guids().newest
        position = (
            self._host_index.index(newest.host)
            if newest.host in self._host_index
            else self.config.index_host
        )
        shard = await self.add_guid_table(position)
        start = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(shard.since / 1000))
        return (
            f"new GUID table {shard.refs_table}/{shard.pfn_table} on host {shard.host} "
            f"for GUIDs from {start} UTC (after {newest.refs_table})"
        )

    async def table_counts(self) -> list[TableCount]:
        """Every LFN and GUID table with its rows: this process's deltas are added to
        TABLECOUNTS first; a table TABLECOUNTS does not know yet is counted once."""
        lfn, guids = self._index()
        deltas = self._deltas.take()
        tables: dict[str, tuple[str, int, str, int]] = {
            s.sql_table: ("lfn", s.host, s.prefix, 0) for s in lfn.shards
        }
        for g in guids.shards:
            tables[g.refs_table] = ("guid", g.host, "", g.since)
            tables[g.pfn_table] = ("pfn", g.host, "", g.since)

        def run() -> dict[str, int]:
            conn = connect(self._dsn(self.index_host))
            try:
                cur = conn.cursor()
                flush_counts(cur, deltas)
                counts = stored_counts(cur)
                for table, (_, host, _, _) in tables.items():
                    if table not in counts:  # older than TABLECOUNTS: counted once
                        hcur = connect(self._dsn(host))
                        try:
                            c = hcur.cursor()
                            c.execute(f"SELECT COUNT(*) FROM {table}")
                            counts[table] = int(c.fetchone()[0])
                        finally:
                            _close_quietly(hcur)
                        cur.execute(
                            "INSERT IGNORE INTO TABLECOUNTS (tbl, nrows) VALUES (%s, %s)",
                            (table, counts[table]),
                        )
                return counts
            finally:
                _close_quietly(conn)

        try:
            counts = await asyncio.to_thread(run)
        except BaseException:
            self._deltas.give_back(deltas)
            raise
        return [
            TableCount(table=t, kind=k, host=h, rows=counts.get(t, 0), prefix=p, since=s)
            for t, (k, h, p, s) in tables.items()
        ]

    async def move_directory(self, directory: str, host: int | None = None) -> str:
        """moveDirectory: the populated *directory* gets an LFN table of its own on
        config.hosts[*host*] (default: the server of the table it leaves), online
        (jalien.catalogue.mariadb_split)."""
        if host is not None and not 0 <= host < len(self.config.hosts):
            raise RequestError(f"no host {host}: 0 to {len(self.config.hosts) - 1}", EXIT_INVALID)
        lfn, guids = self._index()
        prefix = as_dir(directory)
        loop = asyncio.get_running_loop()

        def switched() -> None:  # this process routes to the new table at once
            asyncio.run_coroutine_threadsafe(self.reload(), loop).result(60)

        def run() -> str:
            index = connect(self._dsn(self.index_host))
            cur = index.cursor()
            cur.execute("SELECT GET_LOCK(%s, 0)", (lock_name(prefix),))
            if cur.fetchone()[0] != 1:
                _close_quietly(index)
                raise ValueError(f"{prefix}: another process is splitting it")
            try:
                split = reserve(self, prefix, host)
            except BaseException:
                _close_quietly(index)
                raise
            splitter = Splitter(
                self, split, lfn, guids, chunk=self.config.split_chunk,
                pause=self.config.split_pause, duty=self.config.split_duty,
                switched=switched, index=index,
            )  # fmt: skip
            return splitter.run(self.config.index_ttl)

        try:
            return await asyncio.to_thread(run)
        except ValueError as exc:
            raise RequestError(str(exc), EXIT_INVALID) from None
        except BaseException:
            await asyncio.to_thread(settle, self)  # a failed split rolls back (or finishes)
            raise
        finally:
            await self.reload()

    def route(self, path: str) -> LfnShard:
        """The shard holding the entry *path* (for tools and tests)."""
        return self._lfn().route(split(path)[0])

    def guid_shard(self, guid: str) -> GuidShard:
        return self._guids().route(guid)

    # -- reads
    async def get(self, path: str) -> Entry | None:
        d, n = split(path)
        shard = self._lfn().route(d)
        rows = await self._hosts[shard.host].read(
            _fetchall(
                f"SELECT {ENTRY_COLUMNS} FROM {shard.sql_table} WHERE dir=%s AND name=%s",
                (d, n),
            )
        )
        return Entry(*rows[0]) if rows else None

    async def get_many(self, paths: list[str]) -> dict[str, Entry]:
        lfn = self._lfn()
        groups: dict[LfnShard, list[tuple[str, str]]] = {}
        for p in paths:
            d, n = split(p)
            groups.setdefault(lfn.route(d), []).append((d, n))

        async def one(shard: LfnShard, keys: list[tuple[str, str]]) -> list[tuple]:
            def run(cur: Any) -> list[tuple]:
                out: list[tuple] = []
                for chunk in _chunks(keys, KEYS_PER_QUERY):
                    where, args = _where_keys(chunk)
                    cur.execute(
                        f"SELECT {ENTRY_COLUMNS} FROM {shard.sql_table} WHERE {where}", args
                    )
                    out.extend(cur.fetchall())
                return out

            return await self._hosts[shard.host].read(run)

        found = await asyncio.gather(*(one(s, k) for s, k in groups.items()))
        return {e.path: e for e in itertools.starmap(Entry, itertools.chain.from_iterable(found))}

    async def list_dir(
        self, directory: str, page: int = PAGE, fields: int = ALL_FIELDS
    ) -> AsyncIterator[list[DirEntry]]:
        async for rows in self._listing_rows(directory, page, fields):
            yield list(itertools.starmap(DirEntry, rows))

    async def list_dir_packed(
        self,
        directory: str,
        page: int = PAGE,
        fields: int = ALL_FIELDS,
        hide_dot: bool = False,
        skip_type: str = "",
    ) -> AsyncIterator[PackedEntries]:
        async for rows in self._listing_rows(directory, page, fields):
            packed = pack_shown(rows, hide_dot, skip_type)
            if packed is not None:
                yield packed

    async def _listing_rows(
        self, directory: str, page: int, fields: int
    ) -> AsyncIterator[list[tuple[Any, ...]]]:
        """The pages of a directory's rows, the first *fields* columns of DirEntry each."""
        shard = self._lfn().route(directory)
        host = self._hosts[shard.host]
        sql = (
            f"SELECT {_listing_columns(fields)} FROM {shard.sql_table} "
            "WHERE dir=%s AND name>%s ORDER BY name LIMIT %s"
        )
        after = ""
        for index in itertools.count():
            size = page_rows(page, index)
            rows = await host.read(_fetchall(sql, (directory, after, size)))
            if not rows:
                return
            yield rows
            if len(rows) < size:
                return
            after = rows[-1][0]

    async def has_children(self, directory: str) -> bool:
        shard = self._lfn().route(directory)
        rows = await self._hosts[shard.host].read(
            _fetchall(f"SELECT 1 FROM {shard.sql_table} WHERE dir=%s LIMIT 1", (directory,))
        )
        return bool(rows)

    async def _find_shard(
        self, shard: LfnShard, where: str, args: list[Any], limit: int, page: int
    ) -> AsyncIterator[list[Entry]]:
        host = self._hosts[shard.host]
        base = f"SELECT {ENTRY_COLUMNS} FROM {shard.sql_table} WHERE {where}"
        first = f"{base} ORDER BY dir, name LIMIT %s"
        after = f"{base} AND (dir > %s OR (dir = %s AND name > %s)) ORDER BY dir, name LIMIT %s"
        left = limit or -1
        last: tuple[str, str] | None = None
        index = 0
        while left != 0:
            rows_now = page_rows(page, index)
            size = rows_now if left < 0 else min(rows_now, left)
            index += 1
            if last is None:
                rows = await host.read(_fetchall(first, (*args, size)))
            else:
                rows = await host.read(_fetchall(after, (*args, last[0], *last, size)))
            if not rows:
                return
            yield list(itertools.starmap(Entry, rows))
            if len(rows) < size:
                return
            if left > 0:
                left -= len(rows)
            last = (rows[-1][0], rows[-1][1])

    async def find(self, query: FindQuery, page: int = PAGE) -> AsyncIterator[list[Entry]]:
        clauses, args = find_sql.where(query, find_sql.MARIADB)
        where = " AND ".join(clauses)
        first, *inner = self._lfn().below(query.base)
        if not inner:
            async for rows in self._find_shard(first, where, args, query.limit, page):
                yield rows
            return
        sources = [(("", ""), self._find_shard(first, where, args, query.limit, page))]
        sources += [
            ((s.prefix, ""), self._find_shard(s, where, args, query.limit, page)) for s in inner
        ]  # a prefix inside the base holds nothing below the prefix
        async for rows in merge_pages(sources, page, query.limit):
            yield rows

    async def du(self, directory: str) -> DiskUsage:
        sql = (
            "SELECT CAST(COALESCE(SUM(type <> 'd'), 0) AS SIGNED), "
            "CAST(COALESCE(SUM(type = 'd'), 0) AS SIGNED), "
            "CAST(COALESCE(SUM(size), 0) AS SIGNED) FROM {} WHERE dir >= %s AND dir < %s"
        )
        args = (directory, prefix_end(directory))
        parts = await asyncio.gather(
            *(
                self._hosts[s.host].read(_fetchall(sql.format(s.sql_table), args))
                for s in self._lfn().below(directory)
            )
        )
        usage = DiskUsage()
        for ((files, dirs, size),) in parts:
            usage.files += files
            usage.directories += dirs
            usage.size += size
        return usage

    def _guid_order(self, guid: str) -> list[GuidShard]:
        """Every GUID table, the one *guid*'s time routes to first: a reference or replica
        written by a process whose GUID index was older than a switch lies in another."""
        guids = self._guids()
        first = guids.route(guid)
        return [first, *(s for s in reversed(guids.shards) if s != first)]

    async def by_guid(self, guid: str) -> list[Entry]:
        shards = self._guid_order(guid)
        found_refs = await asyncio.gather(
            *(
                self._hosts[s.host].read(
                    _fetchall(f"SELECT lfnTable FROM {s.refs_table} WHERE guid=%s", (guid,))
                )
                for s in shards
            )
        )  # every GUID table: references of one GUID may lie in several
        refs = {t for (t,) in itertools.chain.from_iterable(found_refs)}
        tables = [self._lfn_tables[t] for t in sorted(refs) if t in self._lfn_tables]
        found = await asyncio.gather(
            *(
                self._hosts[t.host].read(
                    _fetchall(f"SELECT {ENTRY_COLUMNS} FROM {t.sql_table} WHERE guid=%s", (guid,))
                )
                for t in tables
            )
        )
        return sorted(itertools.starmap(Entry, itertools.chain.from_iterable(found)), key=entry_key)

    # -- writes
    def _refs(self, pairs: Iterable[tuple[str, int]]) -> list[Ref]:
        guids = self._guids()
        return [(guids.route(g), g, table) for g, table in set(pairs) if g]

    @_rerouted
    async def insert(self, entries: list[Entry]) -> None:
        if not entries:
            return
        lfn = self._lfn()
        groups: dict[LfnShard, list[tuple]] = {}
        seen: set[tuple[str, str]] = set()
        for e in entries:
            _check_lengths(e.dir, e.name)
            if (e.dir, e.name) in seen:
                raise Exists(e.dir + e.name)
            seen.add((e.dir, e.name))
            groups.setdefault(lfn.route(e.dir), []).append(astuple(e))  # INSERT_COLUMNS' order
        refs = self._refs((row[9], shard.table) for shard, rows in groups.items() for row in rows)

        def run(tx: Any) -> None:
            for shard, rows in groups.items():
                cur = tx.cursor(shard.host)
                try:
                    cur.executemany(
                        f"INSERT INTO {shard.sql_table} ({INSERT_COLUMNS}) "
                        f"VALUES ({INSERT_VALUES})",
                        rows,
                    )
                except MySQLdb.IntegrityError as exc:
                    if _code(exc) != ER_DUP_ENTRY:
                        raise
                    for chunk in _chunks([r[:2] for r in rows], KEYS_PER_QUERY):
                        where, args = _where_keys(chunk)
                        cur.execute(
                            f"SELECT CONVERT(dir USING utf8mb4), CONVERT(name USING utf8mb4) "
                            f"FROM {shard.sql_table} WHERE {where} LIMIT 1",
                            args,
                        )
                        row = cur.fetchone()
                        if row:
                            raise Exists(row[0] + row[1]) from None
                    raise

        await self._write({s.host for s in groups}, run, refs)
        self._deltas.add_all({s.sql_table: len(rows) for s, rows in groups.items()})

    @_rerouted
    async def update(self, path: str, fields: dict[str, object]) -> None:
        allowed = {"type", "perm", "owner", "gowner", "size", "ctime", "md5", "guid", "jobid"}
        if not fields or set(fields) - allowed:
            raise ValueError(f"cannot update {sorted(set(fields) - allowed)}")
        d, n = split(path)
        shard = self._lfn().route(d)
        refs = self._refs([(str(fields["guid"]), shard.table)]) if fields.get("guid") else []
        sets = ", ".join(f"{k}=%s" for k in fields)
        sql = f"UPDATE {shard.sql_table} SET {sets} WHERE dir=%s AND name=%s"

        def run(tx: Any) -> None:
            if tx.cursor(shard.host).execute(sql, (*fields.values(), d, n)) == 0:
                raise NotFound(path)

        await self._write({shard.host}, run, refs)

    @_rerouted
    async def delete(self, paths: list[str]) -> int:
        if not paths:
            return 0
        lfn = self._lfn()
        groups: dict[LfnShard, list[tuple[str, str]]] = {}
        for p in paths:
            d, n = split(p)
            groups.setdefault(lfn.route(d), []).append((d, n))

        counts: dict[str, int] = {}

        def run(tx: Any) -> int:
            counts.clear()  # run again after a deadlock: counted afresh
            for shard, keys in groups.items():
                cur = tx.cursor(shard.host)
                for chunk in _chunks(keys, KEYS_PER_QUERY):
                    where, args = _where_keys(chunk)
                    gone = cur.execute(f"DELETE FROM {shard.sql_table} WHERE {where}", args)
                    counts[shard.sql_table] = counts.get(shard.sql_table, 0) - gone
            return -sum(counts.values())

        done = await self._write({s.host for s in groups}, run)
        self._deltas.add_all(counts)
        return done

    @_rerouted
    async def delete_tree(self, directory: str) -> int:
        lfn = self._lfn()
        d, n = split(directory.rstrip("/") or "/")
        own = lfn.route(d)
        below = lfn.below(directory)
        end = prefix_end(directory)

        counts: dict[str, int] = {}

        def run(tx: Any) -> int:
            counts.clear()  # run again after a deadlock: counted afresh
            for shard in below:
                counts[shard.sql_table] = -tx.cursor(shard.host).execute(
                    f"DELETE FROM {shard.sql_table} WHERE dir >= %s AND dir < %s",
                    (directory, end),
                )
            gone = tx.cursor(own.host).execute(
                f"DELETE FROM {own.sql_table} WHERE dir=%s AND name=%s", (d, n)
            )
            counts[own.sql_table] = counts.get(own.sql_table, 0) - gone
            return -sum(counts.values())

        done = await self._write({own.host} | {s.host for s in below}, run)
        self._deltas.add_all(counts)
        return done

    @_rerouted
    async def move(self, src: str, dst: str) -> None:
        lfn, guids = self._index()
        sd, sn = split(src)
        dd, dn = split(dst)
        _check_lengths(dd, dn)
        old, new = src + "/", dst + "/"
        src_own, dst_own = lfn.route(sd), lfn.route(dd)
        sources, targets = lfn.below(old), lfn.below(new)
        hosts = {src_own.host, dst_own.host} | {s.host for s in sources + targets}
        counts: dict[str, int] = {}

        def run(tx: Any) -> None:
            counts.clear()  # run again after a deadlock: counted afresh
            scur = tx.cursor(src_own.host)
            scur.execute(
                f"SELECT {ENTRY_COLUMNS} FROM {src_own.sql_table} "
                "WHERE dir=%s AND name=%s FOR UPDATE",
                (sd, sn),
            )
            row = scur.fetchone()
            if row is None:
                raise NotFound(src)
            dcur = tx.cursor(dst_own.host)
            if dcur.execute(
                f"SELECT 1 FROM {dst_own.sql_table} WHERE dir=%s AND name=%s FOR UPDATE",
                (dd, dn),
            ):
                raise Exists(dst)
            if src_own == dst_own:
                scur.execute(
                    f"UPDATE {src_own.sql_table} SET dir=%s, name=%s WHERE dir=%s AND name=%s",
                    (dd, dn, sd, sn),
                )
            else:
                if row[9]:
                    tx.add_refs([(guids.route(row[9]), row[9], dst_own.table)])
                scur.execute(f"DELETE FROM {src_own.sql_table} WHERE dir=%s AND name=%s", (sd, sn))
                dcur.execute(
                    f"INSERT INTO {dst_own.sql_table} ({INSERT_COLUMNS}) VALUES ({INSERT_VALUES})",
                    (dd, dn, *row[2:]),
                )
                counts[src_own.sql_table] = -1
                counts[dst_own.sql_table] = 1
            if row[2] == DIRECTORY:
                _move_subtree(tx, lfn, guids, old, new, sources, targets, counts)

        await self._write(hosts, run)
        self._deltas.add_all(counts)

    # -- replicas and storage elements
    async def add_replicas(self, replicas: list[Replica]) -> None:
        guids = self._guids()
        groups: dict[GuidShard, list[tuple[str, str, str]]] = {}
        for r in replicas:
            groups.setdefault(guids.route(r.guid), []).append((r.guid, r.se, r.pfn))
        if not groups:
            return

        counts: dict[str, int] = {}

        def run(tx: Any) -> None:
            counts.clear()
            for shard, rows in groups.items():
                counts[shard.pfn_table] = (
                    tx.cursor(shard.host).executemany(
                        f"INSERT IGNORE INTO {shard.pfn_table} (guid, se, pfn) VALUES (%s, %s, %s)",
                        rows,
                    )
                    or 0
                )

        await self._write({s.host for s in groups}, run)
        self._deltas.add_all(counts)

    async def replicas(self, guid: str) -> list[Replica]:
        # the table of the GUID's time, then (when it has none there) the others
        for shard in self._guid_order(guid):
            rows = await self._hosts[shard.host].read(
                _fetchall(
                    f"SELECT guid, se, pfn FROM {shard.pfn_table} WHERE guid=%s ORDER BY se, pfn",
                    (guid,),
                )
            )
            if rows:
                return [Replica(guid=g, se=s, pfn=p) for g, s, p in rows]
        return []

    async def delete_replicas(self, guid: str, se: str | None = None) -> int:
        for shard in self._guid_order(guid):  # where replicas() finds them
            sql = f"DELETE FROM {shard.pfn_table} WHERE guid=%s"
            args: tuple[str, ...] = (guid,)
            if se is not None:
                sql, args = sql + " AND se=%s", (guid, se)
            gone = await self._write({shard.host}, _execute(shard.host, sql, args))
            if gone:
                self._deltas.add(shard.pfn_table, -gone)
                return gone
        return 0

    async def replicas_on(self, se: str, page: int = PAGE) -> AsyncIterator[list[Replica]]:
        # each GUID table in turn, keyset pages along its unique key (guid, se, pfn)
        for shard in list(self._guids().shards):
            last = ("", "", "")
            while True:
                rows = await self._hosts[shard.host].read(
                    _fetchall(
                        f"SELECT guid, pfn FROM {shard.pfn_table}"
                        " WHERE (guid, se, pfn) > (%s, %s, %s) AND se = %s"
                        " ORDER BY guid, se, pfn LIMIT %s",
                        (*last, se, page),
                    )
                )
                if rows:
                    yield [Replica(guid=g, se=se, pfn=p) for g, p in rows]
                if len(rows) < page:
                    break
                last = (rows[-1][0], se, rows[-1][1])

    async def list_ses(self) -> list[StorageElement]:
        rows = await self._hosts[self.index_host].read(
            _fetchall("SELECT doc FROM SE ORDER BY name", ())
        )
        return [msgspec.msgpack.decode(doc, type=StorageElement) for (doc,) in rows]

    async def put_se(self, se: StorageElement) -> None:
        doc = msgspec.msgpack.encode(se)
        host = self.index_host
        await self._write(
            {host},
            lambda tx: tx.cursor(host).execute(
                "REPLACE INTO SE (name, doc) VALUES (%s, %s)", (se.name, doc)
            ),
        )


def _move_subtree(
    tx: Any,
    lfn: LfnIndex,
    guids: GuidIndex,
    old: str,
    new: str,
    sources: list[LfnShard],
    targets: list[LfnShard],
    counts: dict[str, int],
) -> None:
    """Rename every entry under *old* to lie under *new*: in place when the subtree stays
    in one table, a copy and a delete when it lands in others (rows added and removed per
    table go to *counts*)."""
    end = prefix_end(old)
    cut = len(old.encode()) + 1  # SUBSTRING counts bytes on VARBINARY
    if len(sources) == 1 and len(targets) == 1:
        s, t = sources[0], targets[0]
        cur = tx.cursor(s.host)
        if s == t:
            cur.execute(
                f"UPDATE {s.sql_table} SET dir = CONCAT(%s, SUBSTRING(dir, %s)) "
                "WHERE dir >= %s AND dir < %s",
                (new, cut, old, end),
            )
            return
        if s.host == t.host:  # one server: let it copy
            cur.execute(
                f"SELECT DISTINCT guid FROM {s.sql_table} "
                "WHERE dir >= %s AND dir < %s AND guid <> ''",
                (old, end),
            )
            tx.add_refs((guids.route(g), g, t.table) for (g,) in cur.fetchall())
            copied = cur.execute(
                f"INSERT INTO {t.sql_table} ({INSERT_COLUMNS}) "
                f"SELECT CONCAT(%s, SUBSTRING(dir, %s)), name, type, perm, owner, gowner, "
                f"size, ctime, md5, guid, jobid FROM {s.sql_table} WHERE dir >= %s AND dir < %s",
                (new, cut, old, end),
            )
            counts[t.sql_table] = counts.get(t.sql_table, 0) + copied
            gone = cur.execute(
                f"DELETE FROM {s.sql_table} WHERE dir >= %s AND dir < %s", (old, end)
            )
            counts[s.sql_table] = counts.get(s.sql_table, 0) - gone
            return
    # rows travel through here, each to the table its new dir routes to
    for s in sources:
        cur = tx.cursor(s.host)
        sql = (
            f"SELECT {ENTRY_COLUMNS} FROM {s.sql_table} WHERE dir >= %s AND dir < %s "
            "AND (dir > %s OR (dir = %s AND name > %s)) ORDER BY dir, name LIMIT %s FOR UPDATE"
        )
        last = (old, old, "")
        while True:
            cur.execute(sql, (old, end, *last, COPY_CHUNK))
            rows = cur.fetchall()
            if not rows:
                break
            by_target: dict[LfnShard, list[tuple]] = {}
            refs: list[Ref] = []
            for row in rows:
                new_dir = new + row[0][len(old) :]
                t = lfn.route(new_dir)
                by_target.setdefault(t, []).append((new_dir, *row[1:]))
                if row[9] and t != s:
                    refs.append((guids.route(row[9]), row[9], t.table))
            tx.add_refs(refs)
            for t, moved in by_target.items():
                tx.cursor(t.host).executemany(
                    f"INSERT INTO {t.sql_table} ({INSERT_COLUMNS}) VALUES ({INSERT_VALUES})",
                    moved,
                )
                counts[t.sql_table] = counts.get(t.sql_table, 0) + len(moved)
            last = (rows[-1][0], rows[-1][0], rows[-1][1])
            if len(rows) < COPY_CHUNK:
                break
        gone = cur.execute(f"DELETE FROM {s.sql_table} WHERE dir >= %s AND dir < %s", (old, end))
        counts[s.sql_table] = counts.get(s.sql_table, 0) - gone


if TYPE_CHECKING:  # mypy checks here that the class implements the Protocol
    _implements: type[CatalogueBackend] = MariaDBBackend
