"""The file-based source (several DNs per login in accounts.toml, directory.json written by
the commands), the file quota at access write and the job quota at submit and match."""

from __future__ import annotations

import pytest

from jalien.auth.accounts import Account, AccountMap
from jalien.directory.model import CE, CLOSED, DirectoryError
from jalien.directory.service import Directory
from jalien.directory.source import FileSource
from jalien.jobs.admission import Admission, JobLimits, JobUsage
from jalien.jobs.broker import Agent, Broker
from jalien.storage.quota import FileQuotaCheck, QuotaExceeded
from jalien.wire.errors import EXIT_QUOTA


def accounts_file(tmp_path):
    path = tmp_path / "accounts.toml"
    AccountMap(
        [
            Account(login="jdoe", dn="/CN=jdoe", roles=["users"]),
            Account(login="jdoe", dn="/CN=jdoe-new-ca", roles=["users", "alidaq"]),
            Account(login="boss", dn="/CN=boss", roles=["admin"]),
        ]
    ).save(path)
    return path


async def test_file_source_merges_dns_and_writes_its_state(tmp_path):
    directory = Directory(FileSource(accounts_file(tmp_path), tmp_path / "directory.json"))
    await directory.start()
    jdoe = directory.person("jdoe")
    assert jdoe is not None and jdoe.dns == ["/CN=jdoe", "/CN=jdoe-new-ca"]
    assert jdoe.roles == ["alidaq", "users"] and directory.members("admin") == ["boss"]
    await directory.set_quota("jdoe", "maxNbFiles", 7)
    assert directory.file_quota("jdoe").max_nb_files == 7
    with pytest.raises(DirectoryError, match="no CE"):
        await directory.set_ce_status("ALICE::X::Y", CLOSED)
    # a CE written by an admin into directory.json, then closed
    source = directory.source
    assert isinstance(source, FileSource)
    source.set_ce_status(CE(name="ALICE::X::Y"), "open")
    await directory.refresh(force=True)
    await directory.set_ce_status("ALICE::X::Y", CLOSED)
    assert "closed" in directory.ce_refusal("alice::x::y")
    (tmp_path / "directory.json").write_text("{not json")
    with pytest.raises(DirectoryError, match=r"directory\.json"):
        await directory.refresh(force=True)
    assert directory.person("jdoe") is not None  # the last good one


async def test_file_quota_counts_writes_between_reads():
    reads = []

    async def usage(login):
        reads.append(login)
        return 900, 2

    check = FileQuotaCheck(lambda login: (1000, 3), usage, refresh=3600)
    await check.check_write("jdoe", 50, 1)  # 950 bytes, 3 files
    with pytest.raises(QuotaExceeded, match="maxNbFiles") as refused:
        await check.check_write("jdoe", 1, 1)
    assert refused.value.exitcode == EXIT_QUOTA and "nothing was written" in str(refused.value)
    assert reads == ["jdoe"]  # booked writes counted without asking again
    fresh = FileQuotaCheck(lambda login: (1000, 100), usage)
    with pytest.raises(QuotaExceeded, match="maxTotalSize"):
        await fresh.check_write("jdoe", 101, 1)


def limits(**over) -> JobLimits:
    base = dict(
        max_unfinished_jobs=5,
        max_waiting_jobs=3,
        max_parallel_jobs=1,
        max_total_cpu_cost=100,
        max_total_running_time=100,
    )
    return JobLimits(**{**base, **over})


def test_job_quota_at_submit():
    admission = Admission(lambda user: limits())
    assert admission.submit_refusal("u", JobUsage(waiting=1, running=1), 1) == ""
    why = admission.submit_refusal("u", JobUsage(waiting=2, running=2), 2)
    assert "maxUnfinishedJobs" in why and "nothing was submitted" in why
    assert "maxWaitingJobs" in admission.submit_refusal("u", JobUsage(waiting=3), 1)
    assert "maxTotalCpuCost" in admission.submit_refusal("u", JobUsage(cpu_cost=100), 1)
    assert "u" in admission.over  # held at match until its usage is under again


def test_the_broker_holds_users_over_quota(tmp_path):
    from tests.jobs.test_broker import job  # the broker tests' row maker

    broker = Broker()
    admission = Admission(lambda user: limits())
    broker.held = admission.held
    broker.add(job(1, "busy"))
    broker.add(job(2, "busy"))
    broker.add(job(3, "other"))
    got = [broker.match(Agent()) for _ in range(3)]
    assert got[2] is None  # each user runs at most one (maxParallelJobs 1)
    assert sorted(got[:2]) in ([1, 3], [2, 3])
    assert broker.waiting_of("busy") == 1 and broker.users() == {"busy"}


class _User:
    login = "jdoe"
    roles = ("users",)
    kind = None
    serial = 0


async def test_the_job_service_refuses_over_quota_and_closed_ces(tmp_path):
    from jalien.jobs.service import JobService
    from jalien.jobs.store import TaskQueueStore
    from jalien.wire.errors import RequestError
    from jalien.wire.site_api import JobOffer

    store = TaskQueueStore(tmp_path / "tq.db")
    await store.start()
    try:
        jobs = JobService(store, Broker())
        await jobs.start()
        closed = {"ALICE::S::SHUT"}
        jobs.admission = Admission(
            lambda user: limits(max_waiting_jobs=1),
            lambda ce: f"CE {ce} is closed" if ce.upper() in closed else "",
        )
        jdl = 'Executable = "/bin/true";'
        await jobs.submit(_User(), jdl, [])
        with pytest.raises(RequestError, match="maxWaitingJobs") as refused:
            await jobs.submit(_User(), jdl, [])
        assert refused.value.exitcode == EXIT_QUOTA
        assert len(await store.query(user="jdoe")) == 1  # nothing more was inserted
        shut = JobOffer(site="S", ce="ALICE::S::SHUT")
        assert jobs.count_waiting(Agent.of(shut)) == 0
        with pytest.raises(RequestError, match="CE ALICE::S::SHUT is closed"):
            await jobs.match(_User(), shut, None)
        found = await jobs.match(_User(), JobOffer(site="S", ce="ALICE::S::OPEN"), None)
        assert found is not None and found.user == "jdoe"
        usage = await jobs.job_usage("jdoe", fresh=True)
        assert (usage.waiting, usage.running) == (0, 1)
    finally:
        await store.close()


class _SharedCache:
    """Stands for the shared cache's config.snapshot namespace."""

    def __init__(self) -> None:
        self.data: bytes | None = None
        self.ttl = 0.0

    def get(self) -> bytes | None:
        return self.data

    def put(self, data: bytes, ttl: float) -> None:
        self.data, self.ttl = data, ttl


class _Down:
    name = "ldap://down"

    def load(self):
        raise DirectoryError("LDAP ldap://down: Connection refused")


async def test_processes_of_a_host_share_the_snapshot_through_the_cache(tmp_path):
    shared = _SharedCache()
    first = Directory(
        FileSource(accounts_file(tmp_path), tmp_path / "directory.json"), cache=shared, ttl=60
    )
    await first.refresh()
    assert shared.data is not None and shared.ttl == 60
    second = Directory(_Down(), cache=shared, ttl=60)  # type: ignore[arg-type]
    await second.refresh()  # from the cache: the source is not asked
    assert second.person("jdoe") is not None and second.error == ""
    with pytest.raises(DirectoryError):
        await second.refresh(force=True)  # resyncLDAP asks the source itself
    assert second.person("jdoe") is not None and "Connection refused" in second.status().error


async def test_a_worker_adopts_what_another_wrote_without_asking_the_source(tmp_path):
    """jcentral's workers (roles/worker_follow.py): a change read back by one process is
    taken by another from the shared cache, the source never asked; nothing new: no work."""
    shared = _SharedCache()
    source = FileSource(accounts_file(tmp_path), tmp_path / "directory.json")
    writer = Directory(source, cache=shared, ttl=60)
    await writer.refresh()
    follower = Directory(_Down(), cache=shared, ttl=60)  # type: ignore[arg-type]
    assert follower.adopt_cached() and follower.person("jdoe") is not None
    assert not follower.adopt_cached()  # the same bytes: not decoded again
    before = follower.snapshot.loaded
    await writer.refresh(force=True)  # e.g. after setCEstatus there
    assert follower.adopt_cached() and follower.snapshot.loaded > before
    assert follower.error == ""
