"""The cache store: namespaces of bytes in one LMDB environment, with a time to live per
entry, a size bound per namespace and LFN scopes for invalidation.

Several processes of a host may open the same directory (LMDB's lock file serialises
their writers; readers never wait). In each process:

- reads run on the calling thread (the event loop: a hit is answered inline) from a read
  transaction kept per thread and renewed when this process committed, when a namespace
  handle was opened, or when it is ``max_stale`` seconds old: what another process wrote
  shows up within that time, and no thread wakes up to watch for it;
- writes are queued to one writer thread that applies everything queued in one write
  transaction (group commit). It sleeps on the queue until there is work (or hits to move,
  or the next sweep): an idle process does not wake up. Until a write is committed the
  process reads it from a small overlay, and pending invalidations hide what they drop.

Layout: per namespace N, three named databases::

    v/N  key -> expires (u64 ms, 0: never) | stamp (u64) | scope length (u16) | scope | value
    l/N  stamp -> key (dupsort): the eviction order, oldest first
    s/N  scope -> key (dupsort): the keys whose value depends on an LFN scope

(the stamp says when the key was last written, or read with LRU; big-endian, so that the
order of ``l`` is the order of time). A write is ``replace`` on ``v`` (which gives the old
header) and two index updates.

and ``meta``: ``ns/N`` for each namespace, ``tick`` (the stamp clock, +1 per commit),
``gen`` (the generation, +1 per invalidation); ``inv``: generation -> path of the last
``LOG_KEEP`` invalidations; ``w``: owner (pid, start time) | seq -> scope of each catalogue
write in flight (an intent).

Eviction: when a commit leaves a namespace above ``max_entries`` (or ``max_bytes`` of
pages), the oldest stamps go first. With ``lru`` (an approximation, as Redis's) one hit in
``touch_sample`` is logged in memory, and the writer moves a logged key to the newest stamp
at its next commit (at most every ``touch_interval``) if it is in the older half of the
order; so reads never write on the hot path, a hot key is refreshed before it could be
evicted, and a namespace read at random costs few rewrites. Hits are not logged at all while
a namespace is below ``TRACK_FROM`` of its bound (no eviction is near: the order does not
matter yet). Without ``lru`` the order is the order of writes (FIFO). Values above
``TOUCH_LIMIT`` are not moved (a move rewrites them).
``bench/bench_cache.py`` measures both. Expired entries miss at once and are swept in
chunks by the writer.

Scopes: a value put with scope S (a catalogue path) is dropped by ``invalidate(P)`` when S
is P, above P or below P (whole path components). The scope index makes that one exact
lookup per component of P plus one range scan below P, whatever the namespace size.

Crash consistency (after a kill -9 anywhere, no cached answer contradicts the catalogue):
a queued invalidation dies with its process, so the catalogue's writes do not queue theirs.

- ``begin_write(paths)`` drops what covers the paths and records an intent in ``w``, in one
  commit that the catalogue awaits before it commits; ``end_write`` drops again
  and removes the intent (queued: if it is lost, the intent stays).
- A put with ``since`` (the generation read before its value was computed) is refused by
  the writer when an intent covers its scope, or an invalidation after ``since`` does
  (``inv``): an answer computed across a write, in any process of the host, is not kept.
- An intent whose process died (its pid gone, or running with another start time) is
  reaped at every start and sweep of any process on the host: its scopes dropped again.

So a value survives a crash only if it was computed after the last write covering it had
committed. Commits are not flushed to disk (``sync`` off): a killed process loses nothing
that was committed (it is in the page cache), as with the catalogue's SQLite WAL at
synchronous=NORMAL, and neither is promised against a machine crash; so the store does not
survive a reboot: the first process to open it after one (``boot_id`` in the directory,
checked under a file lock) starts it empty. A torn file, or answers computed from catalogue
commits a machine crash rolled back, never outlive the reboot.

Chosen over "drop the catalogue namespaces at start unless shut down cleanly": several
processes share one LMDB (the one that died may not restart, and the others would keep
serving what its lost invalidations should have dropped) and every restart would empty the
cache. The cost: a catalogue write waits for one cache commit (group-committed with the
other writes in flight; ``bench/bench_cache_writes.py``), and a lookup reads one key more.
"""

from __future__ import annotations

import concurrent.futures
import fcntl
import itertools
import logging
import math
import os
import re
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lmdb
import msgspec

from jalien.loops import Pool
from jalien.sqlstore.group_commit import GroupCommit, settle
from jalien.wire.errors import EXIT_INVALID, EXIT_TOO_BIG, RequestError

log = logging.getLogger("jalien.cache")

MAX_KEY = 511  # LMDB's key size limit (mdb_env_get_maxkeysize with the default build)
MAX_NAMESPACE = 64
_NAMESPACE_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}\Z")
_HEAD = struct.Struct(">QQH")  # expires (ms since the epoch, 0: never), stamp, scope length
_HEAD_SIZE = _HEAD.size
_STAMP = struct.Struct(">Q")
_STAMP_AT = 8  # offset of the stamp in the header
TOUCH_LIMIT = 64 * 1024
TRACK_FROM = 0.75  # of max_entries or max_bytes: below it, hits are not logged
_TICK = b"tick"
_SPACE_PREFIX = b"ns/"

_GEN = b"gen"  # in meta: the generation, +1 per invalidation (u64)
LOG_KEEP = 1 << 16  # invalidations remembered in ``inv`` (a put older than that is refused)
_OWNER = struct.Struct(">IQ")  # an intent's owner: pid, start time (clock ticks since boot)
_unpack = _HEAD.unpack_from
_monotonic = time.monotonic


class CacheError(RequestError):
    """A key, value, namespace or option the cache refuses; the text says which and why."""

    def __init__(self, message: str, exitcode: int = EXIT_INVALID) -> None:
        super().__init__(message, exitcode)


@dataclass(frozen=True, slots=True)
class Policy:
    """How one namespace is kept."""

    max_entries: int = 50_000  # JAliEn's TextCache default size per namespace
    max_bytes: int = 0  # bound on the pages of its values (0: none but the map size)
    ttl: float = 3600.0  # default time to live, seconds (JAliEn's default); 0: no expiry
    lru: bool = True  # hits refresh an entry's place in the eviction order (batched)
    private: bool = False  # a service's own namespace: not reachable over TextCache HTTP


DEFAULT_POLICY = Policy()


@dataclass(slots=True)
class NamespaceStats:
    name: str
    entries: int
    bytes: int
    hits: int
    misses: int
    expired: int
    sets: int
    deletes: int
    evictions: int
    invalidated: int
    swept: int
    policy: Policy


class _Space:
    """A namespace as this process sees it: its database handles, policy and counters."""

    __slots__ = (
        "deletes",
        "evictions",
        "expired",
        "hits",
        "invalidated",
        "l",
        "lru",
        "misses",
        "name",
        "policy",
        "s",
        "sets",
        "sweep_from",
        "swept",
        "tracking",
        "v",
    )

    def __init__(self, name: str, policy: Policy, dbs: list[Any]) -> None:
        self.name = name
        self.policy = policy
        self.lru = policy.lru
        self.v, self.l, self.s = dbs
        self.hits = self.misses = self.expired = self.sets = self.deletes = 0
        self.evictions = self.invalidated = self.swept = 0
        self.sweep_from = b""
        self.tracking = self.lru  # are hits logged (LRU, and the namespace nearly full)?


# -- the writer's operations (queued through sqlstore.group_commit, one commit per batch)
class _Set(msgspec.Struct, gc=False):
    seq: int  # its place in this process's queue (the overlay's and since's order)
    ns: str
    key: bytes
    raw: bytes  # header | scope | value; the writer stamps it
    scope: bytes
    if_absent: bool
    since: tuple[int, int] | None


class _Delete(msgspec.Struct, gc=False):
    seq: int
    ns: str
    key: bytes


class _Invalidate(msgspec.Struct, gc=False):
    seq: int
    scope: bytes


class _Clear(msgspec.Struct, gc=False):
    seq: int
    ns: str | None
    future: concurrent.futures.Future[int]


class _Match(msgspec.Struct, gc=False):
    seq: int
    ns: str
    pattern: re.Pattern[bytes]
    future: concurrent.futures.Future[int]


class _Flush(msgspec.Struct, gc=False):
    future: concurrent.futures.Future[None]


class _Open(msgspec.Struct, gc=False):
    ns: str  # made by another process: the writer opens its handles


class _Sweep(msgspec.Struct, gc=False):
    pass


class _Begin(msgspec.Struct, gc=False):
    seq: int
    scopes: tuple[bytes, ...]
    keys: tuple[bytes, ...]
    future: concurrent.futures.Future[None]


class _End(msgspec.Struct, gc=False):
    seq: int
    scopes: tuple[bytes, ...]
    keys: tuple[bytes, ...]


_Op = _Set | _Delete | _Invalidate | _Clear | _Match | _Flush | _Open | _Sweep | _Begin | _End
_BARRIERS = (_Invalidate, _Clear, _Begin, _End)  # operations that hide values until committed
_LOSSY = (_Set, _Delete, _Invalidate)  # what a failed commit loses (counted in ``dropped``)


@dataclass(frozen=True, slots=True)
class WriteIntent:
    """A catalogue write in flight (begin_write .. end_write): its scopes, its keys in
    ``w``, and the future that is done once the intent is durable."""

    scopes: tuple[bytes, ...]
    keys: tuple[bytes, ...]
    durable: concurrent.futures.Future[None]


def _start_time(pid: int) -> int:
    """The start time of process *pid* (clock ticks since boot; 0 if unknown): a pid with
    another start time is another process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return int(fh.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return 0


def _boot_id() -> bytes:
    """This boot of the machine (empty if unknown)."""
    try:
        with open("/proc/sys/kernel/random/boot_id", "rb") as fh:
            return fh.read().strip()
    except OSError:
        return b""


def _alive(owner: bytes) -> bool:
    pid, start = _OWNER.unpack(owner[: _OWNER.size])
    if start:
        return _start_time(pid) == start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


class _Reader(threading.local):
    """The read transaction of one thread."""

    txn: Any = None
    since = 0.0
    commits = -1


def _bad_key(key: Any) -> CacheError:
    if not isinstance(key, bytes):
        return CacheError(f"cache key must be bytes, not {type(key).__name__}")
    if not key:
        return CacheError("cache key is empty")
    return CacheError(f"cache key of {len(key)} bytes is longer than {MAX_KEY}", EXIT_TOO_BIG)


def check_namespace(name: Any) -> str:
    if not isinstance(name, str) or not _NAMESPACE_RE.match(name):
        raise CacheError(f"bad cache namespace {name!r}: 1-64 characters of A-Z a-z 0-9 _ . : -")
    return name


def scope_key(scope: str) -> bytes:
    """An absolute LFN as a scope: no trailing '/', at most MAX_KEY bytes. A longer path is
    cut at a '/' (an ancestor: it is invalidated at least as often, never less)."""
    if not isinstance(scope, str) or not scope.startswith("/"):
        raise CacheError(f"cache scope must be an absolute path, got {scope!r}")
    raw = scope.encode("utf-8", "surrogateescape")
    if len(raw) > 1:
        raw = raw.rstrip(b"/") or b"/"
    if len(raw) > MAX_KEY:
        raw = raw[: raw.rfind(b"/", 0, MAX_KEY + 1)] or b"/"
    return raw


def ancestors(path: bytes) -> list[bytes]:
    """'/', '/a', '/a/b' for '/a/b' (the scopes a write at the path falls under)."""
    found = [b"/"]
    end = path.find(b"/", 1)
    while end > 0:
        found.append(path[:end])
        end = path.find(b"/", end + 1)
    if path != b"/":
        found.append(path)
    return found


def covers(scope: bytes, path: bytes) -> bool:
    """Does a write at *path* invalidate a value of *scope* (same, above or below)?"""
    if scope == path or scope == b"/" or path == b"/":
        return True
    return path.startswith(scope + b"/") or scope.startswith(path + b"/")


def _barred(barriers: list[Any], ns: str, seq: int, raw: bytes, slen: int) -> bool:
    """Does an invalidation or clear not committed yet (and later than *seq*) drop it?"""
    scope = raw[_HEAD_SIZE : _HEAD_SIZE + slen]
    for bseq, bns, path in barriers:
        if bseq < seq:
            continue
        if path is None:
            if bns is None or bns == ns:
                return True
        elif slen and covers(scope, path):
            return True
    return False


class CacheStore:
    """See the module docstring. *clock* gives seconds since the epoch (the expiry times
    are shared by processes and survive restarts); tests pass a fake one."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        policies: dict[str, Policy] | None = None,
        default_policy: Policy = DEFAULT_POLICY,
        map_size: int = 1 << 30,
        max_namespaces: int = 64,
        max_value_size: int = 4 << 20,
        clock: Callable[[], float] = time.time,
        readonly: bool = False,
        sync: bool = False,
        max_stale: float = 0.005,
        writer: bool = True,
        touch_interval: float = 0.05,
        touch_sample: int = 4,
        sweep_interval: float = 10.0,
        sweep_chunk: int = 2000,
        max_batch: int = 4096,
        commit_delay: float = 0.0,
    ) -> None:
        self.path = Path(path)
        self.policies = {check_namespace(n): p for n, p in (policies or {}).items()}
        self.default_policy = default_policy
        self.map_size = map_size
        self.max_namespaces = max_namespaces
        self.max_value_size = max_value_size
        self.readonly = readonly
        self.sync = sync
        self.max_stale = max_stale
        self.touch_interval = touch_interval
        if touch_sample < 1 or touch_sample & (touch_sample - 1):
            raise ValueError("touch_sample must be a power of 2")
        self._touch_mask = touch_sample - 1
        self._hits = 0
        self.sweep_interval = sweep_interval
        self.sweep_chunk = sweep_chunk
        self.commit_delay = commit_delay  # tests: each commit as slow as a busy disk's fsync
        self._clock = clock
        self._commits = 0  # +1 per commit or handle opened: read transactions renew
        self._env = self._open_env()
        self._meta: Any = None
        self._log: Any = None  # generation (u64) -> path of each recent invalidation
        self._intents: Any = None  # owner | seq -> scope of each catalogue write in flight
        self._spaces: dict[str, _Space] = {}
        self._opening: set[str] = set()
        self._dbi_lock = threading.Lock()  # LMDB: one dbi_open at a time per process
        self._open_meta()
        if self._meta is not None:
            for name in self._listed():
                self._open_space(name, create=False)
        if not readonly:  # the declared namespaces exist from the start
            for name in self.policies:
                self._open_space(name, create=True)
        self._reader = _Reader()
        self._seq = itertools.count(1)
        self._lock = threading.Lock()  # the overlay and barriers, between the two threads
        self._pending: dict[tuple[str, bytes], tuple[int, bytes | None]] = {}
        self._barriers: list[tuple[int, str | None, bytes | None]] = []
        self._touches: list[tuple[_Space, bytes]] = []
        # the queue of operations and what an admin sees of the writer; never paused:
        # catalogue writes wait for it
        self._writes = GroupCommit[_Op]("cache-writer", max_batch, can_pause=False)
        self.gauge = self._writes.gauge
        self._owner = _OWNER.pack(os.getpid(), _start_time(os.getpid()))
        self._own: dict[int, int] = {}  # generation -> seq of this process's committed ones
        self._intent_seq = itertools.count(1)
        self._last_touch = time.monotonic()
        self._next_sweep = time.monotonic() + sweep_interval
        self.unknown_misses = 0  # gets on namespaces that do not exist (yet)
        self.dropped = 0  # writes lost to a failed commit (logged)
        self.outdated = 0  # puts refused: a write covering them came in since their lookup
        self.reaped = 0  # intents of dead processes dropped
        self.commits = 0
        self.closed = False
        self._thread: threading.Thread | None = None
        # read transactions renew by age (max_stale): what other processes commit shows up
        # within that time, and no thread has to wake up to watch for it
        self._timed = True
        if not readonly:
            self._reap_now()
        if writer and not readonly:
            self._thread = threading.Thread(target=self._run, name="cache-writer", daemon=True)
            self._thread.start()

    # -- opening
    def _open_env(self) -> Any:
        options: dict[str, Any] = dict(
            map_size=self.map_size,
            max_dbs=3 * (self.max_namespaces + 8) + 1,
            max_readers=512,
            readonly=self.readonly,
            lock=True,
            sync=self.sync,
            metasync=False,
            subdir=True,
            mode=0o600,
            max_spare_txns=4,
            create=not self.readonly,
        )
        if not self.readonly:
            self.path.mkdir(parents=True, exist_ok=True)
            self._fresh_after_reboot()
        try:
            env = lmdb.open(str(self.path), **options)
        except (lmdb.CorruptedError, lmdb.InvalidError, lmdb.VersionMismatchError) as exc:
            if self.readonly:
                raise CacheError(f"cache {self.path} is unusable: {exc}", 1) from None
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            log.error(
                "cache %s is unusable (%s): moved to %s, starting empty", self.path, exc, aside
            )
            os.rename(self.path, aside)
            self.path.mkdir(parents=True)
            self._fresh_after_reboot()
            env = lmdb.open(str(self.path), **options)
        except lmdb.Error as exc:
            raise CacheError(f"cannot open cache {self.path}: {exc}", 1) from None
        stale = env.reader_check()  # reader slots of processes killed while reading
        if stale:
            log.info("cache %s: cleared %d reader slots of dead processes", self.path, stale)
        return env

    def _fresh_after_reboot(self) -> None:
        """The first opener after a reboot starts the store empty (see the module doc)."""
        boot = _boot_id()
        if not boot:
            return
        with open(self.path / "boot_id", "a+b") as marker:
            fcntl.flock(marker, fcntl.LOCK_EX)  # openers after this one see the new boot
            marker.seek(0)
            seen = marker.read().strip()
            if seen == boot:
                return
            data = self.path / "data.mdb"
            if data.exists():
                log.info("cache %s: the machine restarted since it was written: empty", self.path)
                data.unlink()
                (self.path / "lock.mdb").unlink(missing_ok=True)
            marker.truncate(0)
            marker.write(boot + b"\n")
            marker.flush()

    def _open_meta(self) -> None:
        try:
            meta = self._env.open_db(b"meta", create=not self.readonly)
        except lmdb.NotFoundError:
            return  # read-only and nothing written yet
        if not self.readonly:
            self._log = self._env.open_db(b"inv")
            self._intents = self._env.open_db(b"w")
        self._commits += 1  # older transactions cannot use the new handle (see _open_space)
        self._meta = meta

    def _listed(self) -> list[str]:
        names = []
        with self._env.begin(db=self._meta) as txn:
            cursor = txn.cursor()
            if cursor.set_range(_SPACE_PREFIX):
                for key in cursor.iternext(values=False):
                    if not key.startswith(_SPACE_PREFIX):
                        break
                    names.append(key[len(_SPACE_PREFIX) :].decode())
        return names

    def policy(self, name: str) -> Policy:
        return self.policies.get(name, self.default_policy)

    def _open_space(self, name: str, *, create: bool) -> _Space | None:
        """Open (or create) a namespace's databases. Only at start, on the writer thread,
        or on a read-only store's callers: LMDB wants one handle opener at a time."""
        with self._dbi_lock:
            space = self._spaces.get(name)
            if space is not None:
                return space
            raw = name.encode()
            env = self._env
            try:
                if create:
                    with env.begin(write=True) as txn:
                        dbs = [
                            env.open_db(b"v/" + raw, txn=txn),
                            env.open_db(b"l/" + raw, txn=txn, dupsort=True),
                            env.open_db(b"s/" + raw, txn=txn, dupsort=True),
                        ]
                        txn.put(_SPACE_PREFIX + raw, b"", db=self._meta)
                else:
                    dbs = [env.open_db(p + raw, create=False) for p in (b"v/", b"l/", b"s/")]
            except lmdb.NotFoundError:
                return None
            space = _Space(name, self.policy(name), dbs)
            with env.begin() as txn:
                self._track(space, txn.stat(space.v))
            # transactions begun before cannot use the new handles: readers renew, and they
            # must see that before they can see the namespace
            self._commits += 1
            self._spaces[name] = space
            return space

    # -- reads (any thread; the event loop answers hits inline)
    def _txn(self) -> Any:
        reader = self._reader
        txn = reader.txn
        if (
            txn is not None
            and reader.commits == self._commits
            and not (self._timed and time.monotonic() - reader.since >= self.max_stale)
        ):
            return txn
        if txn is not None:
            txn.abort()
        reader.commits = self._commits  # read before begin: a commit in between renews again
        reader.txn = txn = self._env.begin()
        reader.since = time.monotonic()
        return txn

    def release(self) -> None:
        """End this thread's read transaction (an idle thread should not pin old pages)."""
        reader = self._reader
        if reader.txn is not None:
            reader.txn.abort()
            reader.txn = None

    def get(self, ns: str, key: bytes) -> bytes | None:
        """The value of *key*, or None (absent, expired or invalidated)."""
        space = self._spaces.get(ns)
        if space is None:
            return self._absent(ns, key)[1]
        if type(key) is not bytes or not 0 < len(key) <= MAX_KEY:
            raise _bad_key(key)
        if self._pending or self._barriers:
            return self._probe(space, key)[1]
        reader = self._reader
        txn = reader.txn
        if (
            reader.commits != self._commits
            or txn is None
            or (self._timed and _monotonic() - reader.since >= self.max_stale)
        ):
            txn = self._txn()
        raw = txn.get(key, None, space.v)
        if raw is None:
            space.misses += 1
            return None
        expires, _stamp, slen = _unpack(raw)
        if expires and expires <= self._clock() * 1000.0:
            space.expired += 1
            space.misses += 1
            return None
        space.hits += 1
        if space.tracking:
            self._hits = hits = self._hits + 1
            if not hits & self._touch_mask:
                self._touches.append((space, key))
        return raw[_HEAD_SIZE + slen :]

    def get_many(self, ns: str, keys: Iterable[bytes]) -> list[bytes | None]:
        """The values of *keys* (None for each miss), from one read transaction."""
        get = self.get
        return [get(ns, key) for key in keys]

    def lookup(self, ns: str, key: bytes) -> tuple[str, bytes | None]:
        """("hit", value), ("miss", None) or ("expired", None): JAliEn's TextCache tells
        an expired entry from a missing one."""
        space = self._spaces.get(ns)
        if space is None:
            return self._absent(ns, key)
        if type(key) is not bytes or not 0 < len(key) <= MAX_KEY:
            raise _bad_key(key)
        return self._probe(space, key)

    def _probe(self, space: _Space, key: bytes) -> tuple[str, bytes | None]:
        # the barriers first: the writer bumps _commits, then drops the overlay entries and
        # barriers of a commit. Taken before the overlay and the read transaction, this list
        # still holds the barrier of any commit the transaction may predate.
        barriers = self._barriers
        seq = 0
        raw: bytes | None = None
        pending = self._pending.get((space.name, key)) if self._pending else None
        if pending is not None:
            seq, raw = pending
            if raw is None:  # deleted, not committed yet
                space.misses += 1
                return "miss", None
        else:
            raw = self._txn().get(key, None, space.v)
            if raw is None:
                space.misses += 1
                return "miss", None
        expires, _stamp, slen = _unpack(raw)
        if barriers and _barred(barriers, space.name, seq, raw, slen):
            space.misses += 1
            return "miss", None
        if expires and expires <= self._clock() * 1000.0:
            space.expired += 1
            space.misses += 1
            return "expired", None
        space.hits += 1
        if space.tracking:
            self._hits = hits = self._hits + 1
            if not hits & self._touch_mask:
                self._touches.append((space, key))
        return "hit", raw[_HEAD_SIZE + slen :]

    def _absent(self, ns: str, key: Any) -> tuple[str, bytes | None]:
        """A namespace without handles here: written by this process but not committed
        yet (the overlay answers), made by another process (the writer opens it), or none."""
        check_namespace(ns)
        if type(key) is not bytes or not 0 < len(key) <= MAX_KEY:
            raise _bad_key(key)
        barriers = self._barriers  # before the overlay (see _probe)
        pending = self._pending.get((ns, key)) if self._pending else None
        if pending is not None and pending[1] is not None:
            raw = pending[1]
            expires, _stamp, slen = _unpack(raw)
            if not (barriers and _barred(barriers, ns, pending[0], raw, slen)):
                if not expires or expires > self._clock() * 1000.0:
                    return "hit", raw[_HEAD_SIZE + slen :]
                return "expired", None
        self.unknown_misses += 1
        if ns not in self._opening and self._made_elsewhere(ns):
            if self.readonly:
                self._open_space(ns, create=False)
            else:  # the writer opens its handles; lookups miss meanwhile
                self._opening.add(ns)
                self._writes.put(_Open(ns))
        return "miss", None

    def _made_elsewhere(self, ns: str) -> bool:
        """Does another process's namespace *ns* exist (this one has no handles for it)?"""
        if self._meta is None:
            if not self.readonly:
                return False
            with self._dbi_lock:
                self._open_meta()
            if self._meta is None:
                return False
        return self._txn().get(_SPACE_PREFIX + ns.encode(), None, self._meta) is not None

    # -- writes (queued; visible to this process at once, to others after the commit)
    def _writable(self, ns: str) -> Policy:
        if self.readonly:
            raise CacheError(f"cache {self.path} is open read-only", 1)
        if ns not in self._spaces:
            check_namespace(ns)
            if len(self._spaces) >= self.max_namespaces:
                raise CacheError(f"cache namespace {ns}: already {self.max_namespaces} namespaces")
        return self.policy(ns)

    def set(
        self,
        ns: str,
        key: bytes,
        value: bytes,
        ttl: float | None = None,
        scope: str = "",
        *,
        if_absent: bool = False,
        since: tuple[int, int] | None = None,
    ) -> None:
        """Keep *value* under *key* for *ttl* seconds (None: the namespace's default; 0: no
        expiry), dropped by invalidate() of any path covering *scope*. With *if_absent*
        only when no live value is there (JAliEn's ``ifnull``). With *since* (``since()``
        taken before the value was computed) the writer does not keep it if an invalidation
        covering *scope* came after (but those this process queued before it: their writes
        were over), or a write covering it is in flight."""
        policy = self._writable(ns)
        if type(key) is not bytes or not 0 < len(key) <= MAX_KEY:
            raise _bad_key(key)
        if type(value) is not bytes:
            if not isinstance(value, bytes | bytearray | memoryview):
                raise CacheError(f"cache value must be bytes, not {type(value).__name__}")
            value = bytes(value)
        if len(value) > self.max_value_size:
            raise CacheError(
                f"cache value of {len(value)} bytes is larger than {self.max_value_size}",
                EXIT_TOO_BIG,
            )
        if ttl is None:
            ttl = policy.ttl
        elif not (isinstance(ttl, int | float) and math.isfinite(ttl) and ttl >= 0):
            raise CacheError(f"cache ttl must be a finite number of seconds >= 0, got {ttl!r}")
        expires = int((self._clock() + ttl) * 1000.0) if ttl > 0 else 0
        scoped = scope_key(scope) if scope else b""
        raw = _HEAD.pack(expires, 0, len(scoped)) + scoped + value  # the writer stamps it
        seq = next(self._seq)
        if not if_absent:
            with self._lock:
                self._pending[(ns, key)] = (seq, raw)
        self._writes.put(_Set(seq, ns, key, raw, scoped, if_absent, since))

    def delete(self, ns: str, key: bytes) -> None:
        if self.readonly:
            raise CacheError(f"cache {self.path} is open read-only", 1)
        check_namespace(ns)
        if type(key) is not bytes or not 0 < len(key) <= MAX_KEY:
            raise _bad_key(key)
        seq = next(self._seq)
        with self._lock:
            self._pending[(ns, key)] = (seq, None)
        self._writes.put(_Delete(seq, ns, key))

    def invalidate(self, path: str) -> None:
        """A write at *path*: drop every value whose scope is *path*, above or below it."""
        if self.readonly:
            raise CacheError(f"cache {self.path} is open read-only", 1)
        scoped = scope_key(path)
        seq = next(self._seq)
        with self._lock:
            self._barriers.append((seq, None, scoped))
        self._writes.put(_Invalidate(seq, scoped))

    def generation(self) -> int:
        """The generation this thread's read transaction sees: +1 per invalidation of any
        process. Read it before computing a value to put with ``since``."""
        if self._meta is None:
            return 0
        raw = self._txn().get(_GEN, None, self._meta)
        return _STAMP.unpack(raw)[0] if raw else 0

    def since(self) -> tuple[int, int]:
        """Take it before computing a value to put with ``since``: the generation and a
        place in this process's queue of operations."""
        return self.generation(), next(self._seq)

    def begin_write(self, paths: Iterable[str]) -> WriteIntent:
        """A catalogue write at *paths* is about to commit: drop what covers them and record
        the intent, in one commit; await ``durable`` before the catalogue commits. Until
        end_write (or this process's death, seen by any process of the host), puts covering
        them are refused: so after a kill -9 anywhere no value computed before the
        catalogue's commit survives it."""
        if self.readonly:
            raise CacheError(f"cache {self.path} is open read-only", 1)
        scopes = tuple(scope_key(p) for p in paths)
        keys = tuple(self._owner + _STAMP.pack(next(self._intent_seq)) for _ in scopes)
        seq = next(self._seq)
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        with self._lock:
            self._barriers.extend((seq, None, scope) for scope in scopes)
        self._writes.put(_Begin(seq, scopes, keys, future))
        return WriteIntent(scopes, keys, future)

    def end_write(self, intent: WriteIntent) -> None:
        """The catalogue committed (or failed): drop what covers the paths again (values
        computed meanwhile) and the intent. Queued: a crash before it is durable leaves the
        intent, which the next start (or sweep) of any process on the host reaps."""
        seq = next(self._seq)
        with self._lock:
            self._barriers.extend((seq, None, scope) for scope in intent.scopes)
        self._writes.put(_End(seq, intent.scopes, intent.keys))

    def clear(self, ns: str | None = None) -> concurrent.futures.Future[int]:
        """Empty one namespace (None: all); the future gives how many entries went."""
        if self.readonly:
            raise CacheError(f"cache {self.path} is open read-only", 1)
        if ns is not None:
            check_namespace(ns)
        seq = next(self._seq)
        future: concurrent.futures.Future[int] = concurrent.futures.Future()
        with self._lock:
            self._barriers.append((seq, ns, None))
        self._writes.put(_Clear(seq, ns, future))
        return future

    def remove_matching(
        self, ns: str, pattern: re.Pattern[bytes]
    ) -> concurrent.futures.Future[int]:
        """Drop the keys of *ns* that *pattern* matches entirely (a scan, on the writer)."""
        if self.readonly:
            raise CacheError(f"cache {self.path} is open read-only", 1)
        check_namespace(ns)
        future: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._writes.put(_Match(next(self._seq), ns, pattern, future))
        return future

    def flush(self) -> concurrent.futures.Future[None]:
        """Done when everything queued so far is committed (await with asyncio.wrap_future)."""
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        if self.readonly:
            future.set_result(None)
        else:
            self._writes.put(_Flush(future))
        return future

    def sweep(self) -> concurrent.futures.Future[None]:
        """Sweep expired entries at the next commit (the writer also does every interval)."""
        self._writes.put(_Sweep())
        return self.flush()

    # -- the writer
    def _run(self) -> None:
        while True:
            # sleep until there is work: a queued operation, hits to move, or the next sweep
            if self._touches:
                wait = self.touch_interval
            else:
                wait = max(0.001, self._next_sweep - time.monotonic())
            try:
                if not self.run_once(wait):
                    return
            except Exception:  # a bug: keep the writer alive, the cache is only a cache
                log.exception("cache writer failed")
                time.sleep(0.1)

    def run_once(self, timeout: float = 0.0) -> bool:
        """One group commit: wait up to *timeout* s for work, then apply everything queued
        (and the hits to move, and a sweep when due) in one transaction. False on stop."""
        ops, stopped = self._writes.take(timeout if timeout > 0 else 0)
        now = time.monotonic()
        touches = None
        if self._touches and (ops or now - self._last_touch >= self.touch_interval):
            touches, self._touches = self._touches, []
            self._last_touch = now
        sweep = now >= self._next_sweep or any(isinstance(op, _Sweep) for op in ops)
        if sweep:
            self._next_sweep = now + self.sweep_interval
        if ops or touches or sweep:
            self._commit(ops, touches or [], sweep)
        return not stopped

    def _commit(self, ops: list[_Op], touches: list[Any], sweep: bool) -> None:
        for op in ops:  # handles are opened before (outside) the batch's transaction
            if isinstance(op, _Set) and op.ns not in self._spaces:
                if len(self._spaces) < self.max_namespaces:
                    self._open_space(op.ns, create=True)
            elif isinstance(op, _Open):
                self._open_space(op.ns, create=False)
                self._opening.discard(op.ns)
        results: list[tuple[concurrent.futures.Future[Any], Any]] = []
        error: BaseException | None = None
        if self.commit_delay:
            time.sleep(self.commit_delay)
        self.gauge.began(len(ops))
        try:
            try:
                results = self._transaction(ops, touches, sweep)
            except lmdb.MapFullError:
                log.warning("cache %s is full: evicting half of every namespace", self.path)
                self._shrink()
                results = self._transaction(ops, touches, sweep)
        except lmdb.Error as exc:
            error = exc
            self.dropped += sum(1 for op in ops if isinstance(op, _LOSSY))
            log.error("cache %s: a commit of %d operations failed: %s", self.path, len(ops), exc)
        finally:
            self._commits += 1  # first: readers renew before the overlay goes
            self.commits += 1
            self.gauge.ended(len(ops), len(ops) if error is not None else 0)
            self._settle(ops)
        if error is not None:
            failed = CacheError(f"cache commit failed: {error}", 1)
            for op in ops:
                if isinstance(op, _Clear | _Match | _Flush | _Begin):
                    settle(op.future, None, failed)
            return
        for future, value in results:
            settle(future, value)

    def _transaction(
        self, ops: list[_Op], touches: list[Any], sweep: bool
    ) -> list[tuple[concurrent.futures.Future[Any], Any]]:
        results: list[tuple[concurrent.futures.Future[Any], Any]] = []
        dirty: set[_Space] = set()
        spaces = self._spaces
        intents: list[bytes] | None = None  # the scopes of the writes in flight, when read
        own: dict[int, int] = {}  # generation -> seq of this process's invalidations after a write
        with self._env.begin(write=True) as txn:
            stamp = self._tick(txn)
            for op in ops:
                if isinstance(op, _Set):
                    space = spaces.get(op.ns)
                    if space is None:
                        log.warning("cache namespace %s: too many namespaces, dropped", op.ns)
                        continue
                    if op.since is not None and op.scope:
                        if intents is None:
                            intents = list(txn.cursor(db=self._intents).iternext(keys=False))
                        if self._outdated(txn, op.scope, op.since, intents, own):
                            self.outdated += 1
                            continue
                    self._put(txn, space, op.key, op.raw, op.scope, op.if_absent, stamp)
                    dirty.add(space)
                elif isinstance(op, _Begin):
                    for scope, key in zip(op.scopes, op.keys, strict=True):
                        self._invalidate(txn, scope)
                        txn.put(key, scope, db=self._intents)
                    intents = None
                    results.append((op.future, None))
                elif isinstance(op, _End):
                    for scope, key in zip(op.scopes, op.keys, strict=True):
                        txn.delete(key, db=self._intents)
                        own[self._invalidate(txn, scope)] = op.seq
                    intents = None
                elif isinstance(op, _Delete):
                    space = spaces.get(op.ns)
                    if space is not None and self._remove(txn, space, op.key):
                        space.deletes += 1
                elif isinstance(op, _Invalidate):
                    own[self._invalidate(txn, op.scope)] = op.seq
                elif isinstance(op, _Clear):
                    results.append((op.future, self._clear(txn, op.ns)))
                elif isinstance(op, _Match):
                    results.append((op.future, self._match(txn, op.ns, op.pattern)))
                elif isinstance(op, _Flush):
                    results.append((op.future, None))
            if touches:
                self._touch(txn, touches, stamp)
            for space in dirty:
                self._evict(txn, space)
            if sweep:
                self._sweep(txn)
                self._reap(txn)
        if own:  # committed: remembered for the puts of later commits
            mine = self._own
            mine.update(own)
            for _ in range(len(mine) - LOG_KEEP):
                del mine[next(iter(mine))]
        return results

    def _outdated(
        self,
        txn: Any,
        scope: bytes,
        taken: tuple[int, int],
        intents: list[bytes],
        own: dict[int, int],
    ) -> bool:
        """Does a write in flight, or an invalidation after *taken* cover *scope*? (Then a
        value computed at *taken* may contradict the catalogue.) An invalidation this process
        queued before *taken* does not count: it follows a write that was over."""
        if any(covers(scope, path) for path in intents):
            return True
        since, seq = taken
        raw = txn.get(_GEN, None, self._meta)
        now = _STAMP.unpack(raw)[0] if raw else 0
        if now <= since:
            return False
        if now - since >= LOG_KEEP:
            return True  # too long ago to tell
        cursor = txn.cursor(db=self._log)
        try:
            if cursor.set_range(_STAMP.pack(since + 1)):
                for key, path in cursor:
                    if covers(scope, path):
                        generation = _STAMP.unpack(key)[0]
                        origin = own.get(generation) or self._own.get(generation)
                        if origin is not None and origin < seq:
                            continue
                        return True
        finally:
            cursor.close()
        return False

    def _reap(self, txn: Any) -> None:
        """Intents of processes that died (kill -9 between begin_write and end_write):
        invalidate their scopes once more and drop them."""
        dead = [
            (key, scope)
            for key, scope in txn.cursor(db=self._intents)
            if key[: _OWNER.size] != self._owner and not _alive(key)
        ]
        for key, scope in dead:
            txn.delete(key, db=self._intents)
            self._invalidate(txn, scope)
        if dead:
            self.reaped += len(dead)
            log.info("cache %s: dropped %d write intents of dead processes", self.path, len(dead))

    def _reap_now(self) -> None:
        with self._env.begin(write=True) as txn:
            self._reap(txn)
        self._commits += 1

    def _settle(self, ops: list[_Op]) -> None:
        """Committed (or lost): the overlay and barriers of these operations go."""
        done: set[int] = set()
        with self._lock:
            pending = self._pending
            for op in ops:
                if isinstance(op, _Set | _Delete):
                    item = (op.ns, op.key)
                    current = pending.get(item)
                    if current is not None and current[0] == op.seq:
                        del pending[item]
                elif isinstance(op, _BARRIERS):
                    done.add(op.seq)
            if done:
                self._barriers = [b for b in self._barriers if b[0] not in done]

    def _tick(self, txn: Any) -> bytes:
        raw = txn.get(_TICK, None, self._meta)
        stamp = _STAMP.pack((_STAMP.unpack(raw)[0] if raw else 0) + 1)
        txn.put(_TICK, stamp, db=self._meta)
        return stamp

    def _put(
        self,
        txn: Any,
        space: _Space,
        key: bytes,
        raw: bytes,
        scope: bytes,
        if_absent: bool,
        stamp: bytes,
    ) -> None:
        if if_absent:
            old = txn.get(key, None, space.v)
            if old is not None:
                expires = _unpack(old)[0]
                if not expires or expires > self._clock() * 1000.0:
                    return
        old = txn.replace(key, raw[:_STAMP_AT] + stamp + raw[_STAMP_AT + 8 :], db=space.v)
        if old is not None:
            self._unlink(txn, space, key, old)
        txn.put(stamp, key, db=space.l)
        if scope:
            txn.put(scope, key, db=space.s)
        space.sets += 1

    @staticmethod
    def _unlink(txn: Any, space: _Space, key: bytes, raw: bytes) -> None:
        """Remove *key*'s index entries (not its value)."""
        slen = _unpack(raw)[2]
        if slen:
            txn.delete(raw[_HEAD_SIZE : _HEAD_SIZE + slen], key, db=space.s)
        txn.delete(raw[_STAMP_AT : _STAMP_AT + 8], key, db=space.l)

    def _remove(self, txn: Any, space: _Space, key: bytes) -> bool:
        raw = txn.pop(key, db=space.v)
        if raw is None:
            return False
        self._unlink(txn, space, key, raw)
        return True

    def _invalidate(self, txn: Any, path: bytes) -> int:
        """Drop what *path* covers; its generation (logged in ``inv``)."""
        raw = txn.get(_GEN, None, self._meta)
        generation = (_STAMP.unpack(raw)[0] if raw else 0) + 1
        txn.put(_GEN, _STAMP.pack(generation), db=self._meta)
        txn.put(_STAMP.pack(generation), path, db=self._log)
        if generation > LOG_KEEP:
            txn.delete(_STAMP.pack(generation - LOG_KEEP), db=self._log)
        for space in list(self._spaces.values()):
            if not txn.stat(space.s)["entries"]:
                continue
            keys: set[bytes] = set()
            cursor = txn.cursor(db=space.s)
            if path == b"/":
                keys.update(cursor.iternext(keys=False, values=True))
            else:
                for scope in ancestors(path):
                    if cursor.set_key(scope):
                        keys.update(cursor.iternext_dup())
                below = path + b"/"
                if len(below) <= MAX_KEY and cursor.set_range(below):
                    for scope, key in cursor:
                        if not scope.startswith(below):
                            break
                        keys.add(key)
            cursor.close()
            for key in keys:
                if self._remove(txn, space, key):
                    space.invalidated += 1
        return generation

    def _clear(self, txn: Any, ns: str | None) -> int:
        removed = 0
        for space in list(self._spaces.values()):
            if ns is not None and space.name != ns:
                continue
            if ns is None and space.policy.private:
                continue  # "all" means the shared (TextCache) namespaces
            removed += txn.stat(space.v)["entries"]
            for db in (space.v, space.l, space.s):
                txn.drop(db, delete=False)
        return removed

    def _match(self, txn: Any, ns: str, pattern: re.Pattern[bytes]) -> int:
        space = self._spaces.get(ns)
        if space is None:
            return 0
        cursor = txn.cursor(db=space.v)
        keys = [k for k in cursor.iternext(values=False) if pattern.fullmatch(k)]
        cursor.close()
        for key in keys:
            self._remove(txn, space, key)
        space.deletes += len(keys)
        return len(keys)

    def _touch(self, txn: Any, touches: list[tuple[_Space, bytes]], stamp: bytes) -> None:
        """Move the keys read to the newest stamp, those in the older half of the order only
        (a key read again soon after a move stays where it is)."""
        now = _STAMP.unpack(stamp)[0]
        middle: dict[_Space, bytes] = {}
        for space, key in set(touches):
            half = middle.get(space)
            if half is None:
                cursor = txn.cursor(db=space.l)
                oldest = _STAMP.unpack(cursor.key())[0] if cursor.first() else now
                cursor.close()
                half = middle[space] = _STAMP.pack(oldest + (now - oldest) // 2)
            raw = txn.get(key, None, space.v)
            if raw is None or len(raw) > TOUCH_LIMIT:
                continue
            old = raw[_STAMP_AT : _STAMP_AT + 8]
            if old >= half:
                continue
            txn.put(key, raw[:_STAMP_AT] + stamp + raw[_STAMP_AT + 8 :], db=space.v)
            txn.delete(old, key, db=space.l)
            txn.put(stamp, key, db=space.l)

    @staticmethod
    def _track(space: _Space, stat: dict[str, int]) -> None:
        """Log hits (LRU) only when the namespace is near its bound."""
        policy = space.policy
        if not policy.lru:
            return
        pages = stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]
        space.tracking = (
            policy.max_entries > 0 and stat["entries"] >= TRACK_FROM * policy.max_entries
        ) or (policy.max_bytes > 0 and pages * stat["psize"] >= TRACK_FROM * policy.max_bytes)

    def _evict(self, txn: Any, space: _Space) -> None:
        policy = space.policy
        stat = txn.stat(space.v)
        self._track(space, stat)
        over = stat["entries"] - policy.max_entries if policy.max_entries else 0
        limit = policy.max_bytes

        def too_big(stat: dict[str, int]) -> bool:
            pages = stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]
            return pages * stat["psize"] > limit

        if over <= 0 and not (limit and too_big(stat)):
            return
        cursor = txn.cursor(db=space.l)
        while cursor.first():
            if over <= 0 and not (limit and too_big(txn.stat(space.v))):
                break
            key = cursor.value()
            cursor.delete()
            raw = txn.pop(key, db=space.v)
            if raw is not None:
                slen = _unpack(raw)[2]
                if slen:
                    txn.delete(raw[_HEAD_SIZE : _HEAD_SIZE + slen], key, db=space.s)
            space.evictions += 1
            over -= 1
        cursor.close()

    def _sweep(self, txn: Any) -> None:
        """Drop expired entries, a chunk at a time (each namespace resumes where it was)."""
        now = self._clock() * 1000.0
        budget = self.sweep_chunk
        for space in list(self._spaces.values()):
            if budget <= 0:
                break
            cursor = txn.cursor(db=space.v)
            expired = []
            seen = 0
            found = cursor.set_range(space.sweep_from) if space.sweep_from else cursor.first()
            while found and seen < budget:
                key, raw = cursor.item()
                seen += 1
                expires = _unpack(raw)[0]
                if expires and expires <= now:
                    expired.append(key)
                found = cursor.next()
            space.sweep_from = cursor.key() if found else b""
            cursor.close()
            budget -= seen
            for key in expired:
                self._remove(txn, space, key)
            space.swept += len(expired)

    def _shrink(self) -> None:
        """The map is full: evict the older half of every namespace."""
        with self._env.begin(write=True) as txn:
            for space in self._spaces.values():
                count = txn.stat(space.v)["entries"] // 2
                cursor = txn.cursor(db=space.l)
                victims: list[bytes] = []
                for _stamp, key in cursor:
                    if len(victims) >= count:
                        break
                    victims.append(key)
                cursor.close()
                for key in victims:
                    if self._remove(txn, space, key):
                        space.evictions += 1

    # -- administration
    def stats(self) -> list[NamespaceStats]:
        """Counters of this process, sizes from the shared store."""
        out = []
        with self._env.begin() as txn:
            for space in sorted(self._spaces.values(), key=lambda s: s.name):
                stat = txn.stat(space.v)
                pages = stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]
                out.append(
                    NamespaceStats(
                        name=space.name,
                        entries=stat["entries"],
                        bytes=pages * stat["psize"],
                        hits=space.hits,
                        misses=space.misses,
                        expired=space.expired,
                        sets=space.sets,
                        deletes=space.deletes,
                        evictions=space.evictions,
                        invalidated=space.invalidated,
                        swept=space.swept,
                        policy=space.policy,
                    )
                )
        return out

    def namespaces(self) -> list[str]:
        return sorted(self._spaces)

    def entries(
        self, ns: str, limit: int = 10_000, values: bool = False
    ) -> list[tuple[bytes, int, int, bytes | None]]:
        """(key, value size, expires ms, value if *values*) of up to *limit* entries of *ns*
        (a scan: call it from a worker thread for big namespaces). Counts no hits."""
        space = self._spaces.get(ns)
        if space is None:
            return []
        out: list[tuple[bytes, int, int, bytes | None]] = []
        with self._env.begin() as txn:
            for key, raw in txn.cursor(db=space.v):
                if len(out) >= limit:
                    break
                expires, _stamp, slen = _unpack(raw)
                value = raw[_HEAD_SIZE + slen :] if values else None
                out.append((key, len(raw) - _HEAD_SIZE - slen, expires, value))
        return out

    def check(self) -> list[str]:
        """Consistency of every namespace's indexes with its values (tests, after a crash)."""
        problems = []
        with self._env.begin() as txn:
            for space in self._spaces.values():
                name = space.name
                values = dict(txn.cursor(db=space.v))
                order = list(txn.cursor(db=space.l))
                scopes = list(txn.cursor(db=space.s))
                for key, raw in values.items():
                    if len(raw) < _HEAD_SIZE or len(raw) < _HEAD_SIZE + _unpack(raw)[2]:
                        problems.append(f"{name}: value of {key!r} is truncated")
                        values[key] = bytes(_HEAD_SIZE)
                stamps = sorted((k, raw[_STAMP_AT : _STAMP_AT + 8]) for k, raw in values.items())
                if sorted((key, stamp) for stamp, key in order) != stamps:
                    problems.append(f"{name}: the eviction order disagrees with the values")
                wanted = sorted(
                    (raw[_HEAD_SIZE : _HEAD_SIZE + _unpack(raw)[2]], key)
                    for key, raw in values.items()
                    if _unpack(raw)[2]
                )
                if sorted(scopes) != wanted:
                    problems.append(f"{name}: the scope index disagrees with the values")
        return problems

    def pools(self) -> list[Pool]:
        """The writer thread, for the role's registry (a read-only store has none)."""
        return [self.gauge] if self._thread is not None else []

    def close(self) -> None:
        """Commit what is queued, stop the writer, close the environment."""
        if self.closed:
            return
        self.closed = True
        if self._thread is not None:
            self._writes.stop()
            self._thread.join(30)
            self._thread = None
        elif not self.readonly:
            while not self._writes.empty():
                self.run_once()
        self.release()
        self._env.close()
