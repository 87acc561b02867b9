"""Members of a ZIP archive on storage (a job's OutputArchive), read with ranged reads:
the central directory for ``archiveList`` and a member's size for ``access read
archive.zip#member``; a member's bytes for ``cp archive.zip#member``. Only the byte
ranges that zipfile asks for are fetched (the end of the archive, then the member), never
the whole archive.

*read_at(offset, length)* is how bytes are fetched (an HTTP range request with a read
envelope, or a local file in tests); zipfile runs over a sparse view of what was fetched,
and a read of bytes not fetched yet fetches them and starts again.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec

ReadAt = Callable[[int, int], Awaitable[bytes]]
T = TypeVar("T")
FETCH = 1 << 20  # at least this much per ranged read
ROUNDS = 64  # ranged reads at most per operation
MAX_MEMBER = 256 << 20  # what cp reads out of an archive in one piece


class ArchiveError(ValueError):
    """Not a ZIP archive, no such member, or a member too large; the message says which."""


class Member(msgspec.Struct, frozen=True):
    name: str
    size: int  # uncompressed
    compressed: int
    crc: int


class _Missing(Exception):
    def __init__(self, offset: int, length: int) -> None:
        self.offset, self.length = offset, length


class _Sparse(io.RawIOBase):
    """A seekable read-only file of *size* bytes of which some ranges are known."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.pos = 0
        self.parts: list[tuple[int, bytes]] = []

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.size}[whence]
        if base + offset < 0:
            raise OSError("seek before the start")
        self.pos = base + offset
        return self.pos

    def read(self, n: int | None = -1) -> bytes:
        end = self.size if n is None or n < 0 else min(self.pos + n, self.size)
        if end <= self.pos:
            return b""
        for start, data in self.parts:
            if start <= self.pos and end <= start + len(data):
                out = data[self.pos - start : end - start]
                self.pos = end
                return out
        raise _Missing(self.pos, end - self.pos)

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def, override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


async def _run(read_at: ReadAt, sparse: _Sparse, step: Callable[[], T]) -> T:
    for _ in range(ROUNDS):
        try:
            return step()
        except _Missing as miss:
            start, wanted = miss.offset, miss.length
        except zipfile.BadZipFile as exc:
            raise ArchiveError(f"not a ZIP archive ({exc})") from None
        length = min(max(wanted, FETCH), sparse.size - start)
        data = await read_at(start, length)
        if len(data) != length:
            raise ArchiveError(f"short read at {start}: {len(data)} of {length} bytes")
        sparse.parts.append((start, data))
    raise ArchiveError(f"more than {ROUNDS} reads")


def _members(sparse: _Sparse) -> list[Member]:
    sparse.seek(0)
    with zipfile.ZipFile(sparse) as zf:
        return [
            Member(i.filename, i.file_size, i.compress_size, i.CRC)
            for i in zf.infolist()
            if not i.is_dir()
        ]


async def list_members(read_at: ReadAt, size: int) -> list[Member]:
    """The files in the archive of *size* bytes, in the archive's order."""
    if size < 22:
        raise ArchiveError("not a ZIP archive (too small)")
    sparse = _Sparse(size)
    return await _run(read_at, sparse, lambda: _members(sparse))


async def read_member(read_at: ReadAt, size: int, name: str, limit: int = MAX_MEMBER) -> bytes:
    """One member's bytes (its CRC checked by zipfile)."""
    sparse = _Sparse(size)
    members = {m.name: m for m in await _run(read_at, sparse, lambda: _members(sparse))}
    member = members.get(name)
    if member is None:
        raise ArchiveError(f"no member {name} in the archive")
    if member.size > limit:
        raise ArchiveError(f"member {name} is larger than {limit} bytes")

    def extract() -> bytes:
        sparse.seek(0)
        with zipfile.ZipFile(sparse) as zf, zf.open(name) as fh:
            return fh.read()

    return await _run(read_at, sparse, extract)


def split_member(lfn: str) -> tuple[str, str]:
    """'/a/out.zip#stdout' -> ('/a/out.zip', 'stdout'); no '#': (lfn, '')."""
    archive, _, member = lfn.partition("#")
    return archive, member


__all__ = ["ArchiveError", "Member", "list_members", "read_member", "split_member"]
