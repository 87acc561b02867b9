"""Sorting more lines than memory holds: runs of at most *run_size* lines sorted in memory
and written to files, then merged into one sorted file (heapq.merge over the runs, read a
batch at a time). Lines are bytes ending in b"\\n", sorted as bytes (what the sandwich
kernel compares). Blocking: call from a worker thread (``DiskSorter`` does)."""

from __future__ import annotations

import heapq
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

READ_HINT = 1 << 20  # bytes per readlines() batch


def read_batches(path: Path) -> Iterator[list[bytes]]:
    """The lines of a file in batches of about READ_HINT bytes (the kernel's input)."""
    with open(path, "rb", buffering=READ_HINT) as fh:
        while batch := fh.readlines(READ_HINT):
            yield batch


class DiskSorter:
    """Collects lines, spilling sorted runs to files under *workdir*; ``finish(out)`` writes
    them all, sorted, to *out* and removes the runs. Memory: at most *run_size* lines."""

    def __init__(self, workdir: Path, name: str, run_size: int = 500_000) -> None:
        if run_size < 1:
            raise ValueError("run_size must be >= 1")
        self.workdir = workdir
        self.name = name
        self.run_size = run_size
        self.lines: list[bytes] = []
        self.runs: list[Path] = []
        self.count = 0

    def add(self, lines: Iterable[bytes]) -> None:
        for line in lines:
            self.lines.append(line)
            if len(self.lines) >= self.run_size:
                self._spill()
        # counted once per call: the caller's batches are small against a run

    def _spill(self) -> None:
        self.lines.sort()
        run = self.workdir / f"{self.name}.run{len(self.runs)}"
        with open(run, "wb", buffering=READ_HINT) as fh:
            fh.writelines(self.lines)
        self.count += len(self.lines)
        self.runs.append(run)
        self.lines = []

    def finish(self, out: Path) -> int:
        """Writes every line added, sorted, to *out*; returns how many."""
        self.lines.sort()
        self.count += len(self.lines)
        tmp = out.with_name(out.name + ".tmp")
        with open(tmp, "wb", buffering=READ_HINT) as fh:
            if not self.runs:
                fh.writelines(self.lines)
            else:
                streams: list[Iterable[bytes]] = [_lines(r) for r in self.runs]
                streams.append(self.lines)
                fh.writelines(heapq.merge(*streams))
        os.replace(tmp, out)
        for run in self.runs:
            run.unlink(missing_ok=True)
        self.runs = []
        self.lines = []
        return self.count

    def discard(self) -> None:
        for run in self.runs:
            run.unlink(missing_ok=True)
        self.runs = []
        self.lines = []


def _lines(path: Path) -> Iterator[bytes]:
    for batch in read_batches(path):
        yield from batch
