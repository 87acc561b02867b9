"""The client's copy engine (``cp``): grid -> local and local -> grid through SEs, with
central only authorizing (``access``) and registering (``commit``).

- Sources are expanded first: a glob over the catalogue (``output/*/*.zip``) is one ``find -r``
  round trip; local globs are expanded locally. Then up to *threads* files move at once; their
  ``access`` requests travel pipelined on the one multiplexed connection, a few files ahead
  of the transfers (``LOOKAHEAD``), so that even ``-T 1`` never waits for an envelope.
- Downloads skip a destination that already has the size and md5 (the size is the fast
  path: a different size is never hashed), write to ``<dst>.jalien-part``, resume it by byte
  range after a broken transfer, retry the same replica with backoff, then the next replica
  (closest first, as central ordered them), verify size and md5, and only then rename to the
  final name. A replica with a wrong checksum is reported and the next one used.
- Uploads hash the file once, ask for write envelopes (``-s size -m md5`` and the specs, e.g.
  ``disk:2``), PUT to every SE at once and commit the replicas that landed.
- A stall watchdog (no byte for *stall* seconds) and a timeout that grows with the size end a
  stuck transfer; before a file is declared failed the destination is looked at once more.
- XRootD replicas (``root://``) move in this process through the XRootD client library
  (jalien.storage.xrd): no process per file, the md5 computed while the bytes land; HTTPS
  replicas through aiohttp. A grid -> grid copy between XRootD SEs is a third-party copy.

``copy()`` returns a CopyReport (per-file results, a summary line); ``progress`` is an
optional object with ``add(name, total)``, ``advance(name, n)`` and ``done(name)`` (the CLI
passes a rich display on a terminal).
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import hashlib
import os
import re
import shutil
import ssl
import tempfile
import time
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from jalien.storage import xrd
from jalien.storage.archive import ArchiveError, read_member, split_member
from jalien.storage.xrd import XrdError, is_xrootd, transfer_url
from jalien.wire import site_api
from jalien.wire.messages import Reply, Request
from jalien.wire.site_api import AccessGrant, AccessRequest

CHUNK = 1 << 20
PART = ".jalien-part"
LOOKAHEAD = 16  # downloads: access requests in flight beyond the transfer slots


class Central(Protocol):
    async def call(self, command: str, *options: str, timeout: float | None = None) -> Reply: ...
    async def request(self, request: Request, timeout: float | None = None) -> Reply: ...


@dataclass
class Granted:
    """central's answer to a typed access: the grants, or the exit code and error."""

    grants: list[AccessGrant]
    exitcode: int = 0
    error: str = ""


async def _access(central: Central, wanted: AccessRequest) -> Granted:
    """``access`` as a typed site call (wire.site_api): its kind is also its one option,
    which central's policy reads."""
    request = Request(command="access", options=[wanted.access], data=[site_api.encode(wanted)])
    reply = await central.request(request)
    if reply.exitcode:
        return Granted([], reply.exitcode, reply.error)
    try:
        return Granted([site_api.decode(d, AccessGrant) for d in reply.data if d is not None])
    except site_api.SiteApiError as exc:
        return Granted([], 22, f"central's access answer: {exc}")


def _read(central: Central, lfn: str) -> Awaitable[Granted]:
    return _access(central, AccessRequest(access="read", lfn=lfn))


def _write(job: _Job, opts: Options) -> AccessRequest:
    specs = [opts.specs] if opts.specs else []
    return AccessRequest(access="write", lfn=job.dst, size=job.size, md5=job.md5, specs=specs)


class Progress(Protocol):
    def add(self, name: str, total: int) -> None: ...
    def advance(self, name: str, n: int) -> None: ...
    def done(self, name: str) -> None: ...


class _NoProgress:
    def add(self, name: str, total: int) -> None: ...
    def advance(self, name: str, n: int) -> None: ...
    def done(self, name: str) -> None: ...


@dataclass
class Options:
    threads: int = 4
    specs: str = "disk:1"  # where uploads go (alien.py uses disk:2)
    retries: int = 4  # attempts per replica (resuming after the first)
    backoff: float = 0.5  # seconds, doubled after each failed attempt
    stall: float = 30.0  # seconds without a byte
    min_rate: float = 256 * 1024  # bytes/s: the timeout is 60 s + size / min_rate
    ssl: ssl.SSLContext | None = None
    max_rate: int = 0  # bytes/s per XRootD download, 0: unlimited (as xrdcp's --xrate)
    chunk: int = xrd.CHUNK  # bytes per XRootD request


@dataclass
class FileResult:
    src: str
    dst: str
    status: str  # copied | skipped | failed
    size: int = 0
    error: str = ""
    notes: list[str] = field(default_factory=list)  # e.g. replicas that failed first


@dataclass
class CopyReport:
    results: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def exitcode(self) -> int:
        return 1 if self.count("failed") or not self.results else 0

    def summary(self) -> str:
        moved = sum(r.size for r in self.results if r.status == "copied")
        rate = moved / self.seconds / 1e6 if self.seconds > 0 else 0.0
        return (
            f"cp: {self.count('copied')} copied ({moved} bytes, {rate:.1f} MB/s), "
            f"{self.count('skipped')} skipped, {self.count('failed')} failed "
            f"in {self.seconds:.2f} s"
        )


class TransferError(Exception):
    """One attempt failed; *resumable* means the partial file is worth keeping."""

    def __init__(self, message: str, resumable: bool = True) -> None:
        super().__init__(message)
        self.resumable = resumable


def is_local(path: str) -> bool:
    return path.startswith("file:")


def local_path(path: str) -> str:
    return path[len("file:") :] if path.startswith("file:") else path


def grid_path(path: str) -> str:
    for prefix in ("alien://", "alien:"):
        if path.startswith(prefix):
            return path[len(prefix) :]
    return path


def file_md5(path: str | os.PathLike[str]) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def glob_regex(pattern: str) -> str:
    """A catalogue glob (``*/*.zip``) as the regex ``find -r`` takes, anchored at both ends."""
    out = []
    for ch in pattern:
        out.append({"*": "[^/]*", "?": "[^/]"}.get(ch, re.escape(ch)))
    return "".join(out) + "$"


@dataclass
class _Job:
    src: str
    dst: str
    size: int = -1
    md5: str = ""


def _timeout_for(size: int, opts: Options) -> float:
    return 60.0 + max(size, 0) / opts.min_rate


async def copy(
    central: Central,
    sources: Sequence[str],
    dest: str,
    options: Options | None = None,
    progress: Progress | None = None,
    errors: Any = None,
) -> CopyReport:
    """Copy *sources* to *dest* (``file:`` marks a local path; anything else is an LFN)."""
    opts = options or Options()
    progress = progress or _NoProgress()
    start = time.monotonic()
    report = CopyReport()
    work: Callable[..., Awaitable[FileResult]]
    if is_local(dest):
        jobs, failed = await _plan_download(central, sources, dest)
        work = _download
    elif all(is_local(s) for s in sources):
        jobs, failed = await _plan_upload(central, sources, dest)
        work = _upload
    elif not any(is_local(s) for s in sources):
        jobs, failed = await _plan_replicate(central, sources, dest)
        work = _replicate
    else:
        raise ValueError("cp: the sources must be all local (file:) or all on the grid")
    report.results.extend(failed)
    limit = asyncio.Semaphore(max(1, opts.threads))
    # downloads ask for the next files' envelopes while earlier files move: a bounded window
    # ahead of the transfers (envelopes are short-lived, so never the whole list at once)
    window = asyncio.Semaphore(max(1, opts.threads) + LOOKAHEAD)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=15, sock_read=opts.stall)
    connector = aiohttp.TCPConnector(ssl=opts.ssl if opts.ssl is not None else True, limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:

        async def one(job: _Job) -> FileResult:
            async with window:
                ahead = None
                if work is _download:
                    ahead = asyncio.ensure_future(_read(central, job.src))
                try:
                    async with limit:
                        if ahead is not None:
                            return await _download(central, http, job, opts, progress, ahead)
                        return await work(central, http, job, opts, progress)
                except Exception as exc:  # one file's failure never stops the others
                    return FileResult(job.src, job.dst, "failed", error=f"{exc}")
                finally:
                    if ahead is not None and not ahead.done():
                        ahead.cancel()
                    elif ahead is not None and not ahead.cancelled():
                        ahead.exception()  # looked at: a skipped file's unused answer

        report.results.extend(await asyncio.gather(*(one(j) for j in jobs)))
    report.seconds = time.monotonic() - start
    if errors is not None:
        for result in report.results:
            if result.status == "failed":
                print(f"cp: {result.src}: {result.error}", file=errors)
    return report


# -- grid -> local
async def _expand_grid(
    central: Central, sources: Sequence[str]
) -> tuple[list[_Job], list[FileResult], bool]:
    """Catalogue sources as jobs whose ``dst`` is the name relative to where they land (the
    path below a glob's fixed part, or the base name); *many* when a directory is implied."""
    many = len(sources) > 1 or any("*" in s or "?" in s for s in sources)
    jobs: list[_Job] = []
    failed: list[FileResult] = []
    for raw in sources:
        src = grid_path(raw)
        if "*" in src or "?" in src:
            head = src[: min(i for i in (src.find("*"), src.find("?")) if i >= 0)]
            base = head.rpartition("/")[0] or "/"
            pattern = src[len(base) :].lstrip("/")
            found = await central.call("find", "-f", "-r", base, glob_regex(pattern))
            if found.exitcode != 0 or not found.results:
                failed.append(FileResult(raw, "", "failed", error="no file matches"))
                continue
            if not base.startswith("/"):
                base = found.metadata.get("currentdir", "/") + base
            prefix = os.path.normpath(base).rstrip("/") + "/"
            for rec in found.results:
                lfn = rec["lfn"]
                below = lfn[len(prefix) :] if lfn.startswith(prefix) else lfn.lstrip("/")
                jobs.append(_Job(lfn, below, int(rec["size"]), rec.get("md5", "")))
            continue
        archive, member = split_member(src)
        if member:  # archive.zip#member: read out of the archive (its size from access)
            st = await central.call("stat", archive)
            if st.exitcode != 0 or not st.results:
                failed.append(FileResult(raw, "", "failed", error=st.error or "not found"))
                continue
            jobs.append(_Job(f"{st.results[0]['lfn']}#{member}", member.rsplit("/", 1)[-1]))
            continue
        st = await central.call("stat", src)
        if st.exitcode != 0 or not st.results:
            failed.append(FileResult(raw, "", "failed", error=st.error or "not found"))
            continue
        rec = st.results[0]
        if rec.get("type") != "f":
            failed.append(FileResult(raw, "", "failed", error="not a file (use a glob)"))
            continue
        name = rec["lfn"].rsplit("/", 1)[1]
        jobs.append(_Job(rec["lfn"], name, int(rec["size"]), rec.get("md5", "")))
    return jobs, failed, many


async def _plan_download(
    central: Central, sources: Sequence[str], dest: str
) -> tuple[list[_Job], list[FileResult]]:
    target = local_path(dest)
    jobs, failed, many = await _expand_grid(central, sources)
    into_dir = many or target.endswith("/") or os.path.isdir(target)
    for job in jobs:
        job.dst = os.path.join(target, job.dst) if into_dir else target
    for result in failed:
        result.dst = dest
    return jobs, failed


async def _same_file(path: str, size: int, md5: str) -> bool:
    """The skip test: the size first (no hashing when it differs), then the md5."""
    try:
        if os.stat(path).st_size != size:
            return False
    except OSError:
        return False
    if not md5:
        return True
    return await asyncio.to_thread(file_md5, path) == md5.lower()


async def _download(
    central, http, job: _Job, opts: Options, progress, ahead: Awaitable[Granted] | None = None
) -> FileResult:
    """One file; *ahead* is its ``access read`` already on its way (see ``copy``)."""
    if await _same_file(job.dst, job.size, job.md5):
        return FileResult(job.src, job.dst, "skipped", job.size)
    access = await (ahead if ahead is not None else _read(central, job.src))
    if access.exitcode != 0 or not access.grants:
        raise TransferError(access.error or "no replica to read", False)
    if "#" in job.src:  # an archive member: its size is known once central looked
        job.size = access.grants[0].size
    os.makedirs(os.path.dirname(job.dst) or ".", exist_ok=True)
    part = job.dst + PART
    notes: list[str] = []
    progress.add(job.src, job.size)
    try:
        for replica in access.grants:
            where = replica.se
            try:
                await _fetch_replica(http, replica, part, job, opts, progress)
            except TransferError as exc:
                notes.append(f"{where}: {exc}")
                continue
            os.replace(part, job.dst)
            return FileResult(job.src, job.dst, "copied", job.size, notes=notes)
        if await _same_file(job.dst, job.size, job.md5):  # a last look before failing
            return FileResult(job.src, job.dst, "skipped", job.size, notes=notes)
        raise TransferError("; ".join(notes) or "no replica worked", False)
    finally:
        progress.done(job.src)


async def _attempts(opts: Options) -> AsyncIterator[int]:
    """``opts.retries`` attempts, with a backoff that doubles from ``opts.backoff`` between
    them; the caller ``continue``s after a failure and returns on success."""
    delay = opts.backoff
    for attempt in range(opts.retries):
        if attempt:
            await asyncio.sleep(delay)
            delay *= 2
        yield attempt


async def _verify_md5(part: str, md5: str) -> None:
    """A downloaded file against the catalogue's md5 (none: nothing to check); a mismatch
    removes it and is final for that replica."""
    if not md5:
        return
    got = await asyncio.to_thread(file_md5, part)
    if got != md5.lower():
        os.unlink(part)
        raise TransferError(f"checksum mismatch (md5 {got}, expected {md5})", False)


async def _fetch_member(http, replica, part: str, job: _Job, progress) -> None:
    """``archive.zip#member``: the member read out of the archive with ranged reads (the
    archive's central directory, then the member; its CRC checked by zipfile)."""
    url, _, member = replica.url.partition("#")
    if is_xrootd(url):
        where = transfer_url(url, replica.envelope)

        async def read_at(offset: int, length: int) -> bytes:
            try:
                return await xrd.read_range(where, offset, length)
            except XrdError as exc:
                raise TransferError(str(exc), exc.resumable) from None

        try:
            size = await xrd.size_of(where)
        except XrdError as exc:
            raise TransferError(str(exc), False) from None
        return await _member_out(read_at, size, member, part, job, progress)
    where = f"{url}?authz={replica.envelope}"

    async def read_http(offset: int, length: int) -> bytes:
        headers = {"Range": f"bytes={offset}-{offset + length - 1}"}
        async with http.get(where, headers=headers) as resp:
            if resp.status not in (200, 206):
                raise TransferError(f"HTTP {resp.status}", resp.status >= 500)
            if resp.status == 200 and offset:
                raise TransferError("the SE ignored the byte range", False)
            data = await resp.read()
            return data[:length]

    size = await _archive_size(http, where)
    return await _member_out(read_http, size, member, part, job, progress)


async def _member_out(read_at, size: int, member: str, part: str, job: _Job, progress) -> None:
    try:
        data = await read_member(read_at, size, member)
    except (ArchiveError, zipfile.BadZipFile) as exc:
        raise TransferError(str(exc), False) from None
    await asyncio.to_thread(_write_file, part, data)
    progress.advance(job.src, len(data))


async def _archive_size(http, where: str) -> int:
    async with http.head(where) as resp:
        if resp.status != 200 or resp.content_length is None:
            raise TransferError(f"HTTP {resp.status} for the archive's size", False)
        return resp.content_length


def _write_file(path: str, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)


async def _fetch_replica(http, replica, part: str, job: _Job, opts: Options, progress) -> None:
    if "#" in replica.url:
        return await _fetch_member(http, replica, part, job, progress)
    if is_xrootd(replica.url):
        return await _fetch_xrootd(replica, part, job, opts, progress)
    url = f"{replica.url}?authz={replica.envelope}"
    last = ""
    async for _ in _attempts(opts):
        have = os.path.getsize(part) if os.path.exists(part) else 0
        if job.size == 0 and not os.path.exists(part):
            open(part, "wb").close()  # an empty file: nothing to fetch, its md5 is checked
        if have > job.size >= 0:
            os.unlink(part)
            have = 0
        if have < job.size or job.size < 0:
            try:
                await asyncio.wait_for(
                    _get(http, url, part, have, progress, job.src),
                    _timeout_for(job.size - have, opts),
                )
            except TransferError as exc:
                last = str(exc)
                if not exc.resumable:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(part)
                    raise
                continue
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                last = _describe(exc)
                continue
        got = os.path.getsize(part)
        if job.size >= 0 and got != job.size:
            last = f"got {got} of {job.size} bytes"
            continue
        await _verify_md5(part, job.md5)
        return
    raise TransferError(f"gave up after {opts.retries} attempts: {last}")


class _Advance:
    """Turns a transfer's running byte count (of the whole file) into progress increments;
    one per file, so that a resumed attempt does not count the bytes again."""

    def __init__(self, progress, name: str) -> None:
        self.progress, self.name, self.seen = progress, name, 0

    def __call__(self, count: int) -> None:
        if count > self.seen:
            self.progress.advance(self.name, count - self.seen)
            self.seen = count


async def _fetch_xrootd(replica, part: str, job: _Job, opts: Options, progress) -> None:
    """A download through the XRootD client library: the md5 computed while the bytes land
    (a partial file's bytes hashed first), resumed from the part file, retried with
    backoff (jalien.storage.xrd)."""
    url = transfer_url(replica.url, replica.envelope)
    advance = _Advance(progress, job.src)
    last = ""
    async for _ in _attempts(opts):
        have = os.path.getsize(part) if os.path.exists(part) else 0
        if have > job.size >= 0:
            os.unlink(part)
            have = 0
        if have and have == job.size:  # complete but unverified (e.g. killed while checking)
            if not job.md5 or await asyncio.to_thread(file_md5, part) == job.md5.lower():
                return
            os.unlink(part)
            have = 0
        left = job.size - have if job.size >= 0 else -1
        try:
            await asyncio.wait_for(
                xrd.download(
                    url, part, size=job.size, offset=have, md5=job.md5, stall=opts.stall,
                    on_bytes=advance, chunk=opts.chunk, rate=opts.max_rate,
                ),
                _timeout_for(left, opts),
            )  # fmt: skip
        except XrdError as exc:
            if exc.checksum or not exc.resumable:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(part)
                raise TransferError(str(exc), False) from None
            last = str(exc)
            continue
        except (OSError, TimeoutError) as exc:
            last = _describe(exc)
            continue
        got = os.path.getsize(part) if os.path.exists(part) else -1
        if job.size >= 0 and got != job.size:
            last = f"got {got} of {job.size} bytes"
            continue
        return
    raise TransferError(f"gave up after {opts.retries} attempts: {last}")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "stalled or timed out"
    return f"{type(exc).__name__}: {exc}".rstrip(": ")


async def _get(http, url: str, part: str, have: int, progress, name: str) -> None:
    headers = {"Range": f"bytes={have}-"} if have else {}
    async with http.get(url, headers=headers) as resp:
        if resp.status in (401, 403, 404, 416):
            text = (await resp.text()).strip()
            raise TransferError(f"HTTP {resp.status}: {text}", False)
        if resp.status not in (200, 206):
            raise TransferError(f"HTTP {resp.status}")
        if have and resp.status == 200:  # the server ignored the range: start again
            have = 0
        if have:
            progress.advance(name, have)
        mode = "ab" if have else "wb"
        with open(part, mode) as fh:
            async for block in resp.content.iter_chunked(CHUNK):
                await asyncio.to_thread(fh.write, block)
                progress.advance(name, len(block))


# -- local -> grid
async def _plan_upload(
    central: Central, sources: Sequence[str], dest: str
) -> tuple[list[_Job], list[FileResult]]:
    files: list[str] = []
    failed: list[FileResult] = []
    for raw in sources:
        path = local_path(raw)
        matched = sorted(glob.glob(path)) if glob.has_magic(path) else [path]
        found = [m for m in matched if os.path.isfile(m)]
        if not found:
            failed.append(FileResult(raw, dest, "failed", error="no such local file"))
        files.extend(found)
    target = grid_path(dest)
    into_dir = len(files) > 1 or target.endswith("/")
    if not into_dir:
        st = await central.call("type", target)
        into_dir = bool(
            st.exitcode == 0 and st.results and st.results[0].get("type", "")[:1] == "d"
        )
    jobs = [
        _Job(f, target.rstrip("/") + "/" + os.path.basename(f) if into_dir else target)
        for f in files
    ]
    return jobs, failed


async def _upload(central, http, job: _Job, opts: Options, progress) -> FileResult:
    job.size = os.path.getsize(job.src)
    job.md5 = await asyncio.to_thread(file_md5, job.src)
    st = await central.call("stat", job.dst)
    if st.exitcode == 0 and st.results:
        rec = st.results[0]
        if rec.get("size") == str(job.size) and rec.get("md5", "").lower() == job.md5:
            return FileResult(job.src, job.dst, "skipped", job.size)
        raise TransferError(f"{job.dst} exists with other contents", False)
    access = await _access(central, _write(job, opts))
    if access.exitcode != 0 or not access.grants:
        raise TransferError(access.error or "no SE to write to", False)
    progress.add(job.src, job.size * len(access.grants))
    try:
        outcomes = await asyncio.gather(
            *(_put(http, r, job, opts, progress) for r in access.grants), return_exceptions=True
        )
    finally:
        progress.done(job.src)
    notes: list[str] = []
    committed = await _commit_all(central, access.grants, outcomes, job, notes)
    if not committed:
        raise TransferError("; ".join(notes) or "no replica was stored", False)
    return FileResult(job.src, job.dst, "copied", job.size, notes=notes)


async def _commit_all(central, replicas, outcomes, job: _Job, notes: list[str]) -> int:
    """Commits the replicas whose transfer succeeded; returns how many were registered.
    *outcomes* are the transfers' notes (a list) or their exception."""
    committed = 0
    for replica, outcome in zip(replicas, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            notes.append(f"{replica.se}: {_describe(outcome)}")
            continue
        notes.extend(f"{replica.se}: {note}" for note in outcome or ())
        done = await central.call(
            "commit", replica.envelope, str(job.size), replica.lfn, "644", "0",
            replica.url, replica.se, replica.guid, job.md5,
        )  # fmt: skip
        if done.exitcode == 0:
            committed += 1
        else:
            notes.append(f"{replica.se}: commit failed: {done.error}")
    return committed


async def _put(http, replica, job: _Job, opts: Options, progress) -> list[str]:
    if is_xrootd(replica.url):
        return await _put_xrootd(replica, job, opts, progress)
    url = f"{replica.url}?authz={replica.envelope}"

    async def body():
        with open(job.src, "rb") as fh:
            while block := await asyncio.to_thread(fh.read, CHUNK):
                progress.advance(job.src, len(block))
                yield block

    headers = {"Content-Length": str(job.size)}
    async with asyncio.timeout(_timeout_for(job.size, opts)):
        async with http.put(url, data=body(), headers=headers) as resp:
            if resp.status != 201:
                text = (await resp.text()).strip()
                raise TransferError(f"HTTP {resp.status}: {text}", False)
            got = resp.headers.get("X-Md5", "")
            if got and got != job.md5:
                raise TransferError(f"the SE stored md5 {got}, not {job.md5}", False)
    return []


async def _put_xrootd(replica, job: _Job, opts: Options, progress) -> list[str]:
    """An upload through the XRootD client library; a broken attempt leaves nothing (POSC)
    and is retried from the start. The md5 of what the SE stored is checked by ``commit``
    (central asks the SE before registering)."""
    url = transfer_url(replica.url, replica.envelope)
    last = ""
    async for _ in _attempts(opts):
        try:
            return await asyncio.wait_for(
                xrd.upload(
                    job.src, url, size=job.size, md5=job.md5, stall=opts.stall,
                    on_bytes=_Advance(progress, job.src), chunk=opts.chunk,
                ),
                _timeout_for(job.size, opts),
            )  # fmt: skip
        except XrdError as exc:
            if not exc.resumable:
                raise TransferError(str(exc), False) from None
            last = str(exc)
        except (OSError, TimeoutError) as exc:
            last = _describe(exc)
    raise TransferError(f"gave up after {opts.retries} attempts: {last}")


# -- grid -> grid
async def _plan_replicate(
    central: Central, sources: Sequence[str], dest: str
) -> tuple[list[_Job], list[FileResult]]:
    target = grid_path(dest)
    jobs, failed, many = await _expand_grid(central, sources)
    into_dir = many or target.endswith("/")
    if not into_dir:
        st = await central.call("type", target)
        into_dir = (
            st.exitcode == 0 and bool(st.results) and st.results[0].get("type", "")[:1] == "d"
        )
    for job in jobs:
        job.dst = target.rstrip("/") + "/" + job.dst if into_dir else target
    for result in failed:
        result.dst = dest
    return jobs, failed


async def _replicate(central, http, job: _Job, opts: Options, progress) -> FileResult:
    """One LFN copied to another LFN (or to more SEs, when the destination is the same LFN):
    XRootD to XRootD as a third-party copy (the library's CopyProcess, ``thirdparty='first'``:
    the SEs move the bytes where they can),
    anything else through a temporary local file; each stored replica is committed."""
    st = await central.call("stat", job.dst)
    if st.exitcode == 0 and st.results and st.results[0].get("lfn") != job.src:
        rec = st.results[0]  # another LFN is there already (the same one gets more replicas)
        if rec.get("size") == str(job.size) and rec.get("md5", "").lower() == job.md5.lower():
            return FileResult(job.src, job.dst, "skipped", job.size)
        raise TransferError(f"{job.dst} exists with other contents", False)
    write = await _access(central, _write(job, opts))
    if write.exitcode != 0 or not write.grants:
        raise TransferError(write.error or "no SE to write to", False)
    read = await _read(central, job.src)
    if read.exitcode != 0 or not read.grants:
        raise TransferError(read.error or "no replica to read", False)
    sources = [r for r in read.grants if is_xrootd(r.url)]
    progress.add(job.src, job.size * len(write.grants))
    local: list[str] = []  # the temporary copy, made once when a target needs it
    fetch_lock = asyncio.Lock()

    async def via_local(replica) -> list[str]:
        async with fetch_lock:
            if not local:
                local.append(await _fetch_to_temp(http, read.grants, job, opts))
        return await _put(http, replica, _Job(local[0], job.dst, job.size, job.md5), opts, progress)

    async def one(replica) -> list[str]:
        notes: list[str] = []
        if is_xrootd(replica.url):
            for src in sources:
                try:
                    return notes + await xrd.third_party(
                        transfer_url(src.url, src.envelope),
                        transfer_url(replica.url, replica.envelope),
                        md5=job.md5, timeout=_timeout_for(job.size, opts),
                        on_bytes=_Advance(progress, job.src),
                    )  # fmt: skip
                except XrdError as exc:
                    notes.append(f"third-party copy from {src.se} failed: {exc}")
        return notes + await via_local(replica)

    try:
        outcomes = await asyncio.gather(*(one(r) for r in write.grants), return_exceptions=True)
    finally:
        progress.done(job.src)
        if local:
            shutil.rmtree(os.path.dirname(local[0]), ignore_errors=True)
    notes: list[str] = []
    if not await _commit_all(central, write.grants, outcomes, job, notes):
        raise TransferError("; ".join(notes) or "no replica was stored", False)
    return FileResult(job.src, job.dst, "copied", job.size, notes=notes)


async def _fetch_to_temp(http, replicas, job: _Job, opts: Options) -> str:
    """The source downloaded (verified) into a private temporary directory."""
    folder = tempfile.mkdtemp(prefix="jalien-cp-")
    path = os.path.join(folder, "data")
    errors = []
    for replica in replicas:
        try:
            await _fetch_replica(http, replica, path + PART, job, opts, _NoProgress())
        except TransferError as exc:
            errors.append(f"{replica.se}: {exc}")
            continue
        os.replace(path + PART, path)
        return path
    shutil.rmtree(folder, ignore_errors=True)
    raise TransferError("cannot read the source: " + "; ".join(errors), False)
