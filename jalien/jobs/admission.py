"""Whether a job may enter the queue or leave it for an agent: job quotas and CE status.

The limits come from the central configuration (``jalien.directory``), handed in by the
role as functions, so that jobs/ knows nothing of LDAP:

* at submit: a user's unfinished jobs (waiting + running) plus the new ones within
  ``maxUnfinishedJobs``, the waiting ones within ``maxWaitingJobs``, and the CPU cost and
  wall time of the last 24 h below ``maxTotalCpuCost``/``maxTotalRunningTime``;
* at match: a user's running jobs below ``maxParallelJobs`` and not over their 24 h CPU
  cost or time (``held``: the broker skips their jobs, others' go first); a closed CE gets
  no job at all, and its agent is told why.

The 24 h usage is read from the task queue at each submit and, for users with waiting
jobs, by the ``job-quota`` loop (``JobService.quota_loop``); the running counts are the
broker's own, exact at every match.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec


class JobLimits(msgspec.Struct, frozen=True, kw_only=True):
    max_unfinished_jobs: int
    max_waiting_jobs: int
    max_parallel_jobs: int
    max_total_cpu_cost: int  # CPU seconds (cores x wall x price) in the last 24 h
    max_total_running_time: int  # wall seconds in the last 24 h


class JobUsage(msgspec.Struct, kw_only=True):
    waiting: int = 0
    running: int = 0
    cpu_cost: int = 0  # last 24 h
    running_time: int = 0  # last 24 h


LimitsOf = Callable[[str], JobLimits]
CeRefusal = Callable[[str], str]  # a CE's name -> why it takes no job now ("" : it does)


class Admission:
    def __init__(self, limits: LimitsOf, ce_refusal: CeRefusal | None = None) -> None:
        self.limits = limits
        self.ce_refusal: CeRefusal = ce_refusal or (lambda ce: "")
        self.over: set[str] = set()  # users over their 24 h CPU cost or time

    def note(self, user: str, usage: JobUsage) -> None:
        """Remember whether *user* is over a 24 h limit (what ``held`` answers)."""
        limits = self.limits(user)
        if (
            usage.cpu_cost >= limits.max_total_cpu_cost
            or usage.running_time >= limits.max_total_running_time
        ):
            self.over.add(user)
        else:
            self.over.discard(user)

    def submit_refusal(self, user: str, usage: JobUsage, new: int) -> str:
        """Why *user* may not add *new* jobs now ("": they may)."""
        limits = self.limits(user)
        self.note(user, usage)
        unfinished = usage.waiting + usage.running
        if unfinished + new > limits.max_unfinished_jobs:
            return (
                f"job quota exceeded for {user}: {usage.running} running + {usage.waiting} "
                f"waiting + {new} new is more than {limits.max_unfinished_jobs} "
                "(maxUnfinishedJobs); nothing was submitted"
            )
        if usage.waiting + new > limits.max_waiting_jobs:
            return (
                f"job quota exceeded for {user}: {usage.waiting} waiting + {new} new is more "
                f"than {limits.max_waiting_jobs} (maxWaitingJobs); nothing was submitted"
            )
        if usage.cpu_cost >= limits.max_total_cpu_cost:
            return (
                f"job quota exceeded for {user}: {usage.cpu_cost} s of CPU cost in the last "
                f"24 h, at most {limits.max_total_cpu_cost} (maxTotalCpuCost); nothing was "
                "submitted"
            )
        if usage.running_time >= limits.max_total_running_time:
            return (
                f"job quota exceeded for {user}: {usage.running_time} s of running time in "
                f"the last 24 h, at most {limits.max_total_running_time} "
                "(maxTotalRunningTime); nothing was submitted"
            )
        return ""

    def held(self, user: str, running: int) -> bool:
        """Whether the broker keeps *user*'s jobs back from this match."""
        return user in self.over or running >= self.limits(user).max_parallel_jobs
