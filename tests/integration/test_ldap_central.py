"""jcentral configured from a real OpenLDAP (slapd on loopback): users with two DNs and
their roles, CEs closed and reopened, a file quota that refuses a write with nothing
written, and LDAP killed while jcentral keeps serving its last good configuration."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tests.integration.conftest import (
    Central,
    free_port,
    run_setup,
    run_user,
    start_central,
    stop,
)
from tests.ldap_server import CeEntry, Person, Slapd, binaries, tree_ldif, unavailable

# real processes, nothing twin-specific: run once, in the Cython pass (the suite's budget)
pytestmark = [pytest.mark.integration, pytest.mark.cython_only]


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    if binaries() is None:
        unavailable("slapd/slapadd not installed (apt-get install slapd ldap-utils)")
    tmp = tmp_path_factory.mktemp("ldapgrid")
    home, globus = tmp / "home", tmp / "globus"
    done = run_setup(home, globus)
    assert done.returncode == 0, done.stderr
    accounts = tomllib.loads((home / "accounts.toml").read_text())["account"]
    people, roles = [], {}
    for account in accounts:  # setup's accounts, now in LDAP (jdoe gets a second DN)
        dns = [account["dn"]] + (
            ["/C=ch/O=elsewhere/CN=John Doe"] if account["login"] == "jdoe" else []
        )
        people.append(Person(account["login"], dns, name=account["login"].title()))
        for role in account.get("roles", []):
            roles.setdefault(role, []).append(account["login"])
    roles.setdefault("admin", []).append("jdoe")  # so that jdoe may change the configuration
    people.append(Person("alice", ["/C=ch/O=jalien/OU=Users/CN=alice"]))
    ces = [CeEntry("CERN", "LOCAL", {"maxjobs": "3", "TTL": "600"})]
    ses = [{"name": "ALICE::CERN::EOS", "seURL": "root://eos.example.org:1094//eos/alice"}]
    ldif = tree_ldif(people, roles, ces, {"default": ["ALICE::CERN::LOCAL"]}, ses)
    slapd = Slapd(tmp / "slapd", ldif)
    slapd.start()
    (tmp / "ldap.pw").write_text(slapd.password)
    (home / "accounts.toml").unlink()  # nothing from the file: LDAP only
    ws, binary = free_port(), free_port()
    env = {
        "JALIEN_CONFIG_BACKEND": "ldap",
        "JALIEN_LDAP_URI": slapd.uri,
        "JALIEN_LDAP_BASE": slapd.base,
        "JALIEN_LDAP_BIND_DN": slapd.root_dn,
        "JALIEN_LDAP_PASSWORD_FILE": str(tmp / "ldap.pw"),
        "JALIEN_LDAP_TIMEOUT": "2",
        "JALIEN_EMBEDDED_SE": "1",
        "JALIEN_SE_PORT": str(free_port()),
    }
    log = tmp / "jcentral.log"
    try:
        proc = start_central(home, log, ws, binary, env)
    except BaseException:
        slapd.stop()  # no slapd left behind by a jcentral that would not start
        raise
    central = Central(home, globus, ws, binary, log, proc)
    try:
        yield central, slapd
    finally:
        stop(proc)
        slapd.stop()


def test_users_roles_and_quotas_from_ldap(grid, tmp_path):
    central, _slapd = grid
    code, out, err = run_user(central, tmp_path, "whois", "jdoe")
    assert code == 0, err
    assert "Username: jdoe" in out and "/C=ch/O=elsewhere/CN=John Doe" in out
    code, out, _ = run_user(central, tmp_path, "groupmembers", "admin")
    assert code == 0 and "jdoe" in out
    code, out, _ = run_user(central, tmp_path, "groups")
    assert code == 0 and "admin" in out
    code, out, _ = run_user(central, tmp_path, "listCEs")
    assert code == 0 and "ALICE::CERN::LOCAL" in out and "open" in out
    # a file quota of one file: the first write is granted, the second refused
    code, out, err = run_user(central, tmp_path, "fquota", "set", "jdoe", "maxNbFiles", "1")
    assert code == 0, err
    local = tmp_path / "one.txt"
    local.write_text("hello\n")
    code, _, err = run_user(central, tmp_path, "cp", f"file:{local}", "quota1.txt")
    assert code == 0, err
    code, out, err = run_user(central, tmp_path, "cp", f"file:{local}", "quota2.txt")
    assert code != 0 and "file quota exceeded for jdoe" in out + err
    code, out, _ = run_user(central, tmp_path, "ls", "quota2.txt")
    assert code != 0  # nothing was written
    code, out, _ = run_user(central, tmp_path, "fquota", "list")
    assert code == 0 and "1/1 files" in out
    run_user(central, tmp_path, "fquota", "set", "jdoe", "maxNbFiles", "0")  # the default


def test_ses_come_from_ldap_and_add_se_writes_there(grid, tmp_path):
    from jalien.directory.ldap_source import LdapSource

    central, slapd = grid
    code, out, err = run_user(central, tmp_path, "listSEs")
    assert code == 0 and "ALICE::CERN::EOS" in out, err
    code, out, err = run_user(
        central,
        tmp_path,
        "addSE",
        "-qos",
        "tape",
        "ALICE::CERN::TAPE",
        "root://tape.example.org//alice",
    )
    assert code == 0, err
    ses = {se.name: se for se in LdapSource(slapd.uri, slapd.base).load().ses}
    assert ses["ALICE::CERN::TAPE"].qos == ["tape"]
    assert ses["ALICE::CERN::TAPE"].url == "root://tape.example.org//alice"


def test_a_closed_ce_gets_no_job_and_reopens(grid, tmp_path):
    central, _slapd = grid
    code, out, err = run_user(central, tmp_path, "setCEstatus", "closed", "ALICE::CERN::LOCAL")
    assert code == 0 and "closed" in out, err
    code, out, _ = run_user(central, tmp_path, "listCEs", "ALICE::CERN::LOCAL")
    assert "closed" in out
    code, out, err = run_user(central, tmp_path, "setCEstatus", "open", "ALICE::CERN::LOCAL")
    assert code == 0 and "open" in out, err
    code, out, err = run_user(central, tmp_path, "setCEstatus", "open", "ALICE::NOWHERE::X")
    assert code != 0 and "no CE ALICE::NOWHERE::X" in out + err


def test_ldap_killed_keeps_the_last_good_configuration(grid, tmp_path):
    central, slapd = grid
    slapd.stop()
    try:
        code, out, err = run_user(central, tmp_path, "resyncLDAP")
        assert code != 0 and "could not be read" in out + err and "still serving" in out + err
        code, out, err = run_user(central, tmp_path, "whois", "alice")  # still answered
        assert code == 0 and "Username: alice" in out, err
        assert "central configuration NOT refreshed" in Path(central.log).read_text()
    finally:
        slapd.start()
    code, out, err = run_user(central, tmp_path, "resyncLDAP")
    assert code == 0 and "users" in out, err


def test_a_vobox_follows_its_ce_closed_and_reopened(grid, tmp_path):
    """The VoBox reads its CE's settings on its upstream connection (no LDAP client on the
    site): closed, it submits no agent for the waiting jobs; reopened, it does, within
    the slots and agent TTL of the CE's LDAP entry (maxjobs 3, TTL 600)."""
    from tests.integration.test_vobox_process import Grid, VoBoxProc, submit

    central, _slapd = grid
    site = Grid(central.home, central.globus, central.binary_port, tmp_path)
    code, _, err = run_user(central, tmp_path, "setCEstatus", "closed", "ALICE::CERN::LOCAL")
    assert code == 0, err
    submit(site, 2)
    box = VoBoxProc(site, JALIEN_CE="ALICE::CERN::LOCAL", JALIEN_MAX_RUNNING_AGENTS="10")
    try:
        box.wait(lambda: box.status().get("ce_status") == "closed", "the CE seen closed")
        box.wait_cycles(3)
        assert box.agent_dirs() == []  # jobs wait, but the CE is closed
        assert box.status()["max_running"] == 3 and box.status()["agent_ttl"] == 600
        code, _, err = run_user(central, tmp_path, "setCEstatus", "open", "ALICE::CERN::LOCAL")
        assert code == 0, err
        box.wait(lambda: len(box.agent_dirs()) == 2, "two agents once the CE is open")
        box.wait(lambda: box.status().get("ce_status") == "open", "the CE seen open")
        assert "central's settings of CE ALICE::CERN::LOCAL: closed" in box.log_text()
    finally:
        box.close()


def test_alienpy_quota_whois_user_and_a_job_quota(grid, alienpy, tmp_path):
    """alien.py 1.7.0 as a user would: its client-side quota (jquota + fquota), whois,
    groups, user; then a job quota that refuses a submission with nothing submitted."""
    from tests.integration.test_jcentral_process import alien

    central, _slapd = grid

    def a(*args: str):
        done = alien(alienpy, central, *args, tmp_path=tmp_path / "alienpy")
        return done.returncode, done.stdout + done.stderr

    code, out = a("quota")
    assert code == 0, out
    assert "Quota report for user : jdoe" in out and "Number of files" in out
    code, out = a("whois", "jdoe")
    assert code == 0 and "Username: jdoe" in out, out
    code, out = a("groupmembers", "proxy")
    assert code == 0 and "vobox" in out, out
    code, out = a("user", "alice")  # an admin may become anyone
    assert code == 0, out
    code, out = a("user", "nobody-here")
    assert code != 0 and "cannot be found" in out
    # the job quota: as many waiting jobs as jdoe has now, plus one
    code, out, err = run_user(central, tmp_path, "jquota", "list")
    assert code == 0, err
    waiting = int(out.split(" waiting")[0].split("+ ")[-1])
    limit = str(waiting + 1)
    assert run_user(central, tmp_path, "jquota", "set", "jdoe", "maxWaitingJobs", limit)[0] == 0
    jdl = 'Executable = "/bin/true"; TTL = 60;'
    code, _, err = run_user(central, tmp_path, "submit", "=<", jdl)
    assert code == 0, err
    code, out, err = run_user(central, tmp_path, "submit", "=<", jdl)
    assert code == 122 and "job quota exceeded for jdoe" in out + err
    assert "maxWaitingJobs" in out + err and "nothing was submitted" in out + err
    run_user(central, tmp_path, "jquota", "set", "jdoe", "maxWaitingJobs", "0")
