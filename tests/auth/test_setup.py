import stat

import msgspec
import pytest

from jalien.auth.accounts import AccountMap
from jalien.auth.cadir import write_ca_dir
from jalien.auth.certs import (
    dn_of,
    issue_user_cert,
    load_cert,
    load_key,
    make_ca,
    signed_by,
    write_pem_cert,
    write_pem_key,
)
from jalien.auth.errors import AuthError
from jalien.auth.setup import run_setup
from jalien.auth.tls import client_context, server_context
from jalien.config import Settings

USER = "/C=ch/O=jalien/OU=Users/CN=jdoe"


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.delenv("X509_CERT_DIR", raising=False)
    return Settings(home=str(tmp_path / "jhome"))


@pytest.fixture
def globus(tmp_path):
    return tmp_path / "globus"


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def _snapshot(*roots):
    return {p: p.read_bytes() for root in roots for p in sorted(root.rglob("*")) if p.is_file()}


def test_first_run_creates_everything(settings, globus):
    report = run_setup(settings, globus_dir=globus, password=b"pw", login="jdoe")
    home = settings.home_path
    expected = [
        home / "ca/ca.pem",
        home / "ca/ca.key",
        home / "ca/tokenca.pem",
        home / "ca/tokenca.key",
        home / "host/hostcert.pem",
        home / "host/hostkey.pem",
        globus / "usercert.pem",
        globus / "userkey.pem",
        home / "accounts.toml",
    ]
    for path in expected:
        assert path in report.created
    assert settings.ca_dir_path == home / "certificates"
    assert list(settings.ca_dir_path.glob("*.pem")) and list(settings.ca_dir_path.glob("*.0"))
    keys = ("ca/ca.key", "ca/tokenca.key", "host/hostkey.pem")
    for key in (*(home / k for k in keys), globus / "userkey.pem"):
        assert _mode(key) == 0o600
    assert _mode(globus) == 0o700
    assert report.user_dn == USER
    ca = load_cert(home / "ca/ca.pem")
    assert signed_by(load_cert(globus / "usercert.pem"), ca)
    assert signed_by(load_cert(home / "host/hostcert.pem"), ca)
    with pytest.raises(AuthError, match="password is needed"):
        load_key(globus / "userkey.pem")
    load_key(globus / "userkey.pem", b"pw")
    account = AccountMap.load(home / "accounts.toml").lookup(USER)
    assert account.login == "jdoe"
    assert account.roles == ["users", "admin"]
    assert account.home == "/alice/cern.ch/user/j/jdoe/"
    assert any(line.startswith("created ") for line in report.lines())
    # the single-machine grid's VoBox acts for worker nodes with the host certificate
    host_dn = dn_of(load_cert(home / "host" / "hostcert.pem"))
    vobox = AccountMap.load(home / "accounts.toml").lookup(host_dn)
    assert (vobox.login, vobox.roles) == ("vobox", ["proxy"])
    assert report.created.count(home / "accounts.toml") == 1


def test_second_run_keeps_everything(settings, globus):
    run_setup(settings, globus_dir=globus, password=None, login="jdoe")
    before = _snapshot(settings.home_path, globus)
    report = run_setup(settings, globus_dir=globus, password=None, login="jdoe")
    assert report.created == [] and report.updated == []
    assert settings.home_path / "ca/ca.pem" in report.kept
    assert globus / "userkey.pem" in report.kept
    assert _snapshot(settings.home_path, globus) == before
    assert any(line.startswith("kept existing ") for line in report.lines())


def test_force_regenerates(settings, globus):
    run_setup(settings, globus_dir=globus, password=None, login="jdoe")
    before = _snapshot(settings.home_path, globus)
    report = run_setup(settings, globus_dir=globus, password=None, login="jdoe", force=True)
    after = _snapshot(settings.home_path, globus)
    for name in ("ca/ca.pem", "host/hostcert.pem"):
        assert after[settings.home_path / name] != before[settings.home_path / name]
    assert after[globus / "usercert.pem"] != before[globus / "usercert.pem"]
    assert signed_by(
        load_cert(globus / "usercert.pem"), load_cert(settings.home_path / "ca/ca.pem")
    )
    assert report.user_dn == USER


def test_user_cert_from_another_ca(settings, globus, pki):
    other, other_key = make_ca("someone else's CA")
    cert, key = issue_user_cert(other, other_key, "jdoe", "John Doe")
    write_pem_cert(globus / "usercert.pem", cert)
    write_pem_key(globus / "userkey.pem", key)
    before = _snapshot(globus)
    report = run_setup(settings, globus_dir=globus, password=None, login="jdoe")
    assert _snapshot(globus) == before
    assert report.user_dn == USER + "/CN=John Doe"
    assert AccountMap.load(settings.accounts_path).lookup(report.user_dn).login == "jdoe"
    assert any("not by the dev CA" in note for note in report.notes)
    # the dev CA and the token CA, not the foreign CA
    names = sorted(p.name for p in settings.ca_dir_path.glob("*.pem"))
    assert names == ["jalien-dev-CA.pem", "jalien-token-CA.pem"]
    assert write_ca_dir(settings.ca_dir_path, [load_cert(settings.home_path / "ca/ca.pem")]) == []


def test_half_pairs_are_refused(settings, globus):
    run_setup(settings, globus_dir=globus, password=None, login="jdoe")
    (settings.home_path / "host/hostkey.pem").unlink()
    with pytest.raises(AuthError, match=r"hostcert\.pem"):
        run_setup(settings, globus_dir=globus, password=None, login="jdoe")
    (settings.home_path / "host/hostcert.pem").unlink()  # neither: issued again
    (globus / "usercert.pem").unlink()
    with pytest.raises(AuthError, match=r"userkey\.pem"):
        run_setup(settings, globus_dir=globus, password=None, login="jdoe")
    assert not (settings.home_path / "host/hostkey.pem").exists()  # checked before writing


def test_existing_account_left_alone(settings, globus):
    run_setup(settings, globus_dir=globus, password=None, login="jdoe")
    accounts = AccountMap.load(settings.accounts_path)
    accounts.add(msgspec.structs.replace(accounts.lookup(USER), roles=["users"]))  # by hand
    accounts.save(settings.accounts_path)
    report = run_setup(settings, globus_dir=globus, password=None, login="jdoe")
    assert AccountMap.load(settings.accounts_path).lookup(USER).roles == ["users"]
    assert any("already registered" in note for note in report.notes)


def test_invalid_login(settings, globus):
    with pytest.raises(AuthError, match="invalid login"):
        run_setup(settings, globus_dir=globus, password=None, login="J Doe")


async def test_setup_output_works_for_tls(settings, globus, handshake):
    run_setup(settings, globus_dir=globus, password=b"pw", login="jdoe")
    server = server_context(settings.host_cert_path, settings.host_key_path, settings.ca_dir_path)
    client = client_context(
        globus / "usercert.pem", globus / "userkey.pem", settings.ca_dir_path, password=b"pw"
    )
    assert (await handshake(server, client)).server_dns == [USER]


def test_dev_ca_goes_to_the_home_not_to_x509_cert_dir(settings, globus, tmp_path, monkeypatch):
    """An X509_CERT_DIR in the environment (some grid's trust store) is not written to."""
    outside = tmp_path / "grid-security-certificates"
    outside.mkdir()
    monkeypatch.setenv("X509_CERT_DIR", str(outside))
    report = run_setup(settings, globus_dir=globus, password=None, login="jdoe")
    assert list(outside.iterdir()) == []
    own = settings.home_path / "certificates"
    assert any(p.name.endswith(".0") for p in own.iterdir())
    assert any("X509_CERT_DIR" in line and str(own) in line for line in report.lines())


def test_dev_ca_goes_to_the_ca_dir_asked_for(tmp_path, globus, monkeypatch):
    monkeypatch.setenv("X509_CERT_DIR", str(tmp_path / "elsewhere"))
    asked = tmp_path / "asked"
    settings = Settings(home=str(tmp_path / "jhome"), ca_dir=str(asked))
    run_setup(settings, globus_dir=globus, password=None, login="jdoe")
    assert any(p.name.endswith(".0") for p in asked.iterdir())
    assert not (tmp_path / "elsewhere").exists()


def test_login_admin_is_refused(settings, globus):
    """The login "admin" owns the catalogue's top directories: no account may have it."""
    with pytest.raises(AuthError, match="reserved"):
        run_setup(settings, globus_dir=globus, password=None, login="admin")
    assert not (settings.home_path / "accounts.toml").exists()
