"""How many JobAgents to submit now: pure arithmetic, so that it is tested on its own.

Free slots are the configured limits minus what the batch system reports as ours:
``max_running_agents`` bounds all our agents (queued + running), ``max_queued_agents`` the
queued ones. The demand is central's count of waiting jobs for this CE, minus the agents
that will each take one of them soon: the queued ones, and those started less than a grace
period ago (a starting agent has not asked for its job yet, so the job still counts as
waiting; without this, every cycle would submit the same demand again).
"""

from __future__ import annotations

import msgspec


class SlotCount(msgspec.Struct, frozen=True, kw_only=True):
    running: int  # agents the batch system runs for us
    queued: int  # agents it holds, not started
    starting: int  # running agents younger than the grace period (no job asked for yet)
    waiting: int  # central: waiting jobs matching this CE
    max_running: int
    max_queued: int

    @property
    def free(self) -> int:
        total = self.max_running - self.running - self.queued
        return max(0, min(total, self.max_queued - self.queued))

    @property
    def demand(self) -> int:
        return max(0, self.waiting - self.queued - self.starting)

    @property
    def to_submit(self) -> int:
        return min(self.free, self.demand)
