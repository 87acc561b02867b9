"""A server with the job commands on a fresh task queue."""

from __future__ import annotations

import pytest

from jalien.jobs.broker import Broker
from jalien.jobs.service import JobService
from jalien.jobs.store import TaskQueueStore


@pytest.fixture
async def job_server(make_server, tmp_path):
    from jalien.commands.job_cmds import JobCommands

    store = TaskQueueStore(tmp_path / "tq.db")
    await store.start()
    jobs = JobService(store, Broker())
    await jobs.start()
    server = await make_server(add_commands=lambda table: JobCommands(table, jobs).register())
    server.jobs = jobs
    yield server
    await store.close()
