"""Package-aware matching at central: a node's offer names its packages by digest, the list
only when central asks; a job with Packages goes only where they are (a bare name: any
version); a job no node can serve says why in ps -trace and jobListMatch; ``packages``
lists what the grid offers, as JAliEn's command does."""

from __future__ import annotations

from jalien.jobs.broker import Agent, Broker
from jalien.jobs.packages import PackageOffers, UnknownDigest
from jalien.wire import packages as names
from jalien.wire import site_api
from jalien.wire.messages import Request
from jalien.wire.site_api import JobOffer, MatchedJob, PackagesWanted, WaitingJobs
from tests.agent.alice_tree import LISTING
from tests.jobs.test_broker import job

from .test_job_commands import submit

DIGEST = names.digest(LISTING)


def test_names_keys_and_digest():
    assert names.split("VO_ALICE@ROOT::v6-30") == ("ROOT", "v6-30")
    assert names.key("ROOT") == "ROOT" and names.key("VO_ALICE@O2::1") == "O2::1"
    keys = names.offered_keys([*LISTING, "VO_ALICE@bad name::1"])
    assert "GenLib" in keys and "GenLib::v1-0" in keys and len(keys) == 7
    assert names.missing(["VO_ALICE@GenLib", "VO_ALICE@GenLib::v2", "x@y"], keys) == [
        "VO_ALICE@GenLib::v2",
        "x@y",
    ]
    assert names.digest(reversed(LISTING)) == DIGEST and len(DIGEST) == 32
    for bad in ("VO_ALICE@../x::1", "ALICE@ROOT", "VO_ALICE@ROOT::a/b", ""):
        try:
            names.split(bad)
        except names.PackageNameError:
            continue
        raise AssertionError(f"{bad!r} accepted")


def test_offers_by_digest_and_the_broker():
    now = [1000.0]
    offers = PackageOffers(clock=lambda: now[0])
    assert offers.resolve(JobOffer()) is None  # says nothing: any (a previous version)
    assert offers.resolve(JobOffer(packages=[])) == frozenset()
    try:
        offers.resolve(JobOffer(packages_digest=DIGEST))
        raise AssertionError("an unknown digest resolved")
    except UnknownDigest as unknown:
        assert unknown.digest == DIGEST
    full = JobOffer(site="S1", ce="CE1", packages=LISTING, packages_digest=DIGEST)
    keys = offers.resolve(full)
    assert offers.resolve(JobOffer(site="S2", packages_digest=DIGEST)) == keys
    assert offers.grid() == LISTING and offers.where("VO_ALICE@GenLib::v1-0") == ["S1 CE1", "S2"]
    b = Broker()
    b.add(job(1, packages="VO_ALICE@Analysis::v2-1"))
    b.add(job(2, packages="VO_ALICE@GenLib"))  # any version
    b.add(job(3, packages="VO_ALICE@GenLib::v7"))
    b.add(job(4))
    bare = Agent(packages=frozenset())
    assert b.count(bare) == 1 and b.match(bare) == 4
    rich = Agent(packages=keys)
    assert b.count(rich) == 2 and sorted([b.match(rich), b.match(rich)]) == [1, 2]
    assert b.match(rich) is None and len(b) == 1  # job 3 waits: no node has GenLib v7
    assert offers.missing(["VO_ALICE@GenLib::v7", "VO_ALICE@GenLib"]) == ["VO_ALICE@GenLib::v7"]
    # AliEn's way in Requirements: member(other.Packages, ...), by the same keys
    b.add(job(5, req='member(other.Packages, "VO_ALICE@GenLib::v1-0")'))
    b.add(job(6, req='member(other.Packages, "VO_ALICE@Nope") || other.CE == "X"'))
    assert b.count(bare) == 0 and b.count(rich) == 1 and b.match(rich) == 5
    assert b.count(Agent(ce="X", packages=keys)) == 1 and b.count(Agent()) == 2  # None: any
    now[0] += 7 * 3600  # nobody offered anything for hours: the grid offers nothing
    assert offers.grid() == [] and offers.where("VO_ALICE@GenLib") == []


def typed(command: str, message: site_api.SiteMessage) -> Request:
    return Request(command=command, data=[site_api.encode(message)])


PKG_JDL = 'Executable = "/bin/echo";\nPackages = {"VO_ALICE@Analysis::v2-1"};\n'
MISSING_JDL = 'Executable = "/bin/echo";\nPackages = {"VO_ALICE@Nowhere::v1"};\n'
PLAIN_JDL = 'Executable = "/bin/echo";\n'


async def test_site_calls_packages_command_and_reasons(job_server, connect):
    user = await connect(job_server)
    site = await connect(job_server, login="vobox")
    none = await user.call("packages")
    assert none.exitcode == 1 and "Couldn't find any packages." in none.error
    bad = await user.call("submit", "=<", 'Executable = "/bin/echo";\nPackages = {"VO_ALICE@a/b"};')
    assert bad.exitcode == 22 and "Packages" in bad.error
    with_pkg, missing, plain = [await submit(user, t) for t in (PKG_JDL, MISSING_JDL, PLAIN_JDL)]
    # a node without packages: only the plain job
    bare = JobOffer(site="S0", ce="CE::BARE", packages=[])
    count = await site.request(typed("getNumberWaitingJobs", bare))
    assert site_api.decode(count.data[0], WaitingJobs).count == 1
    got = await site.request(typed("getMatchJob", bare))
    assert site_api.decode(got.data[0], MatchedJob).queue_id == plain
    # a node with the tree: first its digest only, central asks for the list once
    rich = JobOffer(site="S1", ce="CE::RICH", packages_digest=DIGEST, packages_root="/cvmfs/x")
    wanted = await site.request(typed("getNumberWaitingJobs", rich))
    assert site_api.decode(wanted.data[0], WaitingJobs).packages_wanted
    asked = await site.request(typed("getMatchJob", rich))
    assert site_api.decode(asked.data[0], PackagesWanted).digest == DIGEST
    listed = JobOffer(site="S1", ce="CE::RICH", packages_digest=DIGEST, packages=LISTING)
    count = await site.request(typed("getNumberWaitingJobs", listed))
    assert site_api.decode(count.data[0], WaitingJobs).count == 1
    got = await site.request(typed("getMatchJob", rich))  # the digest is known now
    assert site_api.decode(got.data[0], MatchedJob).queue_id == with_pkg
    assert (await site.request(typed("getMatchJob", rich))).data == []  # not the missing one
    trace = (await user.call("ps", "-trace", str(missing))).results[0]["message"]
    assert "waiting: no site offers VO_ALICE@Nowhere::v1" in trace, trace
    match = await user.call("jobListMatch", str(missing))
    assert "no site offers VO_ALICE@Nowhere::v1" in match.results[0]["message"]
    trace = (await user.call("ps", "-trace", str(with_pkg))).results[0]["message"]
    assert "no site offers" not in trace  # it was matched
    listing = await user.call("packages")
    assert [r["packages"] for r in listing.results] == LISTING
    assert listing.results[0]["message"] == " VO_ALICE@Analysis::v2-1"
    some = await user.call("packages", "-l", "GenLib*")
    assert [r["packages"] for r in some.results] == LISTING[2:]
    assert "S1 CE::RICH" in some.results[0]["sites"]


def test_the_workers_of_a_host_share_what_they_learn(tmp_path):
    """Two jcentral processes' PackageOffers on one host cache (roles.central_cache): a list
    sent to one is known to the other by its digest; who offered what, both see."""
    from jalien.cache.store import CacheStore
    from jalien.roles.central_cache import NAMESPACES, PackageShare

    store = CacheStore(tmp_path / "cache", policies=NAMESPACES)
    try:
        first = PackageOffers(shared=PackageShare(store))
        second = PackageOffers(shared=PackageShare(store))
        try:
            second.resolve(JobOffer(site="S1", ce="CE1", packages_digest=DIGEST))
            raise AssertionError("an unknown digest resolved")
        except UnknownDigest:
            pass
        assert not second.known()
        keys = first.resolve(JobOffer(site="S1", ce="CE1", packages=LISTING))
        store.flush().result(timeout=10)
        assert second.resolve(JobOffer(site="S2", ce="CE2", packages_digest=DIGEST)) == keys
        store.flush().result(timeout=10)
        assert second.known() and second.table()["VO_ALICE@GenLib::v1-1"] == ["S1 CE1", "S2 CE2"]
        assert first.where("VO_ALICE@Analysis::v2-1") == ["S1 CE1", "S2 CE2"]
    finally:
        store.close()
