"""The dark-data compare (Rucio's "sandwich"), pure Python; ``sandwich_c`` is its Cython twin.

Three sorted streams of keys (PFN paths as bytes, one per line, newline kept or not, but the
same way in all three): the catalogue's replicas of an SE dumped *before* the SE was listed,
the SE's listing, and the catalogue dumped *after*. One pass, memory bounded by a batch:

- a key on the SE and in neither dump is **dark** (a file the catalogue does not know);
- a key in both dumps and not on the SE is **lost** (a replica the SE does not hold);
- anything else is fine, or changed while the listing was taken (left for the next pass).

Each stream is an iterable of batches (lists of bytes, e.g. ``file.readlines(1 << 20)``), so
that the kernel touches Python objects per key only, not per call. Keys must be
non-decreasing in each stream (equal neighbours count once); a key that goes backwards is a
``ValueError`` naming the stream. ``merge3`` calls *dark(key)* and *lost(key)* for each
finding and returns the keys read from each stream, duplicates included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

IMPLEMENTATION = "python"
NAMES = ("first dump", "listing", "second dump")


class _Cursor:
    __slots__ = ("batch", "batches", "count", "done", "head", "i", "n", "name")

    def __init__(self, batches: Iterable[list[bytes]], name: str) -> None:
        self.batches = iter(batches)
        self.batch: list[bytes] = []
        self.i = 0
        self.n = 0
        self.head = b""
        self.done = False
        self.count = 0
        self.name = name

    def _next(self) -> bytes | None:
        while self.i >= self.n:
            batch = next(self.batches, None)
            if batch is None:
                return None
            self.batch, self.i, self.n = batch, 0, len(batch)
        key = self.batch[self.i]
        self.i += 1
        self.count += 1
        return key

    def advance(self) -> None:
        """To the next key that differs from the head (the first key at the start)."""
        while True:
            key = self._next()
            if key is None:
                self.done = True
                return
            if self.count == 1 or key > self.head:
                self.head = key
                return
            if key != self.head:
                raise ValueError(f"{self.name} is not sorted: {key!r} after {self.head!r}")


def merge3(
    first: Iterable[list[bytes]],
    listing: Iterable[list[bytes]],
    second: Iterable[list[bytes]],
    dark: Callable[[bytes], object],
    lost: Callable[[bytes], object],
) -> tuple[int, int, int]:
    a, s, b = _Cursor(first, NAMES[0]), _Cursor(listing, NAMES[1]), _Cursor(second, NAMES[2])
    a.advance()
    s.advance()
    b.advance()
    while not (a.done and s.done and b.done):
        # the smallest head of the streams not yet ended
        key = b""
        found = False
        for c in (a, s, b):
            if not c.done and (not found or c.head < key):
                key, found = c.head, True
        in_a = not a.done and a.head == key
        in_s = not s.done and s.head == key
        in_b = not b.done and b.head == key
        if in_a:
            a.advance()
        if in_s:
            s.advance()
        if in_b:
            b.advance()
        if in_s:
            if not in_a and not in_b:
                dark(key)
        elif in_a and in_b:
            lost(key)
    return a.count, s.count, b.count
