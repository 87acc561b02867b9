"""The central configuration read from a real OpenLDAP (Debian's slapd on loopback): the
JAliEn-like tree, several DNs per user, roles, CEs, SEs and quotas written back, bad
entries named with their problem, and LDAP killed while the last good configuration
serves."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from jalien.auth.errors import AuthError
from jalien.directory.ldap_source import LdapSource
from jalien.directory.model import CLOSED, OPEN, SE, DirectoryError
from jalien.directory.service import Directory
from tests.ldap_server import CeEntry, Person, Slapd, binaries, tree_ldif, unavailable

JDOE = "/C=ch/O=jalien/OU=Users/CN=jdoe"
JDOE2 = "/C=ch/O=other/CN=John Doe"


def grid_ldif() -> str:
    people = [
        Person("jdoe", [JDOE, JDOE2], name="John Doe", email="jdoe@example.org"),
        Person("alice", ["/C=ch/O=jalien/OU=Users/CN=alice"], extra={"maxNbFiles": "100"}),
        Person("gridadmin", ["/C=ch/O=jalien/OU=Users/CN=gridadmin"]),
        # bad entries: a subject that is no slash DN, a DN another person has
        Person("broken", ["CN=broken,O=jalien"]),
        Person("thief", [JDOE]),
    ]
    roles = {"admin": ["gridadmin"], "users": ["jdoe", "alice"], "alidaq": ["jdoe", "ghost"]}
    ces = [
        CeEntry("CERN", "LOCAL", {"host": "vobox.cern.ch", "maxjobs": "20", "TTL": "7200"}),
        CeEntry("CERN", "ODD", {"ceStatus": "maybe"}),
    ]
    ses = [
        {"name": "ALICE::CERN::EOS", "seURL": "root://eos.cern.ch:1094//eos/alice", "QoS": "disk"},
        {"name": "ALICE::CERN::BAD", "seURL": "eos.cern.ch/no/protocol"},
    ]
    return tree_ldif(people, roles, ces, {"default": ["ALICE::CERN::LOCAL"]}, ses)


@pytest.fixture(scope="module")
def slapd(tmp_path_factory):
    if binaries() is None:
        unavailable("slapd/slapadd not installed (apt-get install slapd ldap-utils)")
    server = Slapd(tmp_path_factory.mktemp("slapd"), grid_ldif()).start()
    yield server
    server.stop()


def writer(server: Slapd) -> LdapSource:
    return LdapSource(server.uri, server.base, bind_dn=server.root_dn, password=server.password)


def test_the_tree_is_read_with_every_dn_and_role(slapd):
    snapshot = LdapSource(slapd.uri, slapd.base).load()
    people = {p.login: p for p in snapshot.people}
    assert people["jdoe"].dns == [JDOE, JDOE2]
    assert people["jdoe"].roles == ["alidaq", "users"]
    assert people["jdoe"].full_name == "John Doe"
    assert people["alice"].file_quota.max_nb_files == 100
    assert snapshot.roles["admin"] == ["gridadmin"]
    (local, odd) = snapshot.ces
    assert (local.name, local.site, local.max_running, local.ttl) == (
        "ALICE::CERN::LOCAL",
        "CERN",
        20,
        7200,
    )
    assert odd.status == CLOSED  # neither open nor closed: closed, and said
    assert [se.name for se in snapshot.ses] == ["ALICE::CERN::EOS"]
    assert snapshot.partitions[0].ces == ["ALICE::CERN::LOCAL"]


def test_bad_entries_are_left_out_with_where_and_why(slapd):
    problems = "\n".join(LdapSource(slapd.uri, slapd.base).load().problems)
    assert "uid=broken" in problems and "is not a slash DN" in problems
    assert "uid=thief" in problems and f"{JDOE} is already uid=jdoe's" in problems
    assert "ceStatus 'maybe' is neither open nor closed" in problems
    assert "name=ALICE::CERN::BAD" in problems and "URL with its protocol" in problems
    assert "member 'ghost' has no ou=People entry" in problems


def test_a_wrong_base_or_server_is_a_clear_error(slapd):
    with pytest.raises(DirectoryError, match="there is no ou=People,o=nowhere"):
        LdapSource(slapd.uri, "o=nowhere").load()
    with pytest.raises(DirectoryError, match="ldap_uri must be ldap://"):
        LdapSource("127.0.0.1:389", slapd.base)


async def test_each_dn_maps_to_the_account_and_changes_are_written(slapd, tmp_path):
    directory = Directory(writer(slapd), last_good=tmp_path / "last")
    await directory.start()
    accounts = directory.accounts()
    assert accounts.lookup(JDOE).login == accounts.lookup(JDOE2).login == "jdoe"
    with pytest.raises(AuthError):
        accounts.lookup("CN=broken,O=jalien")
    ce = await directory.set_ce_status("alice::cern::local", CLOSED)
    assert ce.status == CLOSED and "closed by central" in directory.ce_refusal("ALICE::CERN::LOCAL")
    await directory.set_ce_status("ALICE::CERN::LOCAL", OPEN)
    assert directory.ce_refusal("ALICE::CERN::LOCAL") == ""
    person = await directory.set_quota("jdoe", "maxTotalSize", 5000)
    assert person.file_quota.max_total_size == 5000
    assert directory.file_quota("jdoe").max_nb_files > 0  # the default where none is set
    with pytest.raises(DirectoryError, match="unknown quota field 'maxFoo'"):
        await directory.set_quota("jdoe", "maxFoo", 1)
    with pytest.raises(DirectoryError, match="no CE ALICE::NOWHERE::X"):
        await directory.set_ce_status("ALICE::NOWHERE::X", CLOSED)
    assert await directory.put_se(SE(name="ALICE::CERN::TAPE", url="root://tape.cern.ch//alice"))
    assert "ALICE::CERN::TAPE" in [se.name for se in directory.snapshot.ses]


async def test_ldap_killed_keeps_the_last_good_configuration(tmp_path):
    if binaries() is None:
        unavailable("slapd/slapadd not installed (apt-get install slapd ldap-utils)")
    server = Slapd(tmp_path / "slapd", grid_ldif()).start()
    try:
        directory = Directory(
            LdapSource(server.uri, server.base, timeout=2), last_good=tmp_path / "last"
        )
        await directory.start()
        loaded = directory.snapshot.loaded
        server.stop()
        with pytest.raises(DirectoryError, match=r"Connection refused|socket"):
            await directory.refresh(force=True)
        assert directory.person("jdoe") is not None  # still served
        status = directory.status()
        assert status.error and status.loaded == loaded and status.failing_since
        # a restart while LDAP is down: the last good copy, not nobody
        again = Directory(
            LdapSource(server.uri, server.base, timeout=2), last_good=tmp_path / "last"
        )
        await again.start()
        assert again.accounts().lookup(JDOE).login == "jdoe" and again.error
        server.start()
        await asyncio.wait_for(again.refresh(force=True), 10)
        assert again.error == "" and again.snapshot.loaded > loaded
    finally:
        server.stop()


def test_slapd_config_is_its_own(slapd):
    conf = Path(slapd.conf).read_text()
    assert str(slapd.dir) in conf and "/etc/ldap/slapd.d" not in conf
