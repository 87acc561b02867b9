"""XRootD transfers in-process, through the XRootD client library (PyPI ``xrootd``: the
``XRootD.client`` bindings alien.py uses), driven from asyncio.

Every call is asynchronous on the library's side: a request is handed to the client with a
callback, which runs on one of the library's threads and resolves an asyncio future through
``loop.call_soon_threadsafe``; the event loop never waits on the network. What the library
does synchronously (a third-party ``CopyProcess``) runs in a worker thread, which it leaves
the GIL to. Local file I/O and hashing go to worker threads too. Connections are the
library's: one per server for the whole process, shared by every transfer (no process and no
TLS or login per file, which is what limited the former one-``xrdcp``-per-file engine to
~25 files/s).

- ``download``: open, reads of ``CHUNK`` bytes with ``INFLIGHT`` of them in flight, each
  written at its offset (``os.pwrite``) and hashed in order, so the md5 is known when the
  last byte lands (no second pass); ``offset`` resumes a partial file (its bytes are hashed
  first). A read that brings nothing for *stall* seconds ends the attempt (resumable).
- ``upload``: open ``delete|mkpath|posc`` (a broken upload leaves nothing, a retry
  overwrites its own earlier attempt: the PFN is this file's GUID path), pipelined writes,
  close; the md5 of what the SE stored is commit's question (``verify`` asks it here too).
- ``third_party``: ``CopyProcess`` with ``thirdparty='first'`` (the SEs move the bytes; the
  library falls back to streaming through this process when they cannot) and an end-to-end
  md5 check, bounded by its timeout; progress from the library's handler.
- ``stat``/``read_range``/``write_small``: what central asks of an SE itself (commit's check,
  a JDL, an archive's directory, an XML collection).

Retries are the caller's (``jalien.storage.cp``): it backs off, resumes, then tries the next
replica. The library is told to try a server once (``ConnectionRetry=1``): an unreachable SE
costs one connection window, not minutes. The envelope travels in ``authz`` exactly as
alien.py sends it (``transfer_url``). Debian's xrootd cannot check ALICE envelopes (that needs
ALICE's TokenAuthz plugin); the embedded SE enforces them.

``xrdcp`` is no longer used by jalien: everything above is done by the library.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import hashlib
import os
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from jalien.storage.envelope import is_xrootd

__all__ = [
    "XrdError",
    "XrdcpError",
    "XrdfsError",
    "download",
    "is_xrootd",
    "read_range",
    "size_of",
    "split_url",
    "stat",
    "third_party",
    "transfer_url",
    "upload",
    "write_small",
    "xrd_stat",
]

CHUNK = 8 << 20  # bytes per read or write request (xrdcp's default chunk)
INFLIGHT = 4  # requests of one transfer in flight at once (xrdcp's parallel chunks)
# seconds a checksum query may take: an SE computing many at once tells clients to wait
# (kXR_wait), which the library turns into "operation expired" past a request's timeout
CHECKSUM_WAIT = 300.0
NOT_FOUND, NOT_AUTHORIZED, IS_DIRECTORY, NO_SPACE, UNSUPPORTED = 3011, 3010, 3016, 3017, 3013
FATAL_ERRNOS = {NOT_FOUND, NOT_AUTHORIZED, IS_DIRECTORY, NO_SPACE, 3003, 3006, 3008}
# the library's settings (XRD_* in the environment wins: it is read by the library itself):
# one connection attempt per request, and a broken connection forgotten after 2 s instead of
# 30 min, so that our own retries (with backoff) reach an SE that came back
LIBRARY_SETTINGS = {"ConnectionRetry": 1, "ConnectionWindow": 15, "StreamErrorWindow": 2}


class XrdError(Exception):
    """One XRootD operation failed. *resumable*: worth another attempt on the same replica;
    *checksum*: the data arrived but its md5 differs; *missing*: the SE has no such file."""

    def __init__(
        self, message: str, resumable: bool = True, checksum: bool = False, missing: bool = False
    ) -> None:
        super().__init__(message)
        self.resumable = resumable
        self.checksum = checksum
        self.missing = missing


XrdcpError = XrdError  # the names the copy engine and commit's check used before
XrdfsError = XrdError


@functools.cache
def _client() -> Any:
    """The bindings, imported at first use (~15 ms, which no command but a transfer should
    pay at start-up) and configured once per process."""
    from XRootD import client  # deferred on purpose: start-up time

    for key, value in LIBRARY_SETTINGS.items():
        if f"XRD_{key.upper()}" not in os.environ:
            client.EnvPutInt(key, value)
    return client


def available() -> str:
    """ "" when the bindings load, else why not (a message for the user)."""
    try:
        _client()
    except ImportError as exc:
        return f"the XRootD client library is missing (pip install xrootd): {exc}"
    return ""


def transfer_url(url: str, envelope: str) -> str:
    """The URL a client opens: the envelope in ``authz``, as alien.py builds it."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}xrd.wantprot=unix&authz={envelope}"


def split_url(url: str) -> tuple[str, str]:
    """root://host:port//a/b?cgi -> ("root://host:port", "/a/b?cgi")."""
    parts = urlsplit(url)
    path = "/" + parts.path.lstrip("/")
    return f"{parts.scheme}://{parts.netloc}", path + (f"?{parts.query}" if parts.query else "")


def _error(status: Any, what: str) -> XrdError:
    """An XRootDStatus as an XrdError; the server's errno decides whether to retry."""
    errno = int(getattr(status, "errno", 0) or 0)
    message = str(getattr(status, "message", "") or status).strip()
    text = f"{what}: {message}" if message else what
    if errno == NOT_FOUND:
        return XrdError(text, resumable=False, missing=True)
    return XrdError(text, resumable=errno not in FATAL_ERRNOS)


def _submit(call: Callable[..., Any], *args: Any, **kw: Any) -> asyncio.Future[Any]:
    """*call*(*args*, callback=...) as a future of (status, response), resolved on the loop's
    thread. The callback holds the library's object (e.g. the File) until it has run."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(result: tuple[Any, Any]) -> None:
        if not future.done():
            future.set_result(result)

    def done(status: Any, response: Any, hostlist: Any = None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has ended: nobody waits any more
            loop.call_soon_threadsafe(settle, (status, response))

    try:
        status = call(*args, callback=done, **kw)
    except ValueError as exc:  # the bindings' "I/O operation on closed file": the SE went
        raise XrdError(f"the connection to the SE broke ({exc})") from None
    if not status.ok:  # refused before it was sent: no callback will come
        future.set_result((status, None))
    return future


async def _result(future: asyncio.Future[Any], what: str, wait: float) -> Any:
    """The response of a submitted request, or XrdError (a stall after *wait* seconds)."""
    try:
        status, response = await asyncio.wait_for(asyncio.shield(future), wait)
    except TimeoutError:
        raise XrdError(f"{what}: stalled, nothing for {wait:.0f} s") from None
    if not status.ok:
        raise _error(status, what)
    return response


def _close_soon(handle: Any) -> None:
    """Closes a File in the background (its callback keeps it alive until closed)."""
    with contextlib.suppress(Exception):
        handle.close(timeout=15, callback=lambda *_: handle)


def _timeout(seconds: float) -> int:
    """The library's per-request timeout (whole seconds, at least 1)."""
    return max(1, int(seconds + 0.999))


SMALL_BLOCK = 2 << 20  # bytes: written and hashed in one worker-thread call


def _write_and_hash(fd: int, data: bytes, offset: int, digest: Any) -> None:
    os.pwrite(fd, data, offset)
    digest.update(data)


async def _store(fd: int, data: bytes, offset: int, digest: Any) -> None:
    """A block written at its offset and added to the running md5, both at once in worker
    threads (both leave the GIL): the hash is in order because blocks are stored in order."""
    if digest is None:
        await asyncio.to_thread(os.pwrite, fd, data, offset)
        return
    if len(data) <= SMALL_BLOCK:  # one trip to a worker thread: a small file's one block
        await asyncio.to_thread(_write_and_hash, fd, data, offset, digest)
        return
    await asyncio.gather(
        asyncio.to_thread(os.pwrite, fd, data, offset), asyncio.to_thread(digest.update, data)
    )


def _hash_prefix(path: str, length: int) -> Any:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        left = length
        while left > 0 and (block := fh.read(min(left, 1 << 20))):
            digest.update(block)
            left -= len(block)
    return digest


class _Pace:
    """At most *rate* bytes/s (0: unlimited), like xrdcp's --xrate."""

    def __init__(self, rate: int) -> None:
        self.rate, self.start, self.moved = rate, time.monotonic(), 0

    async def moved_bytes(self, n: int) -> None:
        self.moved += n
        if self.rate > 0:
            ahead = self.moved / self.rate - (time.monotonic() - self.start)
            if ahead > 0:
                await asyncio.sleep(ahead)


async def download(
    url: str,
    part: str,
    *,
    size: int = -1,
    offset: int = 0,
    md5: str = "",
    stall: float = 30.0,
    on_bytes: Callable[[int], None] | None = None,
    chunk: int = CHUNK,
    inflight: int = INFLIGHT,
    rate: int = 0,
) -> None:
    """*url* (with its envelope) into *part*, from *offset* on (the bytes before it are
    kept); the whole file checked against *md5*. *on_bytes* gets the byte count of the file
    so far. Raises XrdError (``checksum`` on a mismatch, after removing *part*)."""
    client = _client()
    handle = client.File()
    wait = _timeout(stall)
    await _result(
        _submit(handle.open, url, client.flags.OpenFlags.READ, timeout=wait), "open", stall
    )
    fd = -1
    try:
        if size < 0:
            info = await _result(_submit(handle.stat, timeout=wait), "stat", stall)
            size = int(info.size)
        fd = os.open(part, os.O_WRONLY | os.O_CREAT, 0o644)
        os.ftruncate(fd, offset)
        digest = None
        if md5:
            digest = (
                await asyncio.to_thread(_hash_prefix, part, offset)
                if offset
                else hashlib.md5(usedforsecurity=False)
            )
        pace = _Pace(rate)
        pending: collections.deque[tuple[int, int, asyncio.Future[Any]]] = collections.deque()
        ahead = offset
        done = offset
        while done < size:
            while ahead < size and len(pending) < max(1, inflight):
                n = min(chunk, size - ahead)
                pending.append((ahead, n, _submit(handle.read, ahead, n, timeout=wait)))
                ahead += n
            at, n, future = pending.popleft()
            data = await _result(future, f"read at {at}", stall)
            if len(data) != n:
                raise XrdError(f"the SE sent {len(data)} bytes at {at}, not {n}")
            await _store(fd, data, at, digest)
            done = at + n
            if on_bytes is not None:
                on_bytes(done)
            await pace.moved_bytes(n)
    finally:
        if fd >= 0:
            os.close(fd)
        _close_soon(handle)
    if digest is not None and digest.hexdigest() != md5.lower():
        with contextlib.suppress(FileNotFoundError):
            os.unlink(part)
        raise XrdError(
            f"checksum mismatch (md5 {digest.hexdigest()}, expected {md5.lower()})",
            resumable=False,
            checksum=True,
        )


async def upload(
    src: str,
    url: str,
    *,
    size: int,
    md5: str = "",
    stall: float = 30.0,
    on_bytes: Callable[[int], None] | None = None,
    chunk: int = CHUNK,
    inflight: int = INFLIGHT,
    verify: bool = False,
) -> list[str]:
    """The local file *src* to *url* (with its write envelope); returns notes (e.g. "not
    verified by the SE"). With *verify*, the SE's md5 of what it stored is compared with
    *md5* (XrdError ``checksum`` when it differs). cp leaves that to ``commit``, which asks
    the SE the same question before it registers the replica: asked twice, an SE that
    computes checksums on demand (Debian's xrootd, a few at a time) makes clients wait."""
    client = _client()
    flags = client.flags
    handle = client.File()
    wait = _timeout(stall)
    # DELETE (truncate an existing file, xrdcp -f) and not NEW (which fails on one): a retry
    # may find its own earlier attempt, at this file's own GUID path
    how = flags.OpenFlags.DELETE | flags.OpenFlags.MAKEPATH | flags.OpenFlags.POSC
    mode = flags.AccessMode.UR | flags.AccessMode.UW | flags.AccessMode.GR | flags.AccessMode.OR
    await _result(_submit(handle.open, url, how, mode, timeout=wait), "open", stall)
    closed = False
    fd = os.open(src, os.O_RDONLY)
    try:
        pending: collections.deque[tuple[int, bytes, asyncio.Future[Any]]] = collections.deque()
        ahead = 0
        while ahead < size or pending:
            while ahead < size and len(pending) < max(1, inflight):
                data = await asyncio.to_thread(os.pread, fd, min(chunk, size - ahead), ahead)
                if not data:
                    raise XrdError(f"{src} is shorter than {size} bytes", resumable=False)
                # the bytes stay referenced until the SE has them
                pending.append((ahead, data, _submit(handle.write, data, ahead, timeout=wait)))
                ahead += len(data)
            at, data, future = pending.popleft()
            await _result(future, f"write at {at}", stall)
            if on_bytes is not None:
                on_bytes(at + len(data))
        await _result(_submit(handle.close, timeout=wait), "close", stall)
        closed = True
    finally:
        os.close(fd)
        if not closed:
            _close_soon(handle)
    if not md5 or not verify:
        return []
    try:
        stored = await _checksum(url, CHECKSUM_WAIT)
    except XrdError as exc:
        if "[3013]" in str(exc) or "not supported" in str(exc).lower():
            return ["the SE cannot compute checksums: not verified there"]
        raise
    if stored and stored != md5.lower():
        raise XrdError(
            f"checksum mismatch: the SE stored md5 {stored}, not {md5.lower()}",
            resumable=False,
            checksum=True,
        )
    return [] if stored else ["the SE keeps no md5: not verified there"]


async def _checksum(url: str, stall: float = 30.0) -> str:
    """The md5 the SE computes for *url* ("" when it answers with another kind)."""
    client = _client()
    server, path = split_url(url)
    fs = client.FileSystem(server)
    answer = await _result(
        _submit(fs.query, client.flags.QueryCode.CHECKSUM, path, timeout=_timeout(stall)),
        "query checksum",
        stall,
    )
    text = answer.decode(errors="replace") if isinstance(answer, bytes) else str(answer)
    kind, _, value = text.replace("\x00", "").strip().partition(" ")
    return value.strip().lower() if kind.lower() == "md5" else ""


async def stat(url: str, timeout: float = 30.0) -> tuple[int, str]:
    """(size, md5) of the file at a root:// URL (its envelope in the query); md5 is "" when
    the SE keeps none (no checksums, or another kind). Raises XrdError (``missing`` when the
    SE has no such file)."""
    client = _client()
    server, path = split_url(url)
    fs = client.FileSystem(server)
    info = await _result(
        _submit(fs.stat, path, timeout=_timeout(timeout)), "stat", timeout
    )  # fmt: skip
    try:
        md5 = await _checksum(url, max(timeout, CHECKSUM_WAIT))
    except XrdError as exc:
        if exc.missing:
            raise
        md5 = ""  # e.g. [3013]: the SE computes no checksums
    return int(info.size), md5


async def size_of(url: str, timeout: float = 30.0) -> int:
    """The size of the file at a root:// URL (no checksum asked). Raises XrdError."""
    client = _client()
    server, path = split_url(url)
    fs = client.FileSystem(server)
    info = await _result(_submit(fs.stat, path, timeout=_timeout(timeout)), "stat", timeout)
    return int(info.size)


xrd_stat = stat  # the name commit's check (jalien.storage.replica_check) uses


async def read_range(url: str, start: int, length: int, timeout: float = 60.0) -> bytes:
    """*length* bytes from *start* (fewer at the end of the file); *length* < 0: the whole
    file. Raises XrdError."""
    client = _client()
    handle = client.File()
    wait = _timeout(timeout)
    await _result(
        _submit(handle.open, url, client.flags.OpenFlags.READ, timeout=wait), "open", timeout
    )
    try:
        if length < 0:
            info = await _result(_submit(handle.stat, timeout=wait), "stat", timeout)
            length = max(int(info.size) - start, 0)
        chunks: list[bytes] = []
        got = 0
        while got < length:
            data = await _result(
                _submit(handle.read, start + got, min(CHUNK, length - got), timeout=wait),
                "read",
                timeout,
            )
            if not data:
                break
            chunks.append(data)
            got += len(data)
        return b"".join(chunks)
    finally:
        _close_soon(handle)


async def write_small(url: str, data: bytes, timeout: float = 60.0) -> None:
    """*data* as the whole file at *url* (a write envelope in its query). Raises XrdError."""
    client = _client()
    flags = client.flags
    handle = client.File()
    wait = _timeout(timeout)
    how = flags.OpenFlags.DELETE | flags.OpenFlags.MAKEPATH
    mode = flags.AccessMode.UR | flags.AccessMode.UW | flags.AccessMode.GR | flags.AccessMode.OR
    await _result(_submit(handle.open, url, how, mode, timeout=wait), "open", timeout)
    try:
        if data:
            await _result(_submit(handle.write, data, 0, timeout=wait), "write", timeout)
        await _result(_submit(handle.close, timeout=wait), "close", timeout)
    except BaseException:
        _close_soon(handle)
        raise


class _CopyHandler:
    """CopyProcess's progress handler: bytes to *on_bytes*, cancelled past the deadline."""

    def __init__(self, on_bytes: Callable[[int], None] | None, deadline: float) -> None:
        self.on_bytes, self.deadline = on_bytes, deadline
        self.loop = asyncio.get_running_loop()

    def begin(self, job_id: int, total: int, source: Any, target: Any) -> None:
        pass

    def end(self, job_id: int, results: Any) -> None:
        pass

    def update(self, job_id: int, processed: int, total: int) -> None:
        if self.on_bytes is not None:
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self.on_bytes, processed)

    def should_cancel(self, job_id: int) -> bool:
        return time.monotonic() > self.deadline


async def third_party(
    src: str,
    dst: str,
    *,
    md5: str = "",
    timeout: float = 3600.0,
    on_bytes: Callable[[int], None] | None = None,
) -> list[str]:
    """A copy between two XRootD SEs (each URL with its envelope): third-party where the SEs
    can, else streamed through this process by the library; end-to-end md5 check. Returns
    notes; raises XrdError."""
    client = _client()
    process = client.CopyProcess()
    checks: dict[str, Any] = {}
    if md5:
        checks = {"checksummode": "end2end", "checksumtype": "md5", "checksumpreset": md5.lower()}
    process.add_job(src, dst, force=True, posc=True, thirdparty="first", **checks)
    handler = _CopyHandler(on_bytes, time.monotonic() + timeout)

    def run() -> tuple[Any, Any]:
        prepared = process.prepare()
        if not prepared.ok:
            return prepared, []
        return process.run(handler)

    status, results = await asyncio.to_thread(run)
    job = results[0] if results else {}
    job_status = job.get("status", status) if isinstance(job, dict) else status
    for outcome in (status, job_status):
        if not outcome.ok:
            text = str(getattr(outcome, "message", "") or outcome)
            if "[3013]" in text and "chksum" in text.lower():
                return ["the SE cannot compute checksums: not verified there"]
            if time.monotonic() > handler.deadline:
                raise XrdError(f"timed out after {timeout:.0f} s")
            if "checksum" in text.lower() and "mismatch" in text.lower():
                raise XrdError(f"checksum mismatch ({text})", resumable=False, checksum=True)
            raise _error(outcome, "third-party copy")
    return []


_CLI_NAMES = {"CONNECT_ENV", "RESOLVER_ENV", "xrdcp", "xrdcp_path", "xrdfs_path"}


def __getattr__(name: str) -> Any:
    """The command-line helpers' former home: they live in jalien.storage.xrd_cli now."""
    if name in _CLI_NAMES:
        from jalien.storage import xrd_cli  # only for the old names

        return getattr(xrd_cli, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
