"""The XRootD command-line clients (``xrdcp``, ``xrdfs``) driven from asyncio, one process
per call: what remains for code that streams through a pipe (``xrdcp -`` reading standard
input or writing standard output: the data movers' HTTPS <-> XRootD copies in
jalien.storage.movers). The copy engine and commit's check use the XRootD client library in
process instead (jalien.storage.xrd).

- ``--cksum md5:<md5>``: xrdcp hashes a download while writing it, an SE hashes what it
  stored; an SE that cannot checksum (``[3013]``) is accepted with a note.
- ``--posc`` on writes, ``-f`` because a retry may find its own earlier attempt.
- ``XRD_CONNECTIONRETRY=1``: one connection attempt; the caller retries.
- ``RES_OPTIONS``: many xrdcp starting at once can lose a DNS query of this host's own
  addresses, and glibc then waits 5 s: retry after 1 s instead.
- Progress and the stall watchdog read the child's ``/proc/<pid>/io`` counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import Callable

from jalien.storage.envelope import is_xrootd
from jalien.storage.xrd import XrdError

POLL = 0.1  # seconds between progress reads
CONNECT_ENV = {"XRD_CONNECTIONRETRY": "1", "XRD_CONNECTIONWINDOW": "15"}
# xrdcp looks up this host's own addresses in the DNS when it starts; many starting at once
# can lose a query, and glibc then waits 5 s: retry after 1 s instead (unless RES_OPTIONS is set)
RESOLVER_ENV = {"RES_OPTIONS": "timeout:1 attempts:2"}
FATAL_MARKS = ("[3010]", "[3011]", "No such file", "Permission denied", "[3016]", "[3017]")


XrdcpError = XrdError  # one error type for the library and the command-line clients


def xrdcp_path() -> str:
    """``$JALIEN_XRDCP``, else xrdcp on PATH; empty when there is none."""
    return os.environ.get("JALIEN_XRDCP") or shutil.which("xrdcp") or ""


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
def xrdfs_path() -> str:
    """``$JALIEN_XRDFS``, else xrdfs on PATH; empty when there is none."""
    return os.environ.get("JALIEN_XRDFS") or shutil.which("xrdfs") or ""
