"""What the catalogue benchmarks share: a caller, a realistic row, timers and the report line
(imported by bench_catalogue.py and bench_catalogue_mariadb.py, which run as scripts)."""

from __future__ import annotations

import time

from jalien.catalogue.model import Entry


class Caller:
    login = "bench"
    roles = ("users", "admin")


def row(d: str, i: int) -> Entry:
    return Entry(
        d, f"AO2D_{i:07d}.root", "f", "755", "bench", "bench", 1_000_000 + i,
        1_714_564_800_000 + i, f"{i:032x}", f"{i:08x}-1234-11ef-8000-0242ac120002", 0,
    )  # fmt: skip


async def timed(coro_fn, repeat: int = 3) -> float:
    """Best wall time of *repeat* awaits of coro_fn()."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        await coro_fn()
        best = min(best, time.perf_counter() - t0)
    return best


def raw_time(fn, repeat: int = 3) -> float:
    """Best wall time of *repeat* calls of fn() (the raw SQL baseline)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def line(label: str, ours: float, raw: float, target: str) -> None:
    print(
        f"  {label:34s} {ours * 1e3:9.1f} ms   raw SQL {raw * 1e3:8.1f} ms   "
        f"ratio {ours / raw if raw else float('nan'):5.1f}x   {target}"
    )
