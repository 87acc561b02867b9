"""Linux inotify through ctypes (no third-party package): a non-blocking descriptor the event
loop watches, directories added and removed, the watch descriptors that fired.

Only what the filesystem spool needs (``jalien.net.spool``): "a file appeared in this
directory" (``IN_MOVED_TO``, ``IN_CLOSE_WRITE``, ``IN_CREATE``). inotify sees what this
kernel does to the directory: on NFS or Lustre it misses what other hosts write, which is
why the spool also polls (docs/relay.md).
"""

from __future__ import annotations

import ctypes
import functools
import os
import struct

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE_SELF = 0x00000400
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = 0o2000000

NEW_FILES = IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE_SELF | IN_ONLYDIR
_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len (struct inotify_event)


class InotifyError(OSError):
    pass


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library: the process's own symbols first (no subprocess, as find_library
    would run), then libc by name."""
    for name in (None, "libc.so.6"):
        try:
            libc = ctypes.CDLL(name, use_errno=True)
        except OSError:
            continue
        if hasattr(libc, "inotify_init1"):
            return libc
    return None


class Inotify:
    """One inotify instance: ``fileno()`` for the loop's add_reader, ``read()`` the
    directories (watch descriptors) that changed; None from ``read`` on an overflow
    (everything may have changed)."""

    def __init__(self) -> None:
        libc = _libc()
        if libc is None:
            raise InotifyError("inotify is not available here")
        self._libc = libc
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            errno = ctypes.get_errno()
            raise InotifyError(errno, f"inotify_init1: {os.strerror(errno)}")
        self.fd: int = fd

    def fileno(self) -> int:
        return self.fd

    def add(self, path: str, mask: int = NEW_FILES) -> int:
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(path), mask)
        if wd < 0:
            errno = ctypes.get_errno()
            raise InotifyError(errno, f"inotify_add_watch {path}: {os.strerror(errno)}")
        return int(wd)

    def remove(self, wd: int) -> None:
        self._libc.inotify_rm_watch(self.fd, wd)  # an already-gone watch: EINVAL, ignored

    def read(self) -> set[int] | None:
        """The watch descriptors with events since the last read (empty when none)."""
        changed: set[int] = set()
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return changed
            offset = 0
            while offset + _HEADER.size <= len(data):
                wd, mask, _cookie, length = _HEADER.unpack_from(data, offset)
                offset += _HEADER.size + length
                if mask & IN_Q_OVERFLOW:
                    return None
                if not mask & IN_IGNORED:
                    changed.add(wd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def available() -> bool:
    try:
        Inotify().close()
    except OSError:
        return False
    return True
