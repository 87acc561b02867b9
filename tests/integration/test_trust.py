"""The trust holes of issue 14, each tried as the attacker tried it, against a real jcentral
over TLS: job tokens out of thin air, job tokens outliving their job, a JobAgent token
submitting, limited proxies with full rights, and the permission table itself (every command
as every identity kind, allowed exactly where docs/permissions.md says)."""

from __future__ import annotations

import pytest

from jalien.auth import policy
from jalien.net.client import Client
from jalien.roles.jcentral import command_actions
from tests.integration.conftest import free_port, run_setup, start_central, stop
from tests.integration.trustgrid import (
    BOB_HOME,
    JDL,
    K,
    TrustGrid,
    call_ok,
    token_pem,
    trust_grid,
)

pytestmark = pytest.mark.integration
REFUSED = "Permission denied: a "  # the policy's wording (jalien.auth.policy.refusal)


@pytest.fixture(scope="module")
def grid_home(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trust")
    home, globus = tmp / "home", tmp / "globus"
    done = run_setup(home, globus)
    assert done.returncode == 0, done.stderr
    port = free_port()
    proc = start_central(home, tmp / "jcentral.log", free_port(), port)
    yield home, globus, port, tmp / "jcentral.log"
    stop(proc)


@pytest.fixture
async def grid(grid_home):
    home, globus, port, _ = grid_home
    async with trust_grid(home, globus, port) as grid:
        yield grid


async def refused(client: Client, *words: str, why: str = "") -> str:
    reply = await client.call(*words, timeout=60)
    assert reply.exitcode == 13, f"{words}: exit {reply.exitcode} {reply.error}"
    assert why in reply.error, reply.error
    return reply.error


async def test_every_credential_is_the_kind_it_claims(grid: TrustGrid):
    for kind in K:
        who = await call_ok(await grid.client(kind), "whoami", "-v")
        assert who["kind"] == kind.value, (kind, who)


async def test_a_jobagent_token_gets_job_tokens_only_for_jobs_matched_to_it(grid: TrustGrid):
    agent = await grid.client(K.JOBAGENT)
    # the attack: a job that does not exist, for any user
    await refused(agent, "token", "-t", "job", "-jobid", "999999", "-u", "bob", why="not running")
    # a live job, but not the user it runs for
    await refused(
        agent, "token", "-t", "job", "-jobid", str(grid.job_id), "-u", "jdoe", why="belongs to bob"
    )
    # another JobAgent token (another VoBox's) did not match it
    vobox = await grid.client(K.HOST)
    other = await call_ok(vobox, "token", "-t", "jobagent", "-hours", "1")
    stranger = await grid.connect(token_pem(other))
    await refused(
        stranger,
        "token",
        "-t",
        "job",
        "-jobid",
        str(grid.job_id),
        "-u",
        "bob",
        why="not matched to this JobAgent",
    )
    # the JobAgent that matched it may have another token for it
    again = await call_ok(
        agent, "token", "-t", "job", "-jobid", str(grid.job_id), "-u", "bob", "-hours", "1"
    )
    assert again["dn"].endswith(f"/OU=bob/OU={grid.job_id}")


async def test_a_job_token_dies_with_its_job(grid: TrustGrid):
    job = await grid.client(K.JOB)
    name = f"{BOB_HOME}trust-{grid.job_id}"
    await call_ok(job, "touch", name)  # alive: acts as bob for bob's files
    await refused(job, "submit", "=<", JDL, why="job identity may not submit jobs")
    for state in ("STARTED", "RUNNING", "DONE"):
        await call_ok(job, "setJobStatus", str(grid.job_id), state)
    # the job has ended: every request of its token is refused, on the open connection too
    for words in (
        ("touch", name + "-late"),
        ("rm", name),
        ("access", "write", name + "-late", "-s", "3"),
        ("submit", "=<", JDL),
        ("jobHeartbeat", str(grid.job_id)),
        ("ls", BOB_HOME),
    ):
        await refused(job, *words, why="")
    again = await grid.client(K.JOB)  # and on a new one
    error = await refused(again, "touch", name + "-late2")
    assert "revoked" in error
    admin = await grid.client(K.ADMIN)
    assert (await admin.call("stat", name, timeout=30)).exitcode == 0
    assert (await admin.call("stat", name + "-late", timeout=30)).exitcode != 0


async def test_a_jobagent_token_does_site_calls_only(grid: TrustGrid):
    agent = await grid.client(K.JOBAGENT)
    await refused(agent, "submit", "=<", JDL, why="jobagent identity may not submit jobs")
    await refused(agent, "mkdir", "-p", "/alice/cern.ch/user/j/jobagent/x")
    await refused(agent, "ls", "/alice")
    await refused(agent, "token", why="may not obtain user tokens")
    # no home was made on the fly for the JobAgent pseudo-user
    admin = await grid.client(K.ADMIN)
    missing = await admin.call("ls", "/alice/cern.ch/user/j/jobagent", timeout=30)
    assert missing.exitcode != 0


async def test_limited_proxies_follow_gsi(grid: TrustGrid):
    limited = await grid.client(K.LIMITED_PROXY)
    await call_ok(limited, "ls", BOB_HOME)
    await call_ok(limited, "touch", f"{BOB_HOME}from-limited-proxy")
    await refused(limited, "submit", "=<", JDL, why="limited-proxy identity may not submit")
    await refused(limited, "token", why="may not obtain user tokens")
    await refused(limited, "kill", str(grid.job_id))
    full = await grid.client(K.PROXY)
    submitted = await call_ok(full, "submit", "=<", JDL)
    assert int(submitted["jobId"]) > grid.job_id


async def test_the_permission_table_holds_for_every_command(grid: TrustGrid):
    """Every command jcentral knows, run with no arguments as every identity kind: refused
    by the policy exactly where the table says (and never for another reason with its
    wording). Commands run bare fail on their arguments, which is all this needs."""
    admin = await grid.client(K.ADMIN)
    commands = [r["commandlist"] for r in (await admin.call("commandlist")).results]
    actions = command_actions()
    assert set(commands) == set(actions)
    assert {"ls", "submit", "token", "getMatchJob", "cache.get", "addSE"} <= set(commands)
    clients = {kind: await grid.client(kind) for kind in K}
    skip = {"getMatchJob"}  # bare, it would take a waiting job: checked with its arguments
    mismatches = []
    for name in commands:
        words = [name, "ttl=1", "ce=NONE::NONE::NONE"] if name in skip else [name]
        for kind, client in clients.items():
            reply = await client.call(*words, timeout=60)
            by_policy = reply.exitcode == 13 and reply.error.startswith(REFUSED)
            expected = not policy.kind_allows(kind, policy.resolve(actions[name], []))
            if by_policy != expected:
                mismatches.append((name, kind.value, reply.exitcode, reply.error[:100]))
    assert not mismatches, mismatches


async def test_a_job_token_of_an_earlier_run_is_refused(grid: TrustGrid):
    """A job that failed, was resubmitted and matched again: only the new run's token works."""
    old = await grid.client(K.JOB)
    job = str(grid.job_id)
    for state in ("STARTED", "RUNNING", "ERROR_E"):
        await call_ok(old, "setJobStatus", job, state)
    await call_ok(await grid.client(K.USER), "resubmit", job)
    agent = await grid.client(K.JOBAGENT)
    for _ in range(20):  # other tests' jobs may be waiting too
        again = await call_ok(agent, "getMatchJob", "ttl=3600", "ce=ALICE::TEST::CE")
        if again.get("queueId") == job:
            break
    assert again.get("queueId") == job, again
    await refused(old, "whoami", why="earlier run")
    new = await grid.connect(token_pem(again))
    assert (await call_ok(new, "whoami"))["user"] == "bob"
