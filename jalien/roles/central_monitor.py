"""Monitoring at jcentral, composed (docs/monitoring.md): the grid as sites report it
(``monitor.grid.GridView``) with its minutes in the shared cache, ``spy`` through the JobAgents'
connections (``jobs.spy.SpyDesk``), logs on demand the same way (``jobs.logs_desk``), their
commands, and the web page."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from jalien.auth import policy
from jalien.auth.tls import server_context
from jalien.cache.store import CacheStore, Policy
from jalien.catalogue.service import Catalogue
from jalien.commands.monitor_cmds import MonitorCommands
from jalien.commands.table import CommandTable
from jalien.config import Settings
from jalien.jobs.logs_desk import LogsDesk
from jalien.jobs.service import JobService
from jalien.jobs.spy import SpyDesk
from jalien.loops import Loop, LoopRegistry
from jalien.metrics import Metrics
from jalien.monitor.grid import HISTORY_SECONDS, AgentState, GridView, Minute, SiteState
from jalien.monitor.page import MonitorPage
from jalien.net.identity import Identity
from jalien.net.server import Server

MINUTES_NS = "monitor.minutes"
MINUTES_POLICY = Policy(max_entries=8 * 1440, ttl=HISTORY_SECONDS, lru=False, private=True)
# the latest report of each CE and agent and the recent errors, for a host's workers
LIVE_NS = "monitor.live"
LIVE_POLICY = Policy(max_entries=150_000, ttl=3600.0, lru=False, private=True)
# the agents that asked for work lately, for jobListMatch on every worker
ASKED_NS = "jobs.asked"
ASKED_POLICY = Policy(max_entries=10_000, ttl=86400.0, lru=False, private=True)


class CacheRollups:
    """The shared LMDB cache as the grid's minute store (``monitor.grid.RollupStore``), or
    as its live picture shared by a host's workers (``LIVE_NS``)."""

    def __init__(
        self,
        store: CacheStore,
        namespace: str = MINUTES_NS,
        policy: Policy = MINUTES_POLICY,
        most: int = 20_000,
    ) -> None:
        self.store = store
        self.namespace = namespace
        self.most = most
        store.policies.setdefault(namespace, policy)

    def put(self, key: bytes, value: bytes, ttl: float) -> None:
        self.store.set(self.namespace, key, value, ttl)

    def scan(self) -> list[tuple[bytes, bytes]]:
        now_ms = time.time() * 1000.0
        return [
            (key, value)
            for key, _size, expires, value in self.store.entries(
                self.namespace, self.most, values=True
            )
            if value is not None and (expires == 0 or expires > now_ms)
        ]


@dataclass
class CentralMonitor:
    grid: GridView
    spy: SpyDesk
    logs: LogsDesk


def build_monitor(
    jobs: JobService, cache: CacheStore | None, *, shared: bool = False
) -> CentralMonitor:
    """*shared*: the live picture through the cache too (several workers of a host)."""
    store = CacheRollups(cache) if cache is not None else None
    live = None
    if shared and cache is not None:
        live = CacheRollups(cache, LIVE_NS, LIVE_POLICY, most=LIVE_POLICY.max_entries)
    return CentralMonitor(GridView(store, shared=live), SpyDesk(jobs), LogsDesk(jobs))


def monitor_commands(table: CommandTable, jobs: JobService, monitor: CentralMonitor) -> None:
    MonitorCommands(table, monitor.spy, monitor.grid, jobs.live, monitor.logs).register()


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


class PageState:
    """What the monitoring page shows a caller (admins everything, users their own jobs),
    computed at most once per *every* seconds per kind of caller."""

    def __init__(
        self,
        monitor: CentralMonitor,
        jobs: JobService,
        catalogue: Catalogue,
        loops: LoopRegistry,
        metrics: Metrics | None,
        local_se: tuple[str, Path] | None = None,
        every: float = 1.0,
    ) -> None:
        self.monitor = monitor
        self.jobs = jobs
        self.catalogue = catalogue
        self.loops = loops
        self.metrics = metrics
        self.local_se = local_se  # (name, root) of the embedded SE: its space is known here
        self.every = every
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}

    async def __call__(self, identity: Identity) -> dict[str, Any]:
        admin = policy.is_admin(identity)
        key = "" if admin else identity.login
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self.every:
            return hit[1]
        state = await self._state(identity.login, admin)
        if len(self._cache) > 1000:
            self._cache.clear()
        self._cache[key] = (now, state)
        return state

    async def _state(self, login: str, admin: bool) -> dict[str, Any]:
        grid = self.monitor.grid.snapshot(None if admin else login)
        store = self.jobs.store
        rows = await (store.query(limit=2000) if admin else store.query(user=login, limit=2000))
        by_user: dict[str, dict[str, int]] = {}
        for row in rows:
            states = by_user.setdefault(row.user, {})
            states[row.job_state.value] = states.get(row.job_state.value, 0) + 1
        if admin:
            by_state = {str(k): v for k, v in (await self.jobs.store.summary()).items()}
        else:
            by_state = {}
            for states in by_user.values():
                for state, n in states.items():
                    by_state[state] = by_state.get(state, 0) + n
        since = time.time() - 6 * 3600
        history = await asyncio.to_thread(self.monitor.grid.history, since)
        return {
            "time": time.time(),
            "user": login,
            "admin": admin,
            "jobs": {"by_state": by_state, "by_user": by_user},
            "sites": [_site(s) for s in grid.sites],
            "agents": [_agent(a) for a in grid.agents[-500:]],
            "ses": await self._ses(),
            "transfers": dict(self.metrics.transfers) if self.metrics is not None else {},
            "loops": [msgspec.to_builtins(s) for s in self.loops.list()] if admin else [],
            "errors": [msgspec.to_builtins(e) for e in grid.errors[-50:]],
            "history": [_minute(m) for m in history],
        }

    async def _ses(self) -> list[dict[str, Any]]:
        out = []
        for se in await self.catalogue.list_ses():
            used = free = None
            if self.local_se is not None and se.name == self.local_se[0]:
                with contextlib.suppress(OSError):
                    usage = shutil.disk_usage(self.local_se[1])
                    used, free = usage.used, usage.free
            out.append({"name": se.name, "site": se.site, "protocols": ",".join(se.protocols),
                        "used": used, "free": free})  # fmt: skip
        return out


def _site(state: SiteState) -> dict[str, Any]:
    r = state.report
    return {"site": r.site, "ce": r.ce, "slots": r.max_running, "running": r.running,
            "queued": r.queued, "starting": r.starting, "waiting": r.waiting,
            "reported": state.received}  # fmt: skip


def _agent(state: AgentState) -> dict[str, Any]:
    r = state.report
    usage = r.usage
    return {"node": r.node, "ce": r.ce, "site": r.site, "job": r.queue_id,
            "cpu": usage.cpu if usage else 0.0, "rss": usage.rss if usage else 0,
            "reported": state.received}  # fmt: skip


def _minute(m: Minute) -> dict[str, Any]:
    return {"time": m.time, "busy_agents": m.busy_agents, "running_agents": m.running_agents,
            "waiting_jobs": m.waiting_jobs,
            "running_jobs": m.counters.get("jobs.RUNNING", 0.0)}  # fmt: skip


async def start_page(
    settings: Settings, server: Server, state: PageState, metrics: Metrics | None
) -> MonitorPage | None:
    """The monitoring page on monitor_web_port (HTTPS, grid certificates; -1: none)."""
    if settings.monitor_web_port < 0:
        return None
    context = server_context(settings.host_cert_path, settings.host_key_path, settings.ca_dir_path)
    page = MonitorPage(
        server.authenticator,
        state,
        metrics=metrics.exposition if metrics is not None else None,
        interval=settings.monitor_web_interval,
    )
    port = await page.start(
        settings.listen, settings.monitor_web_port, context, reuse_port=settings.shared_ports
    )
    print(f"monitoring page: https://{settings.listen[0]}:{port}/monitor", flush=True)
    return page
