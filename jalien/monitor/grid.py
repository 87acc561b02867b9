"""Central's picture of the grid, made only of what the sites report upstream (MonALISA's
role): each VoBox's ``SiteReport`` after its cycles, each JobAgent's ``AgentReport`` while
it lives (``wire.monitor_api``). No connection goes into a site.

Bounded everywhere: the latest report per CE and per agent (agents silent for ``agent_ttl``
are dropped, at most ``max_agents`` kept), the last ``MAX_RECENT_ERRORS`` errors, and the
history: one ``Minute`` rollup per minute, written to the shared store (``RollupStore``: the
LMDB cache's ``monitor.minutes`` namespace, a day's TTL) by the ``monitor-rollup`` loop and
read back for the page's plots.

Several processes of a host (jcentral's workers) each receive the reports of the sites and
agents connected to them: with a ``shared`` store (the cache's ``monitor.live``) each report
and error is written there too, and ``snapshot`` (the page, ``gridstatus``) merges what every
process received, the latest report of a CE or an agent winning. The minutes stay per
process (summed by ``history``).
"""

from __future__ import annotations

import collections
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import msgspec

from jalien.loops import Loop
from jalien.wire.monitor_api import MAX_ERRORS, AgentReport, SiteReport, Usage

log = logging.getLogger("jalien.monitor")

MAX_RECENT_ERRORS = 200
SITE_TTL = 3600.0  # a CE's latest report in the shared picture (a VoBox reports every cycle)
ERROR_TTL = 3600.0
HISTORY_SECONDS = 86400.0  # a day of minutes


class RollupStore(Protocol):
    """Where the minutes go (the role adapts the shared cache to it)."""

    def put(self, key: bytes, value: bytes, ttl: float) -> None: ...
    def scan(self) -> list[tuple[bytes, bytes]]: ...


class SiteState(msgspec.Struct, kw_only=True):
    report: SiteReport
    received: float
    reporter: str  # the login of the VoBox that sent it


class AgentState(msgspec.Struct, kw_only=True):
    report: AgentReport
    received: float
    user: str = ""  # the owner of the job it runs, when central knows it


class RecentError(msgspec.Struct, kw_only=True):
    time: float
    where: str
    text: str


class Minute(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One minute of the grid: sums over the CEs and agents that reported, and the counters
    the role adds (jobs by state, requests)."""

    time: int  # the minute's start, seconds since the epoch
    ces: int = 0
    slots: int = 0
    running_agents: int = 0
    queued_agents: int = 0
    waiting_jobs: int = 0
    agents: int = 0  # agents that reported within agent_ttl
    busy_agents: int = 0  # of which running a job
    cpu: float = 0.0  # seconds of CPU of the payloads, summed over the busy agents
    rss: int = 0  # bytes
    errors: int = 0  # errors reported in the minute
    counters: dict[str, float] = {}


class GridSnapshot(msgspec.Struct, kw_only=True):
    time: float
    sites: list[SiteState]
    agents: list[AgentState]
    errors: list[RecentError]


_minute_encoder = msgspec.msgpack.Encoder()
_minute_decoder = msgspec.msgpack.Decoder(Minute)


class GridView:
    def __init__(
        self,
        store: RollupStore | None = None,
        *,
        shared: RollupStore | None = None,
        agent_ttl: float = 600.0,
        max_agents: int = 100_000,
        max_sites: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.shared = shared  # the picture every process of the host writes and merges
        self._error_seq = 0
        self.agent_ttl = agent_ttl
        self.max_agents = max_agents
        self.max_sites = max_sites
        self.clock = clock
        self.sites: dict[str, SiteState] = {}
        self.agents: collections.OrderedDict[str, AgentState] = collections.OrderedDict()
        self.errors: collections.deque[RecentError] = collections.deque(maxlen=MAX_RECENT_ERRORS)
        self.reports = 0
        self._errors_in_minute = 0
        self._key = f"{os.getpid()}".encode()  # several jcentral processes share the store
        self.minutes: collections.deque[Minute] = collections.deque(maxlen=1440)

    # -- what the sites say
    def site(self, reporter: str, report: SiteReport) -> None:
        key = f"{report.site}/{report.ce}"
        if key not in self.sites and len(self.sites) >= self.max_sites:
            raise ValueError(f"more than {self.max_sites} CEs report")
        state = SiteState(report=report, received=self.clock(), reporter=reporter)
        self.sites[key] = state
        if self.shared is not None:
            self.shared.put(b"s:" + key.encode(), _site_encoder.encode(state), SITE_TTL)
        self.reports += 1
        self._note_errors(f"{key} (VoBox)", report.errors)

    def agent(self, identity_key: str, report: AgentReport, user: str = "") -> None:
        """A JobAgent's report; *identity_key* names the agent (its token's serial)."""
        agents = self.agents
        agents.pop(identity_key, None)
        state = AgentState(report=report, received=self.clock(), user=user)
        agents[identity_key] = state
        if self.shared is not None:
            key = b"a:" + identity_key.encode()
            self.shared.put(key, _agent_encoder.encode(state), self.agent_ttl)
        while len(agents) > self.max_agents:
            agents.popitem(last=False)
        self.reports += 1
        where = f"{report.site}/{report.ce} {report.node}" + (
            f" job {report.queue_id}" if report.queue_id else ""
        )
        self._note_errors(where, report.errors)

    def _note_errors(self, where: str, errors: list[str]) -> None:
        now = self.clock()
        for text in errors[-MAX_ERRORS:]:
            error = RecentError(time=now, where=where, text=text[:500])
            self.errors.append(error)
            self._errors_in_minute += 1
            if self.shared is not None:
                self._error_seq += 1
                key = f"e:{now:017.6f}:{self._key.decode()}:{self._error_seq}".encode()
                self.shared.put(key, _error_encoder.encode(error), ERROR_TTL)

    def forget_silent(self) -> int:
        """Drop the agents that said nothing for agent_ttl (oldest first: ordered by report)."""
        limit = self.clock() - self.agent_ttl
        dropped = 0
        agents = self.agents
        while agents:
            key, state = next(iter(agents.items()))
            if state.received >= limit:
                break
            del agents[key]
            dropped += 1
        return dropped

    # -- what the page and the commands read
    def snapshot(self, user: str | None = None) -> GridSnapshot:
        """Everything, or for *user* only the agents running their jobs (sites are shown
        to everyone: slots and counts, no names of others' jobs)."""
        sites, agents_by_key, errors = self._merged()
        agents = list(agents_by_key.values())
        if user is not None:
            agents = [a for a in agents if a.user == user]
        return GridSnapshot(
            time=self.clock(),
            sites=sorted(sites.values(), key=lambda s: (s.report.site, s.report.ce)),
            agents=agents,
            errors=errors if user is None else [],
        )

    def _merged(
        self,
    ) -> tuple[dict[str, SiteState], dict[str, AgentState], list[RecentError]]:
        """This process's picture, with what the other processes of the host received
        (``shared``): per CE and per agent the latest report; the latest errors."""
        sites = dict(self.sites)
        agents = dict(self.agents)
        errors = list(self.errors)
        if self.shared is None:
            return sites, agents, errors
        shared_errors: list[RecentError] = []
        silent = self.clock() - self.agent_ttl
        for key, raw in self.shared.scan():
            kind, _, name = key.partition(b":")
            try:
                if kind == b"s":
                    site = _site_decoder.decode(raw)
                    have = sites.get(name.decode())
                    if have is None or have.received < site.received:
                        sites[name.decode()] = site
                elif kind == b"a":
                    agent = _agent_decoder.decode(raw)
                    mine = agents.get(name.decode())
                    if agent.received >= silent and (
                        mine is None or mine.received < agent.received
                    ):
                        agents[name.decode()] = agent
                elif kind == b"e":
                    shared_errors.append(_error_decoder.decode(raw))
            except (msgspec.DecodeError, UnicodeDecodeError):
                continue
        if shared_errors:  # every process's, ours included (written as they came)
            errors = sorted(shared_errors, key=lambda e: e.time)[-MAX_RECENT_ERRORS:]
        ordered = dict(sorted(agents.items(), key=lambda kv: kv[1].received))
        return sites, ordered, errors

    def minute(self, counters: dict[str, float] | None = None) -> Minute:
        now = self.clock()
        self.forget_silent()
        sites = [s.report for s in self.sites.values()]
        busy = [a.report for a in self.agents.values() if a.report.queue_id]
        usage = [a.usage for a in busy if a.usage is not None]
        minute = Minute(
            time=int(now // 60 * 60),
            ces=len(sites),
            slots=sum(s.max_running for s in sites),
            running_agents=sum(s.running for s in sites),
            queued_agents=sum(s.queued for s in sites),
            waiting_jobs=sum(max(0, s.waiting) for s in sites),
            agents=len(self.agents),
            busy_agents=len(busy),
            cpu=sum(u.cpu for u in usage),
            rss=sum(u.rss for u in usage),
            errors=self._errors_in_minute,
            counters=dict(counters or {}),
        )
        self._errors_in_minute = 0
        return minute

    # -- the history
    def record(self, minute: Minute) -> None:
        self.minutes.append(minute)
        if self.store is not None:
            key = f"{minute.time:012d}:".encode() + self._key
            self.store.put(key, _minute_encoder.encode(minute), HISTORY_SECONDS)

    def history(self, since: float = 0.0) -> list[Minute]:
        """The minutes since *since* (the shared store's, merged over the processes that
        wrote them: the same minute of two jcentrals is summed), oldest first."""
        if self.store is None:
            return [m for m in self.minutes if m.time >= since]
        merged: dict[int, Minute] = {}
        for _key, raw in self.store.scan():
            try:
                minute = _minute_decoder.decode(raw)
            except msgspec.DecodeError:
                continue
            if minute.time < since:
                continue
            have = merged.get(minute.time)
            merged[minute.time] = minute if have is None else _sum(have, minute)
        return [merged[t] for t in sorted(merged)]

    def rollup_loop(
        self, counters: Callable[[], Awaitable[dict[str, float]]] | None = None, every: float = 60.0
    ) -> Loop:
        async def step() -> None:
            extra = await counters() if counters is not None else {}
            self.record(self.minute(extra))

        return Loop("monitor-rollup", step, every, logger=log)


def _sum(a: Minute, b: Minute) -> Minute:
    counters = dict(a.counters)
    for k, v in b.counters.items():
        counters[k] = counters.get(k, 0.0) + v
    return Minute(
        time=a.time,
        ces=a.ces + b.ces,
        slots=a.slots + b.slots,
        running_agents=a.running_agents + b.running_agents,
        queued_agents=a.queued_agents + b.queued_agents,
        waiting_jobs=a.waiting_jobs + b.waiting_jobs,
        agents=a.agents + b.agents,
        busy_agents=a.busy_agents + b.busy_agents,
        cpu=a.cpu + b.cpu,
        rss=a.rss + b.rss,
        errors=a.errors + b.errors,
        counters=counters,
    )


def usage_of(usage: Usage | None) -> dict[str, float]:
    if usage is None:
        return {}
    return {f: float(getattr(usage, f)) for f in Usage.__struct_fields__}


_site_encoder = msgspec.msgpack.Encoder()
_agent_encoder = _site_encoder
_error_encoder = _site_encoder
_site_decoder = msgspec.msgpack.Decoder(SiteState)
_agent_decoder = msgspec.msgpack.Decoder(AgentState)
_error_decoder = msgspec.msgpack.Decoder(RecentError)
