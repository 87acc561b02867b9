"""The job broker: which waiting job goes to the JobAgent that asks.

Waiting jobs are kept in memory, grouped in buckets of jobs that ask for the same things
(requirements text, packages, TTL, cores, memory). An agent's request is checked once per
bucket, not once per job, and the answer is cached per agent signature, so the cost of a
match depends on the number of distinct job shapes, not on the length of the queue. Fair
share: among the users with a job that fits, the one with the fewest running jobs per
unit of share goes first.

Several processes (jcentrals, workers) on one task queue hold the same jobs in the same
order: taking the oldest, they would all claim the same job and all but one lose it. Once
a claim was lost lately (``contended``), a match takes a job at random among the first
``spread`` of its queue instead, so that the processes mostly claim different jobs; a
process alone keeps the queue's order.
"""

from __future__ import annotations

import collections
import itertools
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jalien.jobs.jdl import JdlError
from jalien.jobs.requirements import compile_requirements
from jalien.jobs.store import JobRow
from jalien.wire import packages as package_names
from jalien.wire.site_api import JobOffer

BucketKey = tuple[str, frozenset[str], int, int, int]


@dataclass
class Agent:
    """What a JobAgent offers; attributes also feed `other.X` in Requirements."""

    site: str = ""
    ce: str = ""
    ttl: int = 86400
    cores: int = 1
    memory: int = 0  # bytes, 0 = no limit said
    disk: int = 0
    # the package keys it offers (wire.packages.offered_keys); None: any (says nothing)
    packages: frozenset[str] | None = None
    users: frozenset[str] | None = None  # None: any user
    partitions: frozenset[str] = frozenset()
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, offer: JobOffer) -> Agent:
        """The broker's view of a site's typed offer (the node feeds ``other.node``); an
        offer with only a packages digest gets its keys from jobs.packages.PackageOffers."""
        extra: dict[str, Any] = dict(offer.extra)
        if offer.node:
            extra["node"] = offer.node
        return cls(
            site=offer.site,
            ce=offer.ce,
            ttl=offer.ttl,
            cores=offer.cores,
            memory=offer.memory,
            disk=offer.disk,
            packages=None if offer.packages is None else package_names.offered_keys(offer.packages),
            users=None if offer.users is None else frozenset(offer.users),
            partitions=frozenset(offer.partitions),
            extra=extra,
        )

    def signature(self) -> tuple:
        return (
            self.site,
            self.ce,
            self.ttl,
            self.cores,
            self.memory,
            self.packages,
            self.users,
            self.partitions,
            tuple(sorted(self.extra.items())),
        )

    def env(self) -> dict[str, Any]:
        env: dict[str, Any] = {k.lower(): v for k, v in self.extra.items()}
        env.update(
            site=self.site,
            ce=self.ce,
            ttl=self.ttl,
            cores=self.cores,
            cpucores=self.cores,
            memory=self.memory,
            disk=self.disk,
            gridpartitions=sorted(self.partitions),
            packages=OfferedPackages(self.packages),
        )
        return env


class OfferedPackages:
    """``other.Packages`` in Requirements (AliEn's ``member(other.Packages,
    "VO_ALICE@ROOT::v6-30")``): a package is a member when the offer has its key
    (wire.packages; a bare name: any version); an offer that says nothing has them all."""

    __slots__ = ("keys",)

    def __init__(self, keys: frozenset[str] | None) -> None:
        self.keys = keys

    def __contains__(self, spec: object) -> bool:
        if self.keys is None:
            return True
        try:
            return package_names.key(str(spec)) in self.keys
        except package_names.PackageNameError:
            return False


class _Bucket:
    __slots__ = ("evaluator", "key", "queues", "size")

    def __init__(self, key: BucketKey) -> None:
        self.key = key
        try:
            self.evaluator = compile_requirements(key[0])
        except JdlError:
            self.evaluator = lambda env: False  # never matches; submit checks this earlier
        self.queues: dict[str, collections.deque[int]] = {}
        self.size = 0

    def fits(self, agent: Agent, env: Mapping[str, Any]) -> bool:
        _, packages, ttl, cores, memory = self.key
        if ttl > agent.ttl or cores > agent.cores:
            return False
        if memory and agent.memory and memory > agent.memory:
            return False
        if agent.packages is not None and not packages <= agent.packages:
            return False
        return bool(self.evaluator(env))


def _package_key(spec: str) -> str:
    """A JDL's package as the offers' keys say it; a bad name stays as is (never offered)."""
    try:
        return package_names.key(spec)
    except package_names.PackageNameError:
        return spec


class Broker:
    def __init__(self, shares: Mapping[str, float] | None = None) -> None:
        self.shares = dict(shares or {})
        self._buckets: dict[BucketKey, _Bucket] = {}
        self._where: dict[int, _Bucket] = {}
        self._fits: dict[tuple, list[_Bucket]] = {}
        self.running: collections.Counter[str] = collections.Counter()
        # users whose jobs wait this match out: (user, running) -> held (job quotas)
        self.held: Callable[[str, int], bool] | None = None
        self.spread = 64  # while contended: a match takes one of this many oldest at random
        self._contended_until = 0.0  # time.monotonic()
        self._random = random.Random()

    def contended(self, seconds: float = 60.0) -> None:
        """A claim was lost to another process: spread the matches for *seconds*."""
        self._contended_until = time.monotonic() + seconds

    def __len__(self) -> int:
        return len(self._where)

    @staticmethod
    def key_of(job: JobRow) -> BucketKey:
        packages = frozenset(_package_key(p) for p in job.packages.split(",") if p)
        return (job.requirements, packages, job.ttl, job.cores, job.memory)

    def add(self, job: JobRow) -> bool:
        """Index a waiting job; False when it is in the index already (it stays where it
        is): a submission enters its jobs while the refill loop may have read them from the
        database meanwhile, and the same id twice in a queue made its second match fail."""
        if job.id in self._where:
            return False
        key = self.key_of(job)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(key)
            self._fits.clear()  # a new shape: agents' answers must be worked out again
        bucket.queues.setdefault(job.user, collections.deque()).append(job.id)
        bucket.size += 1
        self._where[job.id] = bucket
        return True

    def add_many(self, jobs: Iterable[JobRow]) -> None:
        for job in jobs:
            self.add(job)

    def discard(self, job_id: int) -> None:
        """A waiting job left the queue another way (killed, expired)."""
        bucket = self._where.pop(job_id, None)
        if bucket is None:
            return
        for user, queue in list(bucket.queues.items()):
            try:
                queue.remove(job_id)
            except ValueError:
                continue
            bucket.size -= 1
            if not queue:
                del bucket.queues[user]
            break

    def _fitting(self, agent: Agent) -> list[_Bucket]:
        sig = agent.signature()
        fitting = self._fits.get(sig)
        if fitting is None:
            env = agent.env()
            fitting = [b for b in self._buckets.values() if b.fits(agent, env)]
            if len(self._fits) > 10_000:
                self._fits.clear()
            self._fits[sig] = fitting
        return fitting

    def count(self, agent: Agent) -> int:
        """How many waiting jobs this agent could run (a VoBox sizes its submission)."""
        users = agent.users
        return sum(
            b.size if users is None else sum(len(q) for u, q in b.queues.items() if u in users)
            for b in self._fitting(agent)
        )

    def __contains__(self, job_id: int) -> bool:
        return job_id in self._where

    def ids(self) -> set[int]:
        """The ids of the jobs in the buckets (the resync's comparison with the database)."""
        return set(self._where)

    def match(self, agent: Agent) -> int | None:
        """The id of the job this agent should run (removed from the index), or None."""
        found = self.match_job(agent)
        return None if found is None else found[0]

    def match_job(self, agent: Agent, more: int = 0) -> tuple[int, str, tuple[int, ...]] | None:
        """(id, user, fallbacks) of the job this agent should run (removed from the index;
        its user's running count taken: ``finished`` gives it back if the claim fails), or
        None. *fallbacks*: up to *more* next jobs of the same queue, left in the index, for
        the claim to take when the first one went elsewhere (another jcentral's broker
        offered it too)."""
        best: tuple[float, int, _Bucket, str] | None = None
        users = agent.users
        held = self.held
        for bucket in self._fitting(agent):
            for user, queue in bucket.queues.items():
                if users is not None and user not in users:
                    continue
                if held is not None and held(user, self.running[user]):
                    continue
                load = self.running[user] / self.shares.get(user, 1.0)
                candidate = (load, queue[0], bucket, user)
                if best is None or candidate[:2] < best[:2]:
                    best = candidate
        if best is None:
            return None
        _, job_id, bucket, user = best
        queue = bucket.queues[user]
        at = 0
        if self.spread > 1 and self._contended_until > time.monotonic():
            at = self._random.randrange(min(len(queue), self.spread))
        if at:
            job_id = queue[at]
            del queue[at]
        else:
            queue.popleft()
        fallbacks = tuple(itertools.islice(queue, at, at + more)) if more else ()
        bucket.size -= 1
        if not queue:
            del bucket.queues[user]
        del self._where[job_id]
        self.running[user] += 1
        return job_id, user, fallbacks

    def taken(self, job_id: int, user: str) -> None:
        """A job claimed for a match in place of the one ``match_job`` chose (one of its
        fallbacks): out of the index, counted as running."""
        self.discard(job_id)
        self.running[user] += 1

    def waiting_of(self, user: str) -> int:
        """How many jobs of *user* wait."""
        return sum(len(b.queues.get(user, ())) for b in self._buckets.values())

    def users(self) -> set[str]:
        """The users with waiting jobs."""
        return {user for bucket in self._buckets.values() for user in bucket.queues}

    def resumed(self, user: str) -> None:
        """A job of *user* came back to the active states (its lost agent reported again)."""
        self.running[user] += 1

    def finished(self, user: str) -> None:
        """A job of *user* left the active states."""
        if self.running[user] > 0:
            self.running[user] -= 1
