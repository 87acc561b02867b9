"""The relay's side of the filesystem spool (``net.spool`` describes the files): a level's
server whose connections are directories instead of sockets.

Each connection directory is one binary-channel connection: its hello says who the client
is (a certificate, signed by its key; *identify* turns it into the identity the level
forwards upstream, as ``net.identity.LevelAuthenticator`` does for a TLS peer), its
``up/<seq>`` files are fed in order to a ``wire.channel.ServerChannel`` and the requests go
to the handler (a level's ``UpstreamProxy``: the body goes upstream untouched, the raw
frames come back); every frame answering ``up/N`` is written at once as ``down/rN``.
Events the handler pushes (kill) become ``down/e...`` files.

Only channel 0 travels on a spool connection (OpenChannel is refused): a client opens one
connection per identity, as the JobAgent does (its token, then each job's token).

A restart after kill -9 loses nothing and repeats nothing: ``up/N`` not yet claimed is
taken as usual; ``up/N.c`` (claimed) with no ``down/rN`` is answered "not repeated" (exit
107) unless it only held control frames (Cancel, CloseChannel), which are applied again;
``up/N`` at or below the high-water mark ``up/hw`` is a retried write: dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from jalien.net import spool
from jalien.net.identity import Identity
from jalien.wire import framing
from jalien.wire.channel import (
    CancelReceived,
    ChannelClosed,
    Invalid,
    OpenRequested,
    RequestReceived,
    ServerChannel,
)
from jalien.wire.errors import EXIT_NO_CONNECTION, EXIT_PERMISSION, RequestError
from jalien.wire.messages import Event, Reply

log = logging.getLogger("jalien.net.spool_relay")

NOT_REPEATED = "the relay restarted while this request was on its way upstream; it was not repeated"
# after a wake-up, the relay lets this long pass before it lists: the files written
# meanwhile are taken in the same pass (one listing, one high-water mark write)
SETTLE = 0.001
Identify = Callable[[bytes], Identity]  # a certificate (DER) -> the identity to forward


@dataclass
class _File:
    """One up file being answered: the frames so far, the requests still running."""

    seq: int
    frames: list[bytes] = field(default_factory=list)
    running: int = 0
    fed: bool = False


class _Connection:
    def __init__(self, relay: SpoolRelay, name: str, directory: Path) -> None:
        self.relay = relay
        self.name = name
        self.directory = directory
        self.up = directory / spool.UP
        self.down = directory / spool.DOWN
        self.channel = ServerChannel(relay.max_frame)
        self.identity: Identity | None = None
        self.refusal = ""
        self.session: Any = None
        self.hw = 0  # every seq at or below was claimed
        self.files: dict[int, _File] = {}
        self.tasks: dict[int, asyncio.Task[None]] = {}  # by stream id
        self.events = 0
        self.events_waiting = 0
        self.epoch = time.time_ns()
        self.closed = False
        self.busy = False
        self.last_seen = time.time()

    # -- start: who, and what a crashed relay left
    def open(self) -> list[tuple[int, bytes]]:
        """(Thread.) The hello, the high-water mark, and the files a crash left claimed."""
        hello = (self.directory / spool.HELLO).read_bytes()
        try:
            cert = spool.read_hello(self.name, hello)
            self.identity = self.relay.identify(cert.public_bytes(Encoding.DER))
        except (spool.SpoolError, ValueError) as exc:
            self.refusal = str(exc)
        except Exception as exc:  # AuthError and what an identify may raise
            self.refusal = f"{_subject(hello)}: {exc}"
        try:
            self.hw = int((self.up / spool.HW).read_text() or 0)
        except (FileNotFoundError, ValueError):
            self.hw = 0
        claimed: list[tuple[int, bytes]] = []
        for name in sorted(os.listdir(self.up)):
            if not name.endswith(spool.CLAIMED) or not name[:-2].isdigit():
                continue
            seq = int(name[:-2])
            self.hw = max(self.hw, seq)
            if (self.down / spool.reply_name(seq)).exists():
                spool.unlink_quiet(self.up / name)  # answered; the client has not read it
                continue
            with contextlib.suppress(FileNotFoundError):
                claimed.append((seq, (self.up / name).read_bytes()))
        return claimed

    def recover(self, claimed: list[tuple[int, bytes]]) -> None:
        """Answer what was claimed before a crash: requests "not repeated"; control frames
        applied again (they are idempotent)."""
        for seq, data in claimed:
            work = _File(seq)
            self.files[seq] = work
            try:
                self.channel.feed(data)
            except framing.ProtocolError as exc:
                log.warning("spool %s: bad frames in %d: %s", self.name, seq, exc)
            while True:
                event = self.channel.next_event()
                if event is None:
                    break
                if type(event) is RequestReceived:
                    log.warning(
                        "spool %s: %s (up/%d) was claimed before a restart: not repeated",
                        self.name, event.request.command, seq,
                    )  # fmt: skip
                    reply = Reply(exitcode=EXIT_NO_CONNECTION, error=NOT_REPEATED)
                    work.frames.append(self.channel.reply(event.stream, reply))
                else:
                    self._control(event, work)
            work.fed = True
            self.relay.write_reply(self, work)

    # -- requests
    def take(self, names: list[str]) -> list[int]:
        """(Thread.) Claim the new up files in order; drop retried ones (at or below the
        high-water mark); the seqs claimed. The mark is written after the renames (a
        crash in between leaves ``.c`` files, which count)."""
        seqs = sorted(int(n) for n in names if n.isdigit())
        taken: list[int] = []
        for seq in seqs:
            path = self.up / spool.up_name(seq)
            if seq <= self.hw:
                spool.unlink_quiet(path)  # a retried write of a request already taken
                continue
            try:
                os.rename(path, self.up / (spool.up_name(seq) + spool.CLAIMED))
            except FileNotFoundError:
                continue
            self.hw = seq
            taken.append(seq)
        if taken:  # not fsync'ed: a process crash keeps it; a node crash may lose the last
            spool.write_atomic(self.up, spool.HW, str(self.hw).encode(), sync=False)
        return taken

    def feed(self, seq: int, data: bytes) -> None:
        work = _File(seq)
        self.files[seq] = work
        try:
            self.channel.feed(data)
        except framing.ProtocolError as exc:
            log.warning("spool %s: bad frames in up/%d: %s", self.name, seq, exc)
        while True:
            event = self.channel.next_event()
            if event is None:
                break
            if type(event) is RequestReceived:
                self._request(event, work)
            else:
                self._control(event, work)
        work.fed = True
        if not work.running:
            self.relay.write_reply(self, work)

    def _request(self, event: RequestReceived, work: _File) -> None:
        sid = event.stream
        if self.identity is None:
            reply = Reply(exitcode=EXIT_PERMISSION, error=self.refusal or "not identified")
            work.frames.append(self.channel.reply(sid, reply))
            return
        handler = self.relay.handler
        raw = getattr(handler, "dispatch_raw", None)
        try:
            if raw is not None:
                result: Any = raw(self.session, event.request, event.flags, event.body)
            else:
                result = handler.dispatch(self.session, event.request)
        except Exception as exc:  # the handler's own guard failed: answer, keep serving
            log.exception("spool %s: handler failed", self.name)
            result = Reply(exitcode=1, error=f"internal error: {exc}")
        if type(result) is Reply:
            work.frames.append(self.channel.reply(sid, result))
            return
        if type(result) is tuple:
            work.frames.append(self.channel.reply_raw(sid, *result))
            return
        work.running += 1
        self.tasks[sid] = asyncio.ensure_future(self._finish(sid, result, work))

    async def _finish(self, sid: int, pending: Any, work: _File) -> None:
        channel = self.channel
        try:
            if hasattr(pending, "__anext__"):
                async for item in pending:
                    if type(item) is Reply:
                        work.frames.append(channel.page(sid, item))
                    else:
                        work.frames.append(channel.reply_raw(sid, *item))
            else:
                reply = await pending
                if type(reply) is tuple:
                    work.frames.append(channel.reply_raw(sid, *reply))
                else:
                    work.frames.append(channel.reply(sid, reply))
        except asyncio.CancelledError:
            pass  # the client cancelled: it ignores what follows
        except RequestError as exc:
            work.frames.append(channel.finish(sid, Reply(exitcode=exc.exitcode, error=str(exc))))
        except Exception as exc:
            log.exception("spool %s: request failed", self.name)
            work.frames.append(channel.finish(sid, Reply(exitcode=1, error=str(exc))))
        finally:
            work.frames.append(channel.end(sid))
            self.tasks.pop(sid, None)
            work.running -= 1
            if work.fed and not work.running:
                self.relay.write_reply(self, work)

    def _control(self, event: Any, work: _File) -> None:
        kind = type(event)
        if kind is CancelReceived:
            task = self.tasks.get(event.stream)
            if task is not None:
                task.cancel()
        elif kind is OpenRequested:
            reply = Reply(
                exitcode=EXIT_PERMISSION,
                error="channels do not travel over the spool: one connection per identity",
            )
            work.frames.append(self.channel.reply(event.stream, reply))
        elif kind is Invalid:
            work.frames.append(self.channel.invalid(event))
        elif kind is ChannelClosed:
            for sid in event.streams:
                task = self.tasks.get(sid)
                if task is not None:
                    task.cancel()

    def push(self, event: Event) -> None:
        if self.closed:
            return
        if self.events_waiting >= self.relay.max_files:
            log.warning(
                "spool %s: %d events unread, %s dropped",
                self.name, self.events_waiting, event.topic,
            )  # fmt: skip
            return
        self.events += 1
        self.events_waiting += 1
        name = spool.event_name(self.epoch, self.events)
        self.relay.write_event(self, name, self.channel.push(0, event))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for task in list(self.tasks.values()):
            task.cancel()
        if self.session is not None:
            self.relay.handler.close_session(self.session)


def _subject(hello: bytes) -> str:
    with contextlib.suppress(Exception):
        import msgspec

        return x509.load_pem_x509_certificate(
            msgspec.msgpack.decode(hello, type=spool.Hello).cert
        ).subject.rfc4514_string()
    return "?"


class SpoolRelay:
    """Serves every connection of the spool *root* with *handler* (``start``/``close``);
    ``clean`` (a Loop's step) removes what ended or went stale."""

    def __init__(
        self,
        handler: Any,
        root: Path,
        identify: Identify,
        *,
        watch: str = "auto",
        poll: float = 0.1,
        max_files: int = 256,
        max_connections: int = 1000,
        stale: float = 6 * 3600.0,
        sync: bool = True,
        max_frame: int = framing.DEFAULT_MAX_FRAME,
    ) -> None:
        self.handler = handler
        self.root = root
        self.conns_dir = root / spool.CONNS
        self.identify = identify
        self.watch_mode = watch
        self.poll = poll
        self.max_files = max_files
        self.max_connections = max_connections
        self.stale = stale
        self.sync = sync
        self.max_frame = max_frame
        self.connections: dict[str, _Connection] = {}
        self.watch: spool.DirWatch | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._writes: set[asyncio.Task[None]] = set()
        self.requests = 0
        self.replies = 0

    def status(self) -> dict[str, object]:
        """What the VoBox's status.json says about the spool."""
        return {
            "spool_dir": str(self.root),
            "spool_watch": self.watch.mode if self.watch is not None else "",
            "spool_connections": len(self.connections),
            "spool_requests": self.requests,
            "spool_replies": self.replies,
        }

    async def start(self) -> None:
        await asyncio.to_thread(spool.make_spool, self.root)
        self.watch = spool.DirWatch(self.watch_mode, self.poll, settle=SETTLE)
        self.watch.add(self.conns_dir)
        self._task = asyncio.get_running_loop().create_task(self._run())
        log.info("spool relay on %s (%s, scan every %g s)", self.root, self.watch.mode, self.poll)

    async def close(self) -> None:
        # the flag ends the loop too: on Python 3.11 a cancel that lands as the watch's
        # wait_for completes is swallowed (CPython gh-86296), and the loop went on while
        # close() waited for it (a test hung once in CI)
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._writes:
            await asyncio.wait(set(self._writes), timeout=10)
        for conn in list(self.connections.values()):
            conn.close()
        if self.watch is not None:
            self.watch.close()

    async def _run(self) -> None:
        assert self.watch is not None
        changed: set[Path] | None = None
        while not self._stopping:
            try:
                await self._scan(changed)
            except Exception:  # keep relaying: one bad directory must not stop the others
                log.exception("spool relay: scan failed")
            changed = await self.watch.wait()

    async def _scan(self, changed: set[Path] | None) -> None:
        if changed is None or self.conns_dir in changed:
            await self._discover()
        for conn in list(self.connections.values()):
            if changed is not None and conn.up not in changed:
                continue
            if not conn.busy:
                await self._serve(conn)

    async def _discover(self) -> None:
        names = await asyncio.to_thread(os.listdir, self.conns_dir)
        present = set()
        for name in names:
            if name.startswith(spool.TMP):
                continue
            present.add(name)
            if name in self.connections:
                continue
            if len(self.connections) >= self.max_connections:
                log.warning("spool relay: %d connections, %s waits", len(self.connections), name)
                break
            await self._accept(name)
        for name in set(self.connections) - present:  # removed under us
            self.connections.pop(name).close()

    async def _accept(self, name: str) -> None:
        conn = _Connection(self, name, self.conns_dir / name)
        try:
            claimed = await asyncio.to_thread(conn.open)
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            log.warning("spool %s: cannot open: %s", name, exc)
            return
        if conn.identity is not None:
            conn.session = self.handler.open_session(conn.identity, conn.push, personality="spool")
            log.info("spool %s: %s (%s)", name, conn.identity.dn, conn.identity.kind)
        else:
            log.warning("spool %s: refused: %s", name, conn.refusal)
        self.connections[name] = conn
        assert self.watch is not None
        self.watch.add(conn.up)
        conn.recover(claimed)

    async def _serve(self, conn: _Connection) -> None:
        conn.busy = True
        try:
            try:
                names = await asyncio.to_thread(os.listdir, conn.up)
            except FileNotFoundError:
                self._drop(conn)
                return
            if spool.BYE in names:
                self._drop(conn, remove=True)
                return
            fresh = [n for n in names if n.isdigit()]
            if not fresh:
                return
            conn.last_seen = time.time()
            taken = await asyncio.to_thread(self._take, conn, fresh)
            for seq, data in taken:
                self.requests += 1
                conn.feed(seq, data)
        finally:
            conn.busy = False

    @staticmethod
    def _take(conn: _Connection, names: list[str]) -> list[tuple[int, bytes]]:
        out = []
        for seq in conn.take(names):
            path = conn.up / (spool.up_name(seq) + spool.CLAIMED)
            with contextlib.suppress(FileNotFoundError):
                out.append((seq, path.read_bytes()))
        return out

    def _drop(self, conn: _Connection, *, remove: bool = False) -> None:
        self.connections.pop(conn.name, None)
        conn.close()
        if self.watch is not None:
            self.watch.discard(conn.up)
        if remove:
            self._spawn(asyncio.to_thread(spool.remove_tree, conn.directory))
        log.info("spool %s: closed", conn.name)

    # -- writing answers (off the loop's thread, one task each)
    def write_reply(self, conn: _Connection, work: _File) -> None:
        conn.files.pop(work.seq, None)
        data = b"".join(work.frames)
        self.replies += 1
        self._spawn(asyncio.to_thread(self._write_reply, conn, work.seq, data))

    def _write_reply(self, conn: _Connection, seq: int, data: bytes) -> None:
        try:
            spool.write_atomic(conn.down, spool.reply_name(seq), data, sync=self.sync)
        except FileNotFoundError:
            return  # the client went away
        spool.unlink_quiet(conn.up / (spool.up_name(seq) + spool.CLAIMED))

    def write_event(self, conn: _Connection, name: str, data: bytes) -> None:
        async def write() -> None:
            try:
                await asyncio.to_thread(spool.write_atomic, conn.down, name, data, sync=self.sync)
            except FileNotFoundError:
                pass
            finally:
                conn.events_waiting = max(0, conn.events_waiting - 1)

        self._spawn(write())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._writes.add(task)
        task.add_done_callback(self._written)

    def _written(self, task: asyncio.Task[Any]) -> None:
        self._writes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("spool relay: write failed: %s", task.exception())

    # -- cleanup (a Loop's step)
    async def clean(self) -> None:
        """Remove connections whose client said bye or has been silent past ``stale``,
        and temporary files a crashed writer left."""
        removed = await asyncio.to_thread(self._clean_files, time.time())
        for name in removed:
            conn = self.connections.pop(name, None)
            if conn is not None:
                conn.close()
                if self.watch is not None:
                    self.watch.discard(conn.up)
        if removed:
            log.info("spool relay: removed %d stale connection(s)", len(removed))

    def _clean_files(self, now: float) -> list[str]:
        removed: list[str] = []
        spool.remove_stale_tmp(self.conns_dir, 600, now)
        for entry in os.scandir(self.conns_dir):
            if entry.name.startswith(spool.TMP) or not entry.is_dir():
                continue
            directory = Path(entry.path)
            newest = _newest(directory, now)
            conn = self.connections.get(entry.name)
            seen = conn.last_seen if conn is not None else 0.0
            if max(newest, seen) < now - self.stale:
                spool.remove_tree(directory)
                removed.append(entry.name)
                continue
            for sub in (spool.UP, spool.DOWN):
                spool.remove_stale_tmp(directory / sub, 600, now)
        return removed


def _newest(directory: Path, now: float) -> float:
    newest = 0.0
    for sub in (directory, directory / spool.UP, directory / spool.DOWN):
        with contextlib.suppress(OSError):
            newest = max(newest, sub.stat().st_mtime)
    return newest
