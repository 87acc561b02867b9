"""Handing secret PEM text to OpenSSL, which only loads keys from files, without writing it
to a disk.

Python's ``ssl`` has no "load key from memory" call (``load_cert_chain`` takes paths), so
``memory_path`` makes a file that lives in RAM only:

* Linux: ``memfd_create`` gives an anonymous file with no name in any directory; OpenSSL
  opens it as ``/proc/self/fd/<n>``, which only this process (and root, or a debugger of the
  same user, who can read its memory anyway) can reach. Closing the descriptor frees it. It
  is never on a disk-backed file system and never has a path another process could guess.
  A pipe behind ``/dev/fd/<n>`` would also work, but a PEM bigger than the pipe buffer
  would block, and a reader that opens the path twice would find it empty.
* Elsewhere (or without ``/proc``): a 0600 file in a fresh 0700 directory from
  ``tempfile.mkdtemp``, unlinked as soon as OpenSSL has read it. The text touches the temp
  file system for the few milliseconds of the load; said here so nobody assumes otherwise.

Python cannot wipe the ``bytes`` it was given; callers keep secrets in as few objects as
they can and drop them after loading.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator

from .errors import AuthError


def _memfd_path(data: bytes) -> tuple[int, str] | None:
    create = getattr(os, "memfd_create", None)
    if create is None or not os.path.isdir("/proc/self/fd"):
        return None
    try:
        fd = create("jalien-pem", getattr(os, "MFD_CLOEXEC", 1))
    except OSError:
        return None
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except OSError:
        os.close(fd)
        return None
    return fd, f"/proc/self/fd/{fd}"


@contextlib.contextmanager
def memory_path(data: bytes) -> Iterator[str]:
    """A path whose content is *data*, valid inside the ``with`` block only."""
    made = _memfd_path(data)
    if made is not None:
        fd, path = made
        try:
            yield path
        finally:
            os.close(fd)
        return
    try:
        directory = tempfile.mkdtemp(prefix="jalien-")
    except OSError as exc:
        raise AuthError(f"cannot create a private temporary directory: {exc.strerror}") from None
    try:
        path = os.path.join(directory, "pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)
