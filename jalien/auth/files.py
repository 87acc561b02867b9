"""Writing credential files safely: right mode from the first byte, never a silent overwrite.

Keys must never exist, even briefly, with looser permissions than 0600, and grid users keep
precious credentials in ~/.globus, so a write either creates a new file or (when the caller
asked to overwrite) atomically replaces the old one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from .errors import AuthError

StrPath = str | os.PathLike[str]


def write_file(path: StrPath, data: bytes, mode: int, *, overwrite: bool = False) -> Path:
    """Write *data* to *path* with *mode*; refuse an existing file unless *overwrite*."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AuthError(f"cannot create directory {target.parent}: {exc.strerror}") from None
    if not overwrite:
        if target.exists() or target.is_symlink():
            raise AuthError(f"{target} already exists; not overwriting it")
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError:
            raise AuthError(f"{target} already exists; not overwriting it") from None
        except OSError as exc:
            raise AuthError(f"cannot create {target}: {exc.strerror}") from None
        try:
            _fill(fd, data, mode, target)
        except AuthError:
            with contextlib.suppress(OSError):
                target.unlink()
            raise
        return target
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    except OSError as exc:
        raise AuthError(f"cannot write in {target.parent}: {exc.strerror}") from None
    try:
        _fill(fd, data, mode, target)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target


def _fill(fd: int, data: bytes, mode: int, target: Path) -> None:
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)  # the umask may have removed bits we want (0644)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise AuthError(f"cannot write {target}: {exc.strerror}") from None


def read_file(path: StrPath, what: str) -> bytes:
    """The bytes of *path*, or an AuthError saying which *what* could not be read."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise AuthError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise AuthError(f"cannot read {what} {path}: {exc.strerror}") from None
