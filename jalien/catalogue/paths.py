"""LFN paths: resolution against a cwd, validation, and the (dir, name) split the
backends store. Directories are written with a trailing '/', as AliEn does."""

from __future__ import annotations

from jalien.wire.errors import EXIT_INVALID, RequestError

MAX_LFN = 4096
MAX_NAME = 512


class BadPath(RequestError):
    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_INVALID)


def resolve(path: str, cwd: str, home: str = "") -> str:
    """An absolute, normalised LFN (no trailing '/' unless it is the root).

    '~' is the user's home; '.' and '..' are resolved; '..' above the root stays at the
    root, as in a shell. NUL, empty and over-long paths are refused.
    """
    if not path:
        raise BadPath("empty path")
    if "\0" in path:
        raise BadPath("NUL character in path")
    if len(path) > MAX_LFN:
        raise BadPath(f"path longer than {MAX_LFN} characters")
    if path == "~" or path.startswith("~/"):
        path = (home or "/") + path[1:]
    if not path.startswith("/"):
        path = cwd.rstrip("/") + "/" + path
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        if len(part) > MAX_NAME:
            raise BadPath(f"path component longer than {MAX_NAME} characters")
        parts.append(part)
    return "/" + "/".join(parts)


def split(lfn: str) -> tuple[str, str]:
    """'/a/b/c' -> ('/a/b/', 'c'); the root is ('', '/')."""
    if lfn == "/":
        return "", "/"
    head, _, name = lfn.rpartition("/")
    return head + "/", name


def as_dir(lfn: str) -> str:
    """The directory form: always a trailing '/'."""
    return lfn if lfn.endswith("/") else lfn + "/"


def parent(lfn: str) -> str:
    return split(lfn)[0] or "/"


def prefix_end(prefix: str) -> str:
    """The smallest string greater than every string starting with *prefix*."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)
