"""Members of a ZIP archive read with ranged reads only (jalien.storage.archive)."""

from __future__ import annotations

import io
import os
import zipfile

import pytest

from jalien.storage.archive import ArchiveError, list_members, read_member, split_member


def make_zip(members: dict[str, bytes], comment: bytes = b"") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        zf.comment = comment
    return buf.getvalue()


class Ranged:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.reads: list[tuple[int, int]] = []

    async def __call__(self, offset: int, length: int) -> bytes:
        self.reads.append((offset, length))
        return self.data[offset : offset + length]


BIG = os.urandom(3 << 20)  # incompressible: the archive is larger than one ranged read


async def test_lists_and_reads_members_without_fetching_everything():
    data = make_zip({"stdout": b"hello\n", "big.bin": BIG, "sub/log.txt": b"x" * 100})
    source = Ranged(data)
    members = await list_members(source, len(data))
    assert [(m.name, m.size) for m in members] == [
        ("stdout", 6),
        ("big.bin", len(BIG)),
        ("sub/log.txt", 100),
    ]
    assert sum(n for _, n in source.reads) < len(data) // 2  # the end of it only
    source.reads.clear()
    assert await read_member(source, len(data), "stdout") == b"hello\n"
    assert await read_member(Ranged(data), len(data), "big.bin") == BIG


async def test_an_archive_comment_is_no_problem():
    data = make_zip({"a": b"1"}, comment=b"c" * 60000)
    assert [m.name for m in await list_members(Ranged(data), len(data))] == ["a"]


async def test_not_a_zip_missing_member_too_large():
    with pytest.raises(ArchiveError, match="not a ZIP archive"):
        await list_members(Ranged(b"x" * 5000), 5000)
    with pytest.raises(ArchiveError, match="too small"):
        await list_members(Ranged(b"x"), 1)
    data = make_zip({"a": b"12345"})
    with pytest.raises(ArchiveError, match="no member b"):
        await read_member(Ranged(data), len(data), "b")
    with pytest.raises(ArchiveError, match="larger than 4 bytes"):
        await read_member(Ranged(data), len(data), "a", limit=4)


async def test_a_short_read_is_an_error():
    data = make_zip({"a": b"1"})

    async def short(offset, length):
        return data[offset : offset + length - 1]

    with pytest.raises(ArchiveError, match="short read"):
        await list_members(short, len(data))


def test_split_member():
    assert split_member("/a/out.zip#stdout") == ("/a/out.zip", "stdout")
    assert split_member("/a/b") == ("/a/b", "")
