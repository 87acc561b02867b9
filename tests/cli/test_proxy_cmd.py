"""``jalien-bin proxy init|info|renew|destroy`` on the test grid's user certificate."""

from __future__ import annotations

import io
import stat

import pytest

from jalien.auth.certs import load_certs, load_key, write_pem_key
from jalien.auth.identity import cert_end_entity_dn
from jalien.auth.proxy import is_proxy, time_left
from jalien.cli.main import main


@pytest.fixture
def user(grid_pki, tmp_path, monkeypatch):
    jdoe = grid_pki.users["jdoe"]
    monkeypatch.setenv("X509_USER_CERT", str(jdoe.cert))
    monkeypatch.setenv("X509_USER_KEY", str(jdoe.key))
    monkeypatch.setenv("X509_USER_PROXY", str(tmp_path / "x509up"))
    return jdoe


def test_init_info_renew_destroy(user, tmp_path, capsys):
    path = tmp_path / "x509up"
    assert main(["proxy", "init", "-valid", "1:30"]) == 0
    assert "Your proxy is valid until" in capsys.readouterr().out
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    certs = load_certs(path)
    assert is_proxy(certs[0]) and len(certs) == 2
    assert cert_end_entity_dn(certs[0]) == user.dn
    assert 5300 < time_left(certs[0]) <= 5400

    assert main(["proxy", "info"]) == 0
    out = capsys.readouterr().out
    assert f"identity : {user.dn}" in out
    assert "RFC 3820 compliant impersonation proxy" in out
    assert "timeleft : 1:29:" in out or "timeleft : 1:30:" in out
    assert main(["proxy", "info", "-timeleft"]) == 0
    assert 5300 < int(capsys.readouterr().out) <= 5400
    assert main(["proxy", "info", "-exists", "-valid", "1:00"]) == 0
    assert main(["proxy", "info", "-exists", "-valid", "2:00"]) == 1

    before = path.read_bytes()
    assert main(["proxy", "renew", "-min", "1:00"]) == 0  # enough left: kept
    assert path.read_bytes() == before and "not renewed" in capsys.readouterr().out
    assert main(["proxy", "renew", "-min", "2:00", "-valid", "4:00"]) == 0
    assert path.read_bytes() != before
    assert time_left(load_certs(path)[0]) > 3 * 3600

    assert main(["proxy", "destroy"]) == 0
    assert not path.exists()
    assert main(["proxy", "info"]) == 1
    assert "no proxy at" in capsys.readouterr().err
    assert main(["proxy", "info", "-exists"]) == 1


def test_encrypted_key_password_from_stdin(user, tmp_path, monkeypatch, capsys):
    write_pem_key(tmp_path / "enc.key", load_key(user.key), b"pw")
    monkeypatch.setenv("X509_USER_KEY", str(tmp_path / "enc.key"))
    monkeypatch.setattr("sys.stdin", io.StringIO("wrong\n"))
    assert main(["proxy", "init", "--password-stdin"]) == 1
    assert "wrong password" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("pw\n"))
    assert main(["proxy", "init", "--password-stdin", "-limited"]) == 0
    assert main(["proxy", "info"]) == 0
    assert "limited proxy" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # no terminal, no password
    assert main(["proxy", "init"]) == 1
    assert "no terminal" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv", [["proxy"], ["proxy", "init", "-valid", "soon"], ["proxy", "info", "-bogus"]]
)
def test_bad_usage(user, argv, capsys):
    assert main(argv) == 2
    assert "Traceback" not in capsys.readouterr().err
