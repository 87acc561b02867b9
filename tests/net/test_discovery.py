"""Connection discovery: the token file, the order of servers and of credentials."""

from __future__ import annotations

import datetime as dt
import os
import stat
import subprocess
import sys

import pytest

from jalien.auth.certs import certs_pem, load_cert, load_key, utcnow
from jalien.auth.errors import AuthError
from jalien.auth.proxy import make_proxy, write_proxy_file
from jalien.auth.tokens import TokenAuthority, TokenKind, TokenSubject, token_key_pem
from jalien.config import Settings
from jalien.net import discovery


@pytest.fixture
def env(tmp_path):
    (tmp_path / "home").mkdir()
    return {"TMPDIR": str(tmp_path), "HOME": str(tmp_path / "home")}


@pytest.fixture(scope="module")
def authority(tmp_path_factory):
    return TokenAuthority.load_or_create(tmp_path_factory.mktemp("tokenca"))[0]


def token(authority, seconds: float):
    cert, key = authority.issue(
        TokenSubject(TokenKind.USER, login="jdoe"), utcnow() + dt.timedelta(seconds=seconds)
    )
    return certs_pem(cert), token_key_pem(key)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_token_file_round_trip(env, tmp_path):
    text = discovery.token_file_text(
        host="127.0.0.1", port=1234, ws_port=5678, pid=os.getpid(), user="jdoe", home="/a/j/"
    )
    paths = discovery.write_token_files(text, env)
    uid = os.getuid()
    assert [p.name for p in paths] == [f"jclient_token_{uid}", f"jalien_token_{uid}"]
    for path in paths:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        values = discovery.read_token_file(path)
        assert values["JALIEN_PORT"] == values["Port"] == "1234"
        assert values["JALIEN_WSPORT"] == values["WSPort"] == "5678"
        assert values["JALIEN_HOME"] == values["Home"] == "/a/j/"
        assert len(values["Passwd"]) == 32
    # the format is shell-sourceable
    done = subprocess.run(
        ["sh", "-c", f'. "{paths[0]}" && echo "$JALIEN_HOST:$JALIEN_WSPORT $User"'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout == "127.0.0.1:5678 jdoe\n"
    with pytest.raises(AuthError):
        discovery.token_file_text(host="x", port=1, ws_port=2, pid=3, user="a b", home="/")
    discovery.remove_token_files(os.getpid() + 1, env)  # somebody else's: kept
    assert all(p.exists() for p in paths)
    discovery.remove_token_files(os.getpid(), env)
    assert not any(p.exists() for p in paths)


def test_server_order(env):
    settings = Settings(central_host="central.example", binary_port=8098)
    assert [e.source for e in discovery.candidates(settings, env)] == ["central"]
    text = discovery.token_file_text(
        host="127.0.0.1", port=1234, ws_port=5678, pid=os.getpid(), user="jdoe", home="/"
    )
    discovery.write_token_files(text, env)
    env.update(JALIEN_HOST="wn.local", JALIEN_PORT="4321")
    found = discovery.candidates(settings, env)
    assert [(e.source, e.host, e.port) for e in found] == [
        ("env", "wn.local", 4321),
        ("jbox", "127.0.0.1", 1234),
        ("central", "central.example", 8098),
    ]
    # a token file whose process is gone is skipped, and reported
    stale = text.replace(f"PID={os.getpid()}", f"PID={dead_pid()}")
    discovery.write_token_files(stale, env)
    del env["JALIEN_HOST"]
    assert [e.source for e in discovery.candidates(settings, env)] == ["central"]
    assert discovery.stale_token_file(env) is not None
    assert discovery.running_jbox(env) is None


def test_credentials_order(env, tmp_path, authority, grid_pki):
    with pytest.raises(AuthError, match="no user certificate"):
        discovery.find_credentials(env)
    jdoe = grid_pki.users["jdoe"]
    env.update(X509_USER_CERT=str(jdoe.cert), X509_USER_KEY=str(jdoe.key))
    assert discovery.find_credentials(env).kind == "usercert"
    proxy, proxy_key = make_proxy(load_cert(jdoe.cert), load_key(jdoe.key), hours=1)
    write_proxy_file(tmp_path / "x509up", proxy, proxy_key, [load_cert(jdoe.cert)])
    env["X509_USER_PROXY"] = str(tmp_path / "x509up")
    assert discovery.find_credentials(env).kind == "proxy"
    cert_path, key_path = discovery.token_cert_paths(env)
    cert_pem, key_pem = token(authority, 30)  # less than a minute left: skipped
    cert_path.write_bytes(cert_pem)
    key_path.write_bytes(key_pem)
    creds = discovery.find_credentials(env)
    assert creds.kind == "proxy" and "expired" in creds.notes[0]
    cert_pem, key_pem = token(authority, 3600)
    cert_path.write_bytes(cert_pem)
    key_path.write_bytes(key_pem)
    assert discovery.find_credentials(env).kind == "token"
    # a JobAgent's payload: the token itself in the environment
    env_cert, env_key = token(authority, 3600)
    env.update(JALIEN_TOKEN_CERT=env_cert.decode(), JALIEN_TOKEN_KEY=env_key.decode())
    creds = discovery.find_credentials(env)
    assert creds.kind == "env-token" and creds.cert_pem == env_cert
    # or their paths
    env.update(JALIEN_TOKEN_CERT=str(tmp_path / "c.pem"), JALIEN_TOKEN_KEY=str(tmp_path / "k.pem"))
    assert discovery.token_cert_paths(env) == (tmp_path / "c.pem", tmp_path / "k.pem")


def test_ca_dir(env, tmp_path):
    settings = Settings(home=str(tmp_path / "jhome"))
    (tmp_path / "jhome/certificates").mkdir(parents=True)
    assert discovery.ca_dir(settings, env) == tmp_path / "jhome/certificates"
    env["X509_CERT_DIR"] = "/somewhere"
    assert str(discovery.ca_dir(settings, env)) == "/somewhere"


def test_token_file_that_others_may_write_is_ignored(env):
    text = discovery.token_file_text(
        host="127.0.0.1", port=1234, ws_port=5678, pid=os.getpid(), user="jdoe", home="/"
    )
    paths = discovery.write_token_files(text, env)
    assert discovery.read_token_file(paths[0])
    for path in paths:
        path.chmod(0o622)
    assert discovery.read_token_file(paths[0]) == {}
    assert [e.source for e in discovery.candidates(Settings(), env)] == ["central"]
