"""What the embedded SE allows, one home for both of its protocols (HTTPS in se_server,
XRootD in xrd_server): the envelope rule, the PFN path -> local file rule, and the md5 the
SE records with each file.

- ``grant_for``: the envelope (the ``authz`` parameter) is genuine and unexpired
  (``EnvelopeVerifier.open``), names this PFN path and grants one of the allowed access
  types. Paths are compared with repeated slashes collapsed: XRootD spells an absolute
  path ``root://host:port//se/...`` (the envelope of such a PFN says ``//se/...``) while the
  request line says ``/se/...``; both name one file, so one envelope serves both protocols.
- ``local_path``: a PFN path maps below the SE's root; a component starting with a dot (``..``,
  and the SE's own temporary names ``.<name>.part``), a backslash or a NUL is refused, and
  so is anything that resolves outside the root (a symbolic link out of it).
- ``stored_replica``: size and md5 of a stored file; the md5 is the one recorded with the
  file at upload (extended attribute ``user.jalien.md5``), else computed once and recorded.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
from pathlib import Path

from jalien.storage.envelope import EnvelopeError, EnvelopeVerifier, Grant
from jalien.storage.replica_check import StoredReplica

CHUNK = 1 << 20
MD5_XATTR = "user.jalien.md5"
_SLASHES = re.compile(r"/{2,}")


def same_path(path: str) -> str:
    """A PFN path with repeated slashes collapsed (``//se/x`` and ``/se/x`` are one file)."""
    return _SLASHES.sub("/", path) if "//" in path else path


def grant_for(
    verifier: EnvelopeVerifier,
    envelope: str,
    path: str,
    allowed: tuple[str, ...],
    now: float | None = None,
) -> Grant:
    """The grant of *envelope* when it allows one of *allowed* on *path*; EnvelopeError
    (with the reason a client reads) otherwise."""
    grant = verifier.open(envelope, now)
    if same_path(grant.pfn) != same_path(path):
        raise EnvelopeError(f"envelope is for {grant.pfn}, not {path}")
    if grant.access not in allowed:
        raise EnvelopeError(f"envelope grants {grant.access}, not {'/'.join(allowed)}")
    return grant


def local_path(root: Path, path: str) -> Path:
    """The local file of PFN path *path* below *root* (a resolved directory)."""
    parts = path.split("/")
    if any(p.startswith(".") for p in parts) or "\\" in path or "\x00" in path:
        raise EnvelopeError("bad path", 404)
    local = (root / same_path(path).lstrip("/")).resolve()
    if root not in local.parents:
        raise EnvelopeError("bad path", 404)
    return local


def recorded_md5(path: Path) -> str:
    """The md5 recorded with a stored file ("" when there is none)."""
    try:
        return os.getxattr(path, MD5_XATTR).decode("ascii", "replace")
    except OSError:
        return ""


def record_md5(path: Path | int, md5: str) -> bool:
    """Records *md5* with the file (a path or an open descriptor); False where the
    filesystem keeps no user attributes."""
    try:
        os.setxattr(path, MD5_XATTR, md5.encode("ascii"))
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
            return False
        raise
    return True


def stored_replica(path: Path) -> StoredReplica:
    """The SE's record of a stored file (on a worker thread: it may hash the file)."""
    md5 = recorded_md5(path)
    if not md5:
        digest = hashlib.md5(usedforsecurity=False)
        with open(path, "rb") as fh:
            while block := fh.read(CHUNK):
                digest.update(block)
        md5 = digest.hexdigest()
        record_md5(path, md5)
    return StoredReplica(size=path.stat().st_size, md5=md5)
