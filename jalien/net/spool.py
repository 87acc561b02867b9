"""The binary channel over a shared filesystem: for worker nodes without any network.

A client (``net.client.Client(..., connector=spool.connector(...))``, so the JobAgent keeps
its one client interface) and the relay on the login node (``net.spool_relay``) exchange the
binary channel's frames as files of a spool directory both see::

    <spool>/conns/<conn>/           one per connection (a JobAgent has two: its token, the job's)
        hello                       the client's certificate, signed by its key (who it is)
        up/<seq:016d>               client -> relay: the bytes of one transport write (frames)
        up/<seq>.c                  claimed by the relay (renamed: it is being answered)
        up/hw                       the relay's high-water mark: every seq <= it was claimed
        down/r<seq:016d>            relay -> client: every frame answering up/<seq> at once
        up/bye                      the client closed the connection
        down/e<epoch>-<n>           relay -> client: a pushed event (kill)
    <spool>/stage/<queueId>/in|out  a job's input and output files (the relay's staging)

Every file is written under a temporary name (``.tmp-``) in its final directory, fsync'ed,
then renamed: a reader sees a whole file or none. The relay claims ``up/N`` by renaming it to
``up/N.c`` (exactly one rename of a name succeeds); it writes ``down/rN``, then removes
``up/N.c``; the client reads ``down/rN``, removes ``up/N.c`` (if still there), then
``down/rN``. So after a crash of the relay (kill -9) ``up/N.c`` without ``down/rN`` is a
request whose outcome is unknown: the restarted relay answers it with an error (exit 107,
"not repeated") and never sends it again (at most once); an unclaimed ``up/N`` is simply
taken then (nothing is lost). Sequence numbers make a retried write idempotent: the client
writes the same ``N`` again after a failed rename (NFS may report a rename that happened as
failed); the relay drops any ``up/N`` at or below its high-water mark.

What it relies on: rename(2) atomic within a directory (POSIX; NFS and Lustre too: one
RENAME call), close-to-open consistency (NFS: a file opened after its writer closed it shows
the whole content; fsync before rename also makes it durable at the server), and a single
writer per name. No lock of any kind (no flock, no fcntl, no O_EXCL lock files), no mtime
comparisons between hosts (ages are the relay's own clock against the server's mtime only
for stale cleanup, with hours of margin). Bounded: a client has at most ``max_files``
requests unanswered in ``up/`` (then it stops writing until answers come, like a full
socket buffer), the relay at most ``max_files`` pushed events waiting in ``down/``.

Waking: inotify (``net.inotify``) where the kernel sees the writes (a local filesystem, or
both sides on one host), plus a scan every ``poll`` seconds; ``watch="poll"`` scans only.
On NFS inotify never fires for another host's writes: the scan is what finds them, and
the NFS client must not cache directory listings for long (``actimeo`` or ``lookupcache``:
docs/relay.md).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import secrets
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from jalien.net import inotify
from jalien.net.client import Connector

log = logging.getLogger("jalien.net.spool")

CONNS = "conns"
STAGE = "stage"
UP = "up"
DOWN = "down"
HELLO = "hello"
BYE = "bye"
HW = "hw"
TMP = ".tmp-"
CLAIMED = ".c"
WATCH_MODES = ("auto", "inotify", "poll")

ProtocolFactory = Callable[[], asyncio.Protocol]


class SpoolError(OSError):
    """The spool cannot be used (missing, not writable, a bad hello)."""


def up_name(seq: int) -> str:
    return f"{seq:016d}"


def reply_name(seq: int) -> str:
    return f"r{seq:016d}"


def event_name(epoch: int, number: int) -> str:
    return f"e{epoch:020d}-{number:010d}"


def write_atomic(directory: Path, name: str, data: bytes, *, sync: bool = True) -> None:
    """*data* as ``directory/name``: a temporary name in the same directory, fsync, rename."""
    tmp = directory / f"{TMP}{name}.{os.getpid()}.{secrets.token_hex(3)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if sync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    try:
        os.rename(tmp, directory / name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def unlink_quiet(path: Path) -> bool:
    """Remove *path*; False when it was not there."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def remove_stale_tmp(directory: Path, older_than: float, now: float | None = None) -> int:
    """Temporary files a crashed writer left (older than *older_than* seconds)."""
    now = time.time() if now is None else now
    removed = 0
    with contextlib.suppress(OSError), os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.startswith(TMP):
                with contextlib.suppress(OSError):
                    if now - entry.stat().st_mtime > older_than:
                        os.unlink(entry.path)
                        removed += 1
    return removed


# -- who a connection is: its certificate, and a signature proving it holds the key


class Hello(msgspec.Struct, frozen=True):
    cert: bytes  # PEM
    created: float
    host: str
    pid: int
    signature: bytes


def _signed(conn: str, created: float) -> bytes:
    return f"jalien-spool-hello\0{conn}\0{created!r}".encode()


def make_hello(conn: str, cert_pem: bytes, key_pem: bytes) -> bytes:
    created = time.time()
    key = serialization.load_pem_private_key(key_pem, None)
    data = _signed(conn, created)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(data, ec.ECDSA(hashes.SHA256()))
    elif isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    else:
        raise SpoolError(f"key type {type(key).__name__} cannot sign a spool hello")
    hello = Hello(cert_pem, created, socket.gethostname(), os.getpid(), signature)
    return msgspec.msgpack.encode(hello)


def read_hello(conn: str, data: bytes) -> x509.Certificate:
    """The certificate of a connection's hello, once its signature is checked (SpoolError)."""
    try:
        hello = msgspec.msgpack.decode(data, type=Hello)
        cert = x509.load_pem_x509_certificate(hello.cert)
    except (msgspec.DecodeError, ValueError) as exc:
        raise SpoolError(f"connection {conn}: unreadable hello: {exc}") from None
    key = cert.public_key()
    signed = _signed(conn, hello.created)
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(hello.signature, signed, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(hello.signature, signed, padding.PKCS1v15(), hashes.SHA256())
        else:
            raise SpoolError(f"connection {conn}: unsupported key type")
    except InvalidSignature:
        raise SpoolError(f"connection {conn}: the hello is not signed by its key") from None
    return cert


# -- waking up when files appear


class DirWatch:
    """Wakes a waiter when files appear in the directories watched: inotify (``auto``,
    ``inotify``) plus a scan every *poll* seconds, or the scan alone (``poll``)."""

    def __init__(self, mode: str = "auto", poll: float = 0.1, *, settle: float = 0.0) -> None:
        if mode not in WATCH_MODES:
            raise ValueError(f"spool watch mode {mode!r}: one of {', '.join(WATCH_MODES)}")
        self.poll = poll
        self.settle = settle  # seconds to wait after a wake-up, gathering what follows
        self._inotify: inotify.Inotify | None = None
        if mode != "poll":
            try:
                self._inotify = inotify.Inotify()
            except OSError as exc:
                if mode == "inotify":
                    raise SpoolError(f"spool watch inotify: {exc}") from None
                log.info("inotify unavailable (%s): polling every %g s", exc, poll)
        self.mode = "inotify" if self._inotify is not None else "poll"
        self._wds: dict[int, Path] = {}
        self._by_path: dict[Path, int] = {}
        self._changed: set[Path] = set()
        self._all = False
        self._wake = asyncio.Event()
        self._reading = False

    def add(self, path: Path) -> None:
        if self._inotify is None or path in self._by_path:
            return
        if not self._reading:
            asyncio.get_running_loop().add_reader(self._inotify.fileno(), self._on_events)
            self._reading = True
        try:
            wd = self._inotify.add(str(path))
        except OSError as exc:
            log.debug("no inotify watch on %s: %s", path, exc)
            return
        self._wds[wd] = path
        self._by_path[path] = wd

    def discard(self, path: Path) -> None:
        wd = self._by_path.pop(path, None)
        if wd is not None and self._inotify is not None:
            self._wds.pop(wd, None)
            self._inotify.remove(wd)

    def _on_events(self) -> None:
        assert self._inotify is not None
        wds = self._inotify.read()
        if wds is None:
            self._all = True
        else:
            for wd in wds:
                path = self._wds.get(wd)
                if path is not None:
                    self._changed.add(path)
        if self._all or self._changed:
            self._wake.set()

    def poke(self) -> None:
        self._all = True
        self._wake.set()

    async def wait(self) -> set[Path] | None:
        """The directories that changed, or None when all should be scanned (the poll
        interval passed, an overflow)."""
        if not self._wake.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll)
        if self.settle and self._wake.is_set():
            await asyncio.sleep(self.settle)
        self._wake.clear()
        changed, self._changed = self._changed, set()
        if self._all or not changed:
            self._all = False
            return None
        return changed

    def close(self) -> None:
        if self._inotify is not None:
            if self._reading:
                with contextlib.suppress(Exception):
                    asyncio.get_running_loop().remove_reader(self._inotify.fileno())
            self._inotify.close()
            self._inotify = None


# -- the client's side: a transport under net.client's protocol


class SpoolTransport(asyncio.Transport):
    """One connection's files, as an asyncio transport: ``write`` -> ``up/<seq>`` (in
    order, by a writer task, off the loop's thread); ``down/`` -> ``data_received``."""

    def __init__(
        self,
        directory: Path,
        protocol: asyncio.Protocol,
        watch: DirWatch,
        *,
        max_files: int = 256,
        sync: bool = True,
    ) -> None:
        super().__init__()
        self.directory = directory
        self.up = directory / UP
        self.down = directory / DOWN
        self._protocol = protocol
        self._watch = watch
        self.max_files = max(2, max_files)
        self.sync = sync
        self._seq = 0
        self._queue: collections.deque[tuple[int, bytes]] = collections.deque()
        self._unanswered: set[int] = set()  # written, no reply read yet
        self._paused = False
        self._closing = False
        self._lost = False
        self._kick = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.retries = 0  # writes repeated after an error (the same seq)

    def start(self) -> None:
        self._watch.add(self.down)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._writer()), loop.create_task(self._reader())]

    # -- asyncio.Transport
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return (str(self.directory), 0)
        return default

    def is_closing(self) -> bool:
        return self._closing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or not data:
            return
        self._seq += 1
        self._queue.append((self._seq, bytes(data)))
        self._unanswered.add(self._seq)
        self._kick.set()
        if not self._paused and len(self._unanswered) >= self.max_files:
            self._paused = True
            self._protocol.pause_writing()

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        asyncio.get_running_loop().create_task(self._shutdown(None, remove=True))

    def abort(self) -> None:
        self.close()

    # -- the tasks
    async def _writer(self) -> None:
        delay = 0.05
        while True:
            if not self._queue:
                self._kick.clear()
                await self._kick.wait()
                continue
            batch = list(self._queue)
            try:
                await asyncio.to_thread(self._write_files, batch)
            except FileNotFoundError as exc:  # the connection's directory is gone
                self._connection_lost(exc)
                return
            except OSError as exc:  # a full or flaky filesystem: the same seqs again
                self.retries += 1
                log.warning("spool %s: write failed (%s), retrying", self.up, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.05
            for _ in batch:
                self._queue.popleft()

    def _write_files(self, batch: list[tuple[int, bytes]]) -> None:
        for seq, data in batch:
            write_atomic(self.up, up_name(seq), data, sync=self.sync)

    async def _reader(self) -> None:
        while not self._lost:
            await self._watch.wait()
            try:
                chunks = await asyncio.to_thread(self._read_files)
            except FileNotFoundError as exc:
                self._connection_lost(exc)
                return
            except OSError as exc:
                log.warning("spool %s: read failed: %s", self.down, exc)
                continue
            for seq, data in chunks:
                if seq:
                    self._unanswered.discard(seq)
                if data and not self._lost:
                    self._protocol.data_received(data)
            if self._paused and len(self._unanswered) < self.max_files // 2:
                self._paused = False
                self._protocol.resume_writing()

    def _read_files(self) -> list[tuple[int, bytes]]:
        """Replies and events in the order written, each read once and removed."""
        names = sorted(n for n in os.listdir(self.down) if n[:1] in ("e", "r"))
        out: list[tuple[int, bytes]] = []
        for name in names:
            path = self.down / name
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            seq = 0
            if name[0] == "r":
                seq = int(name[1:])
                unlink_quiet(self.up / (up_name(seq) + CLAIMED))
            unlink_quiet(path)
            out.append((seq, data))
        return out

    def _connection_lost(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._closing = True
        asyncio.get_running_loop().create_task(self._shutdown(exc, remove=False))

    async def _shutdown(self, exc: Exception | None, *, remove: bool) -> None:
        self._lost = True
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        self._watch.discard(self.down)
        self._watch.close()
        if remove:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(write_atomic, self.up, BYE, b"", sync=False)
        self._protocol.connection_lost(exc)


def _make_connection(root: Path, conn: str, hello: bytes) -> Path:
    """``conns/<conn>`` with its hello, made under a temporary name and renamed: the relay
    never sees a connection without its hello."""
    conns = root / CONNS
    if not conns.is_dir():
        raise SpoolError(f"{conns} is not a directory (is the relay's spool {root}?)")
    tmp = conns / f"{TMP}{conn}"
    tmp.mkdir(mode=0o700)
    (tmp / UP).mkdir(mode=0o700)
    (tmp / DOWN).mkdir(mode=0o700)
    write_atomic(tmp, HELLO, hello)
    final = conns / conn
    os.rename(tmp, final)
    return final


def connector(
    root: Path,
    cert_pem: bytes,
    key_pem: bytes,
    *,
    watch: str = "auto",
    poll: float = 0.1,
    max_files: int = 256,
    sync: bool = True,
) -> Connector:
    """A ``Client`` connector: each connection is a new directory of *root*'s spool,
    introduced by the certificate *cert_pem* and a signature of *key_pem*."""

    async def connect(factory: ProtocolFactory) -> tuple[asyncio.BaseTransport, Any]:
        conn = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        hello = make_hello(conn, cert_pem, key_pem)
        try:
            directory = await asyncio.to_thread(_make_connection, root, conn, hello)
        except SpoolError:
            raise
        except OSError as exc:
            raise SpoolError(f"spool {root}: {exc.strerror or exc}") from None
        protocol = factory()
        transport = SpoolTransport(
            directory, protocol, DirWatch(watch, poll), max_files=max_files, sync=sync
        )
        protocol.connection_made(transport)
        transport.start()
        return transport, protocol

    return connect


def make_spool(root: Path) -> None:
    """The spool's directories (the relay makes them; 0700: the agents run as its user)."""
    for sub in (root, root / CONNS, root / STAGE):
        sub.mkdir(mode=0o700, parents=True, exist_ok=True)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
