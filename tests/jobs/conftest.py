"""Task queues to run the same job tests against (SQLite always, MariaDB when a server is
reachable: tests/catalogue/mariadb_servers.py), and a server with the job commands."""

from __future__ import annotations

import pytest

from jalien.jobs.broker import Broker
from jalien.jobs.service import JobService
from jalien.jobs.store import TaskQueueStore
from tests.catalogue.mariadb_servers import mariadb_dsn, mariadb_system  # noqa: F401


@pytest.fixture
def make_queue(request, tmp_path):
    """make_queue(kind) -> an unstarted task queue; every call on one database, so that
    two queues stand for two jcentral processes sharing it."""

    def make(kind: str):
        if kind == "sqlite":
            return TaskQueueStore(tmp_path / "tq.db")
        from jalien.jobs.mariadb_store import MariaDBTaskQueue

        return MariaDBTaskQueue(request.getfixturevalue("mariadb_dsn"))

    return make


@pytest.fixture(params=["sqlite", "mariadb"])
def queue_kind(request) -> str:
    return request.param


@pytest.fixture
async def taskqueue(make_queue, queue_kind):
    store = make_queue(queue_kind)
    await store.start()
    yield store
    await store.close()


@pytest.fixture
async def job_server(make_server, taskqueue):
    from jalien.commands.job_cmds import JobCommands

    jobs = JobService(taskqueue, Broker())
    await jobs.start()
    server = await make_server(add_commands=lambda table: JobCommands(table, jobs).register())
    server.jobs = jobs
    return server
