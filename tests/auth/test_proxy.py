import datetime as dt
import shutil
import stat
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from jalien.auth.certs import issue_user_cert, load_certs, load_key
from jalien.auth.errors import AuthError
from jalien.auth.identity import cert_end_entity_dn, end_entity_dn
from jalien.auth.names import dn_string
from jalien.auth.proxy import (
    PROXY_CERT_INFO,
    is_limited,
    is_proxy,
    make_proxy,
    proxy_cert_info,
    time_left,
    write_proxy_file,
)

USER = "/C=ch/O=jalien/OU=Users/CN=jdoe"


def test_proxy_cert_info_der():
    # SEQUENCE { SEQUENCE { OID 1.3.6.1.5.5.7.21.1 } }
    assert proxy_cert_info() == bytes.fromhex("300c300a06082b06010505071501")
    assert proxy_cert_info(path_len=0).startswith(bytes.fromhex("300f020100"))


def test_make_proxy(pki):
    proxy, key = make_proxy(pki.user, pki.user_key, hours=2)
    subject = dn_string(proxy.subject)
    assert subject.startswith(USER + "/CN=")
    assert subject.rsplit("=", 1)[1] == str(proxy.serial_number)
    assert proxy.issuer == pki.user.subject
    ext = proxy.extensions.get_extension_for_oid(PROXY_CERT_INFO)
    assert ext.critical
    usage = proxy.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment
    assert is_proxy(proxy) and not is_proxy(pki.user)
    assert not is_limited(proxy)
    assert 2 * 3600 - 60 < time_left(proxy) <= 2 * 3600
    proxy.verify_directly_issued_by(pki.user)
    assert key.key_size == 2048


def test_limited_proxy(pki):
    proxy, _ = make_proxy(pki.user, pki.user_key, limited=True)
    assert is_proxy(proxy) and is_limited(proxy)


def test_proxy_never_outlives_issuer(pki):
    now = dt.datetime.now(dt.UTC)
    short, short_key = issue_user_cert(
        pki.ca,
        pki.ca_key,
        "jdoe",
        not_before=now - dt.timedelta(hours=1),
        not_after=now + dt.timedelta(hours=1),
    )
    proxy, _ = make_proxy(short, short_key, hours=12)
    assert proxy.not_valid_after_utc == short.not_valid_after_utc
    expired, expired_key = issue_user_cert(
        pki.ca,
        pki.ca_key,
        "jdoe",
        not_before=now - dt.timedelta(days=2),
        not_after=now - dt.timedelta(days=1),
    )
    with pytest.raises(AuthError, match="expired"):
        make_proxy(expired, expired_key)
    assert time_left(expired) < 0


def test_proxy_file_layout(tmp_path, pki):
    proxy, key = make_proxy(pki.user, pki.user_key)
    path = tmp_path / "x509up_u1000"
    write_proxy_file(path, proxy, key, [pki.user])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_bytes()
    markers = [text.index(b"BEGIN CERTIFICATE"), text.index(b"BEGIN PRIVATE KEY")]
    markers.append(text.index(b"BEGIN CERTIFICATE", markers[1]))
    assert markers == sorted(markers)
    assert load_certs(path) == [proxy, pki.user]
    assert load_key(path).private_numbers() == key.private_numbers()
    assert b"ENCRYPTED" not in text


def test_openssl_verifies_proxy_chain(tmp_path, pki):
    if shutil.which("openssl") is None:
        pytest.skip("SKIPPED LOUDLY: no `openssl` command")
    proxy, _ = make_proxy(pki.user, pki.user_key)
    leaf = tmp_path / "proxy.pem"
    leaf.write_bytes(proxy.public_bytes(serialization.Encoding.PEM))
    untrusted = tmp_path / "user.pem"
    untrusted.write_bytes(pki.user.public_bytes(serialization.Encoding.PEM))
    base = ["openssl", "verify", "-CApath", str(pki.ca_dir), "-untrusted", str(untrusted)]
    ok = subprocess.run([*base, "-allow_proxy_certs", str(leaf)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    refused = subprocess.run([*base, str(leaf)], capture_output=True, text=True)
    assert refused.returncode != 0


def test_end_entity_dn_strings():
    proxy1 = USER + "/CN=1234"
    proxy2 = proxy1 + "/CN=5678"
    assert end_entity_dn(USER) == USER
    assert end_entity_dn(proxy1) == proxy1  # no issuer: nothing proves it is a proxy
    assert end_entity_dn(proxy1, USER) == USER
    assert end_entity_dn(proxy2, proxy1) == proxy1
    assert end_entity_dn(proxy2, proxy1, issuers=[USER, "/C=ch/O=jalien dev/CN=CA"]) == USER
    assert end_entity_dn(USER, "/C=ch/O=jalien dev/CN=CA") == USER
    assert end_entity_dn(proxy1, USER, proxy=False) == proxy1
    assert end_entity_dn(USER + "/emailAddress=a@b.c/CN=1", USER + "/E=a@b.c") == (
        USER + "/emailAddress=a@b.c"
    )


def test_end_entity_dn_refuses_bad_proxy():
    with pytest.raises(AuthError, match="refusing proxy"):
        end_entity_dn(USER + "/CN=1", "/C=ch/O=jalien/OU=Users/CN=mallory", proxy=True)
    with pytest.raises(AuthError, match="refusing proxy"):
        end_entity_dn(USER + "/OU=1", USER, proxy=True)
    with pytest.raises(AuthError, match="refusing proxy"):
        end_entity_dn(USER + "/CN=1", proxy=True)


def test_cert_end_entity_dn(pki):
    proxy, key = make_proxy(pki.user, pki.user_key)
    proxy2, _ = make_proxy(proxy, key)
    assert cert_end_entity_dn(pki.user) == USER
    assert cert_end_entity_dn(proxy) == USER
    assert cert_end_entity_dn(proxy2) == dn_string(proxy.subject)
    assert cert_end_entity_dn(proxy2, proxy_of_proxy=True) == USER
