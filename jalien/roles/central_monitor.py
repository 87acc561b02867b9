"""Monitoring at jcentral, composed (docs/monitoring.md): the grid as sites report it
(``monitor.grid.GridView``) with its minutes in the shared cache, ``spy`` through the JobAgents'
connections (``jobs.spy.SpyDesk``), their commands, and the web page."""

from __future__ import annotations

import time
from dataclasses import dataclass

from jalien.cache.store import CacheStore, Policy
from jalien.commands.monitor_cmds import MonitorCommands
from jalien.commands.table import CommandTable
from jalien.jobs.service import JobService
from jalien.jobs.spy import SpyDesk
from jalien.loops import Loop
from jalien.metrics import Metrics
from jalien.monitor.grid import HISTORY_SECONDS, GridView

MINUTES_NS = "monitor.minutes"
MINUTES_POLICY = Policy(max_entries=8 * 1440, ttl=HISTORY_SECONDS, lru=False, private=True)


class CacheRollups:
    """The shared LMDB cache as the grid's minute store (``monitor.grid.RollupStore``)."""

    def __init__(self, store: CacheStore) -> None:
        self.store = store
        store.policies.setdefault(MINUTES_NS, MINUTES_POLICY)

    def put(self, key: bytes, value: bytes, ttl: float) -> None:
        self.store.set(MINUTES_NS, key, value, ttl)

    def scan(self) -> list[tuple[bytes, bytes]]:
        now_ms = time.time() * 1000.0
        return [
            (key, value)
            for key, _size, expires, value in self.store.entries(MINUTES_NS, 20_000, values=True)
            if value is not None and (expires == 0 or expires > now_ms)
        ]


@dataclass
class CentralMonitor:
    grid: GridView
    spy: SpyDesk


def build_monitor(jobs: JobService, cache: CacheStore | None) -> CentralMonitor:
    store = CacheRollups(cache) if cache is not None else None
    return CentralMonitor(GridView(store), SpyDesk(jobs))


def monitor_commands(table: CommandTable, jobs: JobService, monitor: CentralMonitor) -> None:
    MonitorCommands(table, monitor.spy, monitor.grid, jobs.live).register()


def rollup_loop(
    monitor: CentralMonitor, jobs: JobService, metrics: Metrics | None, every: float = 60.0
) -> Loop:
    """Each minute: the grid's sums, jobs by state and requests answered, into the history."""

    async def counters() -> dict[str, float]:
        out = {f"jobs.{state}": float(n) for state, n in (await jobs.store.summary()).items()}
        if metrics is not None and metrics.requests is not None:
            snap = metrics.requests.snapshot()
            out["requests"] = float(sum(sum(row[0]) for row in snap.values()))
        return out

    return monitor.grid.rollup_loop(counters, every)
