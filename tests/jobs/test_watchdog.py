"""The watchdog for silent JobAgents, on both task queues: an active job goes ZOMBIE, a
SAVED job (outputs registered) is finished, a zombie is requeued once and then expires,
an agent that comes back keeps its job, and the fair-share counts stay right."""

from __future__ import annotations

import time

from jalien.jobs.watchdog import Watchdog
from tests.jobs.test_job_commands import submit

AGENT = ("site=CERN", "ce=ALICE::CERN::Fork", "ttl=3600")
LATER = 3600.0  # seconds after now: every job is silent by then


async def _running(user, site, *states: str) -> int:
    job = await submit(user)
    got = await site.call("getMatchJob", *AGENT)
    assert got.results[0]["queueId"] == str(job)
    for state in states:
        assert (await site.call("setJobStatus", str(job), state)).exitcode == 0
    return job


async def _state(user, job: int) -> str:
    return (await user.call("ps", "-j", str(job))).results[0]["status"]


async def test_silent_jobs_become_zombies_then_requeued_then_expired(job_server, connect):
    user = await connect(job_server)
    site = await connect(job_server, login="vobox")
    jobs = job_server.jobs
    dog = Watchdog(jobs, heartbeat_timeout=60, zombie_timeout=60, max_resubmits=1)
    assigned = await _running(user, site)
    running = await _running(user, site, "STARTED", "RUNNING")
    saved = await _running(user, site, "STARTED", "RUNNING", "SAVING", "SAVED")
    assert not await dog.sweep()  # everyone spoke just now
    assert jobs.broker.running["jdoe"] == 2  # SAVED no longer holds a slot

    now = time.time() + LATER
    report = await dog.sweep(now)
    assert sorted(report.zombies) == sorted([assigned, running])
    assert report.finished == [saved]
    assert await _state(user, running) == "ZOMBIE"
    assert await _state(user, saved) == "DONE"
    assert jobs.broker.running["jdoe"] == 0

    # the agent of `running` comes back: its job goes on and holds a slot again
    assert (await site.call("setJobStatus", str(running), "RUNNING")).exitcode == 0
    assert jobs.broker.running["jdoe"] == 1

    # `assigned` stays silent: requeued once (the broker offers it again) ...
    report = await dog.sweep(now + LATER)
    assert report.requeued == [assigned]
    assert await _state(user, assigned) == "WAITING"
    again = await site.call("getMatchJob", *AGENT)
    assert again.results[0]["queueId"] == str(assigned)
    # ... and after a second loss it expires
    await dog.sweep(now + 2 * LATER)
    report = await dog.sweep(now + 3 * LATER)
    assert assigned in report.expired
    assert await _state(user, assigned) == "EXPIRED"
    trace = await user.call("ps", "-trace", str(assigned))
    text = " ".join(r.get("message", "") for r in trace.results)
    assert "no heartbeat from its JobAgent" in text and "JobAgent was lost" in text


async def test_heartbeat_keeps_a_job_alive(job_server, connect):
    user = await connect(job_server)
    site = await connect(job_server, login="vobox")
    dog = Watchdog(job_server.jobs, heartbeat_timeout=60, zombie_timeout=60)
    job = await _running(user, site, "STARTED", "RUNNING")
    assert (await site.call("jobHeartbeat", str(job))).exitcode == 0
    assert not await dog.sweep(time.time() + 30)
    assert await _state(user, job) == "RUNNING"
