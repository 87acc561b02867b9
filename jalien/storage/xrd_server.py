"""The embedded SE's XRootD listener (``root://host:port//se/...``): a thin asyncio server
around ``xrd_session.Session`` (the protocol without I/O), with the same rules as the HTTPS
SE (``se_access``: envelope, PFN path -> local file, recorded md5).

- ``kXR_open`` checks the envelope in the path's ``authz`` parameter (as alien.py sends it:
  ``?xrd.wantprot=unix&authz=<envelope>``): read -> a ``read`` envelope; new/update/delete
  -> a ``write`` envelope, which books the size. A refused open answers kXR_NotAuthorized
  with ``jalien SE: <reason>``; a bad path (``..``, a dot name, outside the root) kXR_NotFound.
- Writes go to a temporary name (``.<name>.<hex>.part``) beside the file, with a running
  md5 while they come in order; at ``kXR_close`` the size must be the booked one and the
  md5 the envelope's (when it names one), the md5 is recorded with the file and only then
  is the file linked under its name (write-once: an existing file is kXR_ItExists). A byte
  beyond the booked size is refused at once; a connection that ends with a file open for
  writing leaves nothing (persist on successful close, always).
- Reads of 16 KiB or more go by ``os.sendfile`` from the file to the socket (plain TCP);
  ``kXR_readv`` reads its pieces on a worker thread (an element beyond the end of the
  file is refused, "readv past EOF", as xrootd does). Other file operations (open, write,
  close, checksum, listing) run on worker threads; the event loop only moves bytes.
- ``kXR_stat``, ``kXR_query`` checksum (``md5 <hex>``: the md5 the SE recorded) take a
  read, write or stat envelope, or none for a path this connection opened with one (xrdcp
  asks the destination's checksum without the URL's CGI); ``kXR_rm`` a delete envelope;
  ``kXR_dirlist`` an envelope whose PFN is the directory (read, stat or list);
  ``kXR_locate`` answers this server.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import socket
import stat
import time
from pathlib import Path
from urllib.parse import unquote

from jalien._fast import xrdconst as X
from jalien._fast import xrdproto
from jalien._fast.errors import ProtocolError
from jalien.storage.envelope import (
    DELETE,
    READ,
    STAT,
    WRITE,
    EnvelopeError,
    EnvelopeVerifier,
    Grant,
)
from jalien.storage.se_access import (
    CHUNK,
    grant_for,
    local_path,
    record_md5,
    same_path,
    stored_replica,
)
from jalien.storage.xrd_session import (
    Answer,
    Checksum,
    Close,
    Dirlist,
    Event,
    Locate,
    Open,
    Read,
    ReadV,
    Rm,
    Session,
    Stat,
    Sync,
    Write,
    cgi_value,
    stat_info,
    stat_text,
)

log = logging.getLogger("jalien.se.xrootd")
SENDFILE_MIN = 16 * 1024  # smaller reads are copied (one send with their header)
RECV_SIZE = 1 << 20
LIST = "list"  # central's listing envelope (dark data)
_WRITING = X.kXR_new | X.kXR_open_updt | X.kXR_delete | X.kXR_open_apnd | X.kXR_open_wrto


class _Refused(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class _File:
    """One open file: for reading (fd, size) or for writing (the temporary name, the grant,
    the final name and the running md5)."""

    __slots__ = ("failed", "fd", "final", "grant", "md5", "next", "size", "temp")

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size
        self.grant: Grant | None = None
        self.temp: Path | None = None
        self.final: Path | None = None
        self.md5: hashlib._Hash | None = None
        self.next = 0  # the offset a write in order continues at
        self.failed = ""


def _open_read(local: Path) -> _File:
    fd = os.open(local, os.O_RDONLY | os.O_CLOEXEC)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise _Refused(X.kXR_isDirectory, "jalien SE: not a file")
    with contextlib.suppress(OSError, AttributeError):  # a larger readahead for sendfile
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    return _File(fd, st.st_size)


def _open_write(local: Path, grant: Grant) -> _File:
    if local.exists():
        raise _Refused(X.kXR_ItExists, f"jalien SE: {grant.pfn} exists (write-once)")
    local.parent.mkdir(parents=True, exist_ok=True)
    temp = local.with_name(f".{local.name}.{secrets.token_hex(4)}.part")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    file = _File(fd, 0)
    file.grant, file.temp, file.final = grant, temp, local
    file.md5 = hashlib.md5(usedforsecurity=False)
    return file


def _write(file: _File, offset: int, data: bytes) -> None:
    view = memoryview(data)
    at = offset
    while view:
        n = os.pwrite(file.fd, view, at)
        view, at = view[n:], at + n
    if file.md5 is not None:
        if offset == file.next:
            file.md5.update(data)
            file.next += len(data)
        else:
            file.md5 = None  # out of order: hashed at close
    file.size = max(file.size, offset + len(data))


def _finish(file: _File) -> str:
    """Checks a written file against its envelope and links it under its name; its md5."""
    assert file.grant is not None and file.temp is not None and file.final is not None
    grant = file.grant
    try:
        size = os.fstat(file.fd).st_size
        if size != grant.size:
            raise _Refused(
                X.kXR_IOError, f"jalien SE: got {size} bytes, the envelope books {grant.size}"
            )
        if file.md5 is not None and file.next == size:
            md5 = file.md5.hexdigest()
        else:
            digest = hashlib.md5(usedforsecurity=False)
            with open(file.temp, "rb") as fh:
                while block := fh.read(CHUNK):
                    digest.update(block)
            md5 = digest.hexdigest()
        if grant.md5 and md5 != grant.md5.lower():
            raise _Refused(
                X.kXR_ChkSumErr, f"jalien SE: md5 {md5} differs from the envelope's {grant.md5}"
            )
        os.fsync(file.fd)
        if not record_md5(file.fd, md5):
            log.warning("cannot record md5s on %s: commit will hash the file", file.temp.parent)
        try:
            os.link(file.temp, file.final)  # never replaces an existing file
        except FileExistsError:
            raise _Refused(X.kXR_ItExists, f"jalien SE: {grant.pfn} exists (write-once)") from None
        return md5
    finally:
        _abort(file)


def _abort(file: _File) -> None:
    with contextlib.suppress(OSError):
        os.close(file.fd)
    if file.temp is not None:
        file.temp.unlink(missing_ok=True)


def _readv(chunks: list[tuple[_File, int, int, int]]) -> bytes:
    parts: list[bytes] = []
    for file, fh, length, offset in chunks:
        data = os.pread(file.fd, length, offset) if length else b""
        if len(data) < length:  # as xrootd: XrdCl waits for whole elements
            raise _Refused(X.kXR_IOError, "jalien SE: readv past EOF")
        parts.append(xrdproto.readv_element(fh, len(data), offset))
        parts.append(data)
    return b"".join(parts)


def _listing(local: Path, with_stat: bool) -> bytes:
    if not local.is_dir():
        raise _Refused(
            X.kXR_NotFound if not local.exists() else X.kXR_NotFile, "jalien SE: not a directory"
        )
    lines: list[str] = [".", "0 0 0 0"] if with_stat else []
    with os.scandir(local) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue  # our temporary names
            lines.append(entry.name)
            if with_stat:
                lines.append(stat_text(entry.stat()))
    return "\n".join(lines).encode("utf-8", "surrogateescape") + b"\x00"


class XRootDServer:
    def __init__(self, root: Path, verifier: EnvelopeVerifier) -> None:
        self.root = Path(root).resolve()
        self.verifier = verifier
        self._listeners: list[socket.socket] = []
        self._tasks: set[asyncio.Task[None]] = set()

    # -- serving
    async def start(self, hosts: list[str], port: int, *, reuse_port: bool = False) -> int:
        """Listen on every host (port 0: the first picks); *reuse_port*: SO_REUSEPORT, the
        port shared with the other workers of a jcentral."""
        self.root.mkdir(parents=True, exist_ok=True)
        bound = port
        for host in hosts:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind((host, bound))
            except OSError:
                sock.close()
                raise
            sock.listen(1024)
            sock.setblocking(False)
            if not bound:
                bound = sock.getsockname()[1]
            self._listeners.append(sock)
            self._spawn(self._accept(sock))
        return bound

    def _spawn(self, coro) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for sock in self._listeners:
            sock.close()
        self._listeners.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _accept(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, _ = await loop.sock_accept(listener)
            except OSError as exc:
                if listener.fileno() < 0:
                    return
                log.warning("accept: %s", exc)
                await asyncio.sleep(0.1)
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._spawn(_Connection(self, sock).run())


class _Connection:
    def __init__(self, server: XRootDServer, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.session: Session[_File] = Session()
        self.opened: dict[str, Grant] = {}  # PFN path -> the grant an open here showed

    async def run(self) -> None:
        buf = bytearray(RECV_SIZE)
        view = memoryview(buf)
        try:
            while True:
                n = await self.loop.sock_recv_into(self.sock, buf)
                if not n:
                    return
                for event in self.session.receive(view[:n]):
                    await self.handle(event)
        except ProtocolError as exc:
            log.info("closing an XRootD connection: %s", exc)
        except (ConnectionError, OSError) as exc:
            log.debug("XRootD connection ended: %s", exc)
        finally:
            files = list(self.session.files.values())
            self.session.files.clear()
            for file in files:
                _abort(file) if file.temp is not None else os.close(file.fd)
            self.sock.close()

    # -- sending
    async def send(self, data: bytes, more: bool = False) -> None:
        try:
            n = self.sock.send(data, socket.MSG_MORE if more else 0)
        except BlockingIOError:
            n = 0
        if n < len(data):
            await self.loop.sock_sendall(self.sock, memoryview(data)[n:])

    async def sendfile(self, fd: int, offset: int, count: int) -> None:
        out = self.sock.fileno()
        while count > 0:
            try:
                n = os.sendfile(out, fd, offset, count)
            except BlockingIOError:
                await self._writable(out)
                continue
            if n == 0:  # the file is shorter than it was: the answer cannot be completed
                raise ConnectionError("file shrank while being sent")
            offset += n
            count -= n

    async def _writable(self, fd: int) -> None:
        waiter: asyncio.Future[None] = self.loop.create_future()

        def ready() -> None:
            if not waiter.done():
                waiter.set_result(None)

        self.loop.add_writer(fd, ready)
        try:
            await waiter
        finally:
            self.loop.remove_writer(fd)

    async def refuse(self, sid: int, code: int, message: str) -> None:
        await self.send(self.session.fail(sid, code, message).data)

    # -- requests
    async def handle(self, event: Event) -> None:
        try:
            if type(event) is Read:
                await self.read(event)
            elif type(event) is Answer:
                await self.send(event.data)
            elif type(event) is Write:
                await self.write(event)
            elif type(event) is Open:
                await self.open(event)
            elif type(event) is Close:
                await self.close(event)
            elif type(event) is ReadV:
                await self.readv(event)
            elif type(event) is Sync:
                await self.sync(event)
            elif type(event) is Stat:
                await self.stat(event)
            elif type(event) is Checksum:
                await self.checksum(event)
            elif type(event) is Rm:
                await self.rm(event)
            elif type(event) is Dirlist:
                await self.dirlist(event)
            elif type(event) is Locate:
                host, port = self.sock.getsockname()[:2]
                await self.send(
                    self.session.ok(event.streamid, self.session.locate_body(host, port))
                )
        except _Refused as exc:
            await self.refuse(event.streamid, exc.code, str(exc))  # type: ignore[union-attr]
        except EnvelopeError as exc:
            what = getattr(event, "path", "")
            log.info("refused %s %s: %s", type(event).__name__.lower(), what, exc)
            code = X.kXR_NotFound if exc.status == 404 else X.kXR_NotAuthorized
            await self.refuse(event.streamid, code, f"jalien SE: {exc}")  # type: ignore[union-attr]
        except FileNotFoundError:
            await self.refuse(event.streamid, X.kXR_NotFound, "jalien SE: no such file")  # type: ignore[union-attr]
        except IsADirectoryError:
            await self.refuse(event.streamid, X.kXR_isDirectory, "jalien SE: is a directory")  # type: ignore[union-attr]
        except NotADirectoryError:
            await self.refuse(event.streamid, X.kXR_NotFound, "jalien SE: no such file")  # type: ignore[union-attr]
        except (ConnectionError, ProtocolError):
            raise
        except OSError as exc:
            log.warning("XRootD %s: %s", type(event).__name__, exc)
            await self.refuse(event.streamid, X.kXR_IOError, f"jalien SE: {exc.strerror or exc}")  # type: ignore[union-attr]

    def _grant(self, path: str, cgi: str, allowed: tuple[str, ...]) -> tuple[Grant, Path]:
        envelope = unquote(cgi_value(cgi, "authz"))
        opened = self.opened.get(same_path(path)) if not envelope else None
        if opened is not None and opened.access in allowed and opened.expires >= time.time():
            grant = opened  # what this connection opened: xrdcp's checksum query has no CGI
        else:
            grant = grant_for(self.server.verifier, envelope, path, allowed)
        return grant, local_path(self.server.root, path)

    def _file(self, fh: int, writing: bool | None = None) -> _File:
        file = self.session.file(fh)
        if file is None:
            raise _Refused(X.kXR_FileNotOpen, "jalien SE: the file is not open")
        if writing is not None and (file.temp is not None) != writing:
            raise _Refused(
                X.kXR_InvalidRequest,
                f"jalien SE: the file is open for {'writing' if file.temp else 'reading'}",
            )
        return file

    async def open(self, event: Open) -> None:
        writing = bool(event.options & _WRITING)
        grant, local = self._grant(event.path, event.cgi, (WRITE,) if writing else (READ,))
        if writing:
            if grant.size < 0:
                raise EnvelopeError("the envelope books no size: ask central for a new one")
            file = await self.loop.run_in_executor(None, _open_write, local, grant)
        else:
            file = await self.loop.run_in_executor(None, _open_read, local)
        fh = self.session.add_file(file)
        if len(self.opened) >= 64:
            self.opened.clear()
        self.opened[same_path(event.path)] = grant
        st = os.fstat(file.fd) if event.options & X.kXR_retstat else None
        await self.send(self.session.ok(event.streamid, self.session.open_body(fh, st)))

    async def read(self, event: Read) -> None:
        file = self._file(event.fh, writing=False)
        n = max(0, min(event.length, file.size - event.offset))
        if n < SENDFILE_MIN:
            data = os.pread(file.fd, n, event.offset) if n else b""
            await self.send(self.session.ok(event.streamid, data))
            return
        await self.send(xrdproto.response_header(event.streamid, X.kXR_ok, n), more=True)
        await self.sendfile(file.fd, event.offset, n)

    async def readv(self, event: ReadV) -> None:
        chunks = [(self._file(fh, writing=False), fh, n, off) for fh, n, off in event.chunks]
        body = await self.loop.run_in_executor(None, _readv, chunks)
        await self.send(self.session.ok(event.streamid, body))

    async def write(self, event: Write) -> None:
        file = self._file(event.fh, writing=True)
        assert file.grant is not None
        if file.failed:
            raise _Refused(X.kXR_IOError, file.failed)
        if event.offset + len(event.data) > file.grant.size:
            file.failed = f"jalien SE: more than the {file.grant.size} bytes the envelope books"
            raise _Refused(X.kXR_NoSpace, file.failed)
        await self.loop.run_in_executor(None, _write, file, event.offset, event.data)
        await self.send(self.session.ok(event.streamid))

    async def sync(self, event: Sync) -> None:
        file = self._file(event.fh)
        if file.temp is not None:
            await self.loop.run_in_executor(None, os.fsync, file.fd)
        await self.send(self.session.ok(event.streamid))

    async def close(self, event: Close) -> None:
        file = self._file(event.fh)
        self.session.remove_file(event.fh)
        if file.temp is None:
            os.close(file.fd)
        else:
            if file.failed:
                _abort(file)
                raise _Refused(X.kXR_IOError, file.failed)
            md5 = await self.loop.run_in_executor(None, _finish, file)
            log.info("stored %s (%d bytes, md5 %s) over XRootD", file.final, file.size, md5)
        await self.send(self.session.ok(event.streamid))

    async def stat(self, event: Stat) -> None:
        if not event.path:
            st = os.fstat(self._file(event.fh).fd)
        else:
            _, local = self._grant(event.path, event.cgi, (READ, WRITE, STAT))
            st = await self.loop.run_in_executor(None, os.stat, local)
        await self.send(self.session.ok(event.streamid, stat_info(st)))

    async def checksum(self, event: Checksum) -> None:
        _, local = self._grant(event.path, event.cgi, (READ, WRITE, STAT))
        stored = await self.loop.run_in_executor(None, stored_replica, local)
        await self.send(self.session.ok(event.streamid, f"md5 {stored.md5}".encode() + b"\x00"))

    async def rm(self, event: Rm) -> None:
        _, local = self._grant(event.path, event.cgi, (DELETE,))
        await self.loop.run_in_executor(None, os.unlink, local)
        await self.send(self.session.ok(event.streamid))

    async def dirlist(self, event: Dirlist) -> None:
        _, local = self._grant(event.path, event.cgi, (READ, STAT, LIST))
        body = await self.loop.run_in_executor(None, _listing, local, event.with_stat)
        await self.send(self.session.ok(event.streamid, body))
