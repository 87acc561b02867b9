"""What each jcentral worker follows of the others (roles/workers.py): state a service keeps
in memory, changed through another worker of the host, taken from where that worker wrote
it, every ``worker_follow`` seconds (one loop, ``worker-follow``, in every worker):

- the central configuration (CE status, quotas, people) another worker wrote or re-read:
  from the shared cache (``Directory.adopt_cached``; never asks LDAP);
- placement rules added or removed and SE decommissions started through another worker:
  from lifecycle.db (``Lifecycle.follow``): the SE is read-only in every worker, worker 0
  (which runs the lifecycle loops) steps the decommission and applies the rule.

The job states, the broker and the agents' routes have their own followers
(``broker-refill``, ``live-jobs``, the agent routes); the catalogue's answers are in the
shared LMDB cache, coherent between the processes of a host by design.
"""

from __future__ import annotations

import logging

from jalien.datamovers.lifecycle import Lifecycle
from jalien.directory.service import Directory
from jalien.loops import Loop

log = logging.getLogger("jalien.workers")


def follow_loop(directory: Directory, lifecycle: Lifecycle, interval: float) -> Loop:
    async def step() -> None:
        if directory.adopt_cached():
            log.info("central configuration taken from another worker")
        await lifecycle.follow()

    return Loop("worker-follow", step, interval, logger=log)
