"""XRootD transfers through the command-line client ``xrdcp`` (v4+ syntax), one process per
file, driven from asyncio.

Why the command-line client and not the XRootD Python bindings: the bindings are not in
jalien's environment (Debian's python3-xrootd serves the system Python only; the PyPI wheel
would add a large native dependency to the single binary), the issue asks for the tools, and
one process per file keeps a stuck transfer killable without touching the others. xrdcp
starts in ~15 ms, which the benchmark shows is not what limits small files.

How the options are used:
- ``--cksum md5:<catalogue md5>`` on every transfer: on a download xrdcp hashes the target
  while writing it (no second pass over the file); on an upload or a third-party copy the
  SE hashes what it stored (end to end). An SE that cannot checksum (``[3013]``) is accepted
  with a note: the size was still checked.
- Retries are ours, not xrdcp's ``--retry``: between attempts we back off, and a download
  resumes the part file with ``--continue`` (xrdcp's own retry would start again at zero and
  hide the attempts from the stall watchdog).
- ``--posc`` on writes: a broken upload leaves nothing on the SE; ``-f`` because a retry may
  find its own earlier attempt (the PFN is this file's own: a GUID path).
- The client gives up on an unreachable server after one connection attempt
  (``XRD_CONNECTIONRETRY=1``): we retry, then the next replica, rather than waiting minutes.
- Each xrdcp resolves this host's addresses when it starts; with many starting at once a lost
  DNS query cost 5 s (glibc's default) in our benchmark: ``RES_OPTIONS`` retries after 1 s.

Progress and the stall watchdog read the child's ``/proc/<pid>/io`` counters (``wchar`` for a
download, ``rchar`` for an upload), so they work for any direction; a third-party copy moves
no bytes through the client and is only bounded by its timeout.

``xrdfs`` answers commit's question about an uploaded replica (``xrd_stat``: ``stat``, then
``query checksum``, each a short process killed when the caller gives up).

Debian's xrootd cannot check ALICE envelopes (that needs ALICE's TokenAuthz plugin, not
packaged): the envelope travels in ``authz`` exactly as alien.py sends it, and an SE that
enforces it accepts it; the embedded SE is the one that enforces envelopes here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from jalien.storage.envelope import is_xrootd

__all__ = [
    "XrdcpError",
    "XrdfsError",
    "is_xrootd",
    "transfer_url",
    "xrd_stat",
    "xrdcp",
    "xrdcp_path",
    "xrdfs_path",
]

POLL = 0.1  # seconds between progress reads
CONNECT_ENV = {"XRD_CONNECTIONRETRY": "1", "XRD_CONNECTIONWINDOW": "15"}
# xrdcp looks up this host's own addresses in the DNS when it starts; many starting at once
# can lose a query, and glibc then waits 5 s: retry after 1 s instead (unless RES_OPTIONS is set)
RESOLVER_ENV = {"RES_OPTIONS": "timeout:1 attempts:2"}
FATAL_MARKS = ("[3010]", "[3011]", "No such file", "Permission denied", "[3016]", "[3017]")


class XrdcpError(Exception):
    """One xrdcp run failed. *resumable*: worth another attempt on the same replica;
    *checksum*: the data arrived but its md5 differs."""

    def __init__(self, message: str, resumable: bool = True, checksum: bool = False) -> None:
        super().__init__(message)
        self.resumable = resumable
        self.checksum = checksum


def xrdcp_path() -> str:
    """``$JALIEN_XRDCP``, else xrdcp on PATH; empty when there is none."""
    return os.environ.get("JALIEN_XRDCP") or shutil.which("xrdcp") or ""


def transfer_url(url: str, envelope: str) -> str:
    """The URL a client opens: the envelope in ``authz``, as alien.py builds it."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}xrd.wantprot=unix&authz={envelope}"


def _io_counter(pid: int, key: bytes) -> int:
    try:
        with open(f"/proc/{pid}/io", "rb") as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return -1


def _classify(rc: int, stderr: str) -> XrdcpError:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    text = " | ".join(lines[-3:]) or f"xrdcp exited with {rc}"
    if "CheckSum error" in stderr or "checksum mismatch" in stderr.lower():
        return XrdcpError(f"checksum mismatch (xrdcp: {text})", False, checksum=True)
    if any(mark in stderr for mark in FATAL_MARKS):
        return XrdcpError(text, False)
    return XrdcpError(text)


async def xrdcp(
    src: str,
    dst: str,
    *,
    md5: str = "",
    resume: bool = False,
    write: bool = False,
    tpc: bool = False,
    size: int = -1,
    stall: float = 30.0,
    timeout: float = 3600.0,
    on_bytes: Callable[[int], None] | None = None,
    parallel: int = 0,
) -> list[str]:
    """Copy *src* to *dst*; returns notes (e.g. "not verified by the SE"); raises XrdcpError.

    *on_bytes* gets the byte count moved so far (never more than *size*). With *parallel*,
    *src* is a file listing source URLs (``--infiles``) and *dst* a directory."""
    binary = xrdcp_path()
    if not binary:
        raise XrdcpError("xrdcp not found (install xrootd-client or set JALIEN_XRDCP)", False)
    args = [binary, "--nopbar"]
    if parallel:
        args += ["--parallel", str(parallel), "--infiles", src]
    args += ["--continue"] if resume else ["--force"]
    if write:
        args.append("--posc")
    if tpc:
        args += ["--tpc", "first"]
    if md5:
        args += ["--cksum", f"md5:{md5.lower()}"]
    args += [dst] if parallel else [src, dst]
    env = {**RESOLVER_ENV, **os.environ, **CONNECT_ENV}
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    assert proc.stderr is not None
    err_task = asyncio.ensure_future(proc.stderr.read())
    waiter = asyncio.ensure_future(proc.wait())
    key = b"rchar" if write and not is_xrootd(src) else b"wchar"
    moved, last_change, start = 0, time.monotonic(), time.monotonic()
    try:
        while not waiter.done():
            await asyncio.wait({waiter}, timeout=POLL)
            if waiter.done():
                break
            now = time.monotonic()
            count = _io_counter(proc.pid, key)
            if count > moved:
                moved, last_change = count, now
                if on_bytes is not None:
                    on_bytes(min(count, size) if size >= 0 else count)
            elif not tpc and now - last_change > stall:
                raise XrdcpError(f"stalled: no byte for {stall:.0f} s")
            if now - start > timeout:
                raise XrdcpError(f"timed out after {timeout:.0f} s")
    finally:
        if not waiter.done():
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await waiter
        stderr = (await err_task).decode(errors="replace")
    rc = waiter.result()
    if rc == 0:
        if on_bytes is not None and size >= 0:
            on_bytes(size)
        return []
    if "[3013]" in stderr and "chksum" in stderr:  # the SE cannot checksum: size check only
        if on_bytes is not None and size >= 0:
            on_bytes(size)
        return ["the SE cannot compute checksums: not verified there"]
    raise _classify(rc, stderr)


# -- xrdfs: what an SE holds
class XrdfsError(Exception):
    """xrdfs could not tell; *missing*: the SE says there is no such file."""

    def __init__(self, message: str, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


def xrdfs_path() -> str:
    """``$JALIEN_XRDFS``, else xrdfs on PATH; empty when there is none."""
    return os.environ.get("JALIEN_XRDFS") or shutil.which("xrdfs") or ""


def _split(url: str) -> tuple[str, str]:
    """root://host:port//a/b -> ("root://host:port", "/a/b") (query kept on the path)."""
    parts = urlsplit(url)
    path = "/" + parts.path.lstrip("/")
    return f"{parts.scheme}://{parts.netloc}", path + (f"?{parts.query}" if parts.query else "")


async def _xrdfs(server: str, *args: str) -> str:
    """stdout of ``xrdfs SERVER ARGS``; the process is killed if the caller is cancelled."""
    binary = xrdfs_path()
    if not binary:
        raise XrdfsError("xrdfs not found (install xrootd-client or set JALIEN_XRDFS)")
    try:
        proc = await asyncio.create_subprocess_exec(
            binary, server, *args, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**RESOLVER_ENV, **os.environ, **CONNECT_ENV},
        )  # fmt: skip
    except OSError as exc:
        raise XrdfsError(f"cannot run xrdfs ({binary}): {exc.strerror or exc}") from None
    try:
        out, err = await proc.communicate()
    finally:
        if proc.returncode is None:  # cancelled (a timeout): no process is left behind
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    if proc.returncode == 0:
        return out.decode(errors="replace")
    text = err.decode(errors="replace").replace("\x00", "").strip() or f"exit {proc.returncode}"
    raise XrdfsError(text.splitlines()[-1], missing="[3011]" in text)


async def xrd_stat(url: str) -> tuple[int, str]:
    """(size, md5) of the file at a root:// URL, from ``xrdfs stat`` then ``xrdfs query
    checksum`` (one after the other: one process at a time per question, because many
    xrdfs starting at once lose DNS queries); md5 is "" when the SE keeps no md5 (no
    checksums, or another kind). Raises XrdfsError (``missing`` when there is no such file)."""
    server, path = _split(url)
    stat = await _xrdfs(server, "stat", path)
    size = next((line.split()[1] for line in stat.splitlines() if line.startswith("Size:")), "")
    if not size.isdigit():
        raise XrdfsError(f"xrdfs stat gave no size: {stat.strip()[:200]!r}")
    try:
        checksum = await _xrdfs(server, "query", "checksum", path)
    except XrdfsError as exc:
        if exc.missing:
            raise
        return int(size), ""  # e.g. [3013]: the SE computes no checksums
    kind, _, value = checksum.strip().partition(" ")
    return int(size), value.strip().lower() if kind.lower() == "md5" else ""
