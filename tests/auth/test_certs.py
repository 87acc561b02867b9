import datetime as dt
import ipaddress
import stat

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from jalien.auth.certs import (
    dn_of,
    issue_user_cert,
    load_cert,
    load_certs,
    load_key,
    make_ca,
    new_key,
    signed_by,
    write_pem_cert,
    write_pem_key,
)
from jalien.auth.errors import AuthError
from jalien.auth.names import dn_string


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_small_keys_refused():
    with pytest.raises(AuthError, match="2048"):
        new_key(1024)


def test_ca(pki):
    assert dn_of(pki.ca) == "/C=ch/O=jalien dev/CN=test CA"
    assert pki.ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert signed_by(pki.ca, pki.ca)


def test_host_cert(pki):
    host = load_cert(pki.host_cert)
    assert signed_by(host, pki.ca)
    san = host.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    eku = host.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}


def test_user_cert(pki):
    assert dn_string(pki.user.subject) == "/C=ch/O=jalien/OU=Users/CN=jdoe"
    assert signed_by(pki.user, pki.ca)
    eku = pki.user.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_user_cert_full_name_and_validity(pki):
    start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    end = dt.datetime(2020, 2, 1, tzinfo=dt.UTC)
    cert, _ = issue_user_cert(
        pki.ca, pki.ca_key, "jdoe", "John Doe", not_before=start, not_after=end
    )
    assert dn_of(cert) == "/C=ch/O=jalien/OU=Users/CN=jdoe/CN=John Doe"
    assert (cert.not_valid_before_utc, cert.not_valid_after_utc) == (start, end)


def test_bad_login_and_foreign_key(pki):
    with pytest.raises(AuthError, match="invalid login"):
        issue_user_cert(pki.ca, pki.ca_key, "J Doe/x")
    with pytest.raises(AuthError, match="does not belong"):
        issue_user_cert(pki.ca, pki.user_key, "jdoe")


def test_write_modes_and_no_overwrite(tmp_path, pki):
    key_path, cert_path = tmp_path / "k.pem", tmp_path / "c.pem"
    write_pem_key(key_path, pki.user_key)
    write_pem_cert(cert_path, [pki.user, pki.ca])
    assert _mode(key_path) == 0o600
    assert _mode(cert_path) == 0o644
    before = key_path.read_bytes()
    with pytest.raises(AuthError, match=str(key_path)):
        write_pem_key(key_path, pki.ca_key)
    with pytest.raises(AuthError, match=str(cert_path)):
        write_pem_cert(cert_path, pki.ca)
    assert key_path.read_bytes() == before
    write_pem_cert(cert_path, pki.ca, overwrite=True)
    assert load_certs(cert_path) == [pki.ca]
    assert _mode(cert_path) == 0o644


def test_load_chain_and_keys(tmp_path, pki):
    chain = tmp_path / "chain.pem"
    write_pem_cert(chain, [pki.user, pki.ca])
    assert load_certs(chain) == [pki.user, pki.ca]
    assert load_cert(chain) == pki.user
    enc = tmp_path / "enc.pem"
    write_pem_key(enc, pki.user_key, b"secret")
    assert b"ENCRYPTED" in enc.read_bytes()
    loaded = load_key(enc, b"secret")
    assert loaded.private_numbers() == pki.user_key.private_numbers()
    with pytest.raises(AuthError, match="wrong password"):
        load_key(enc, b"nope")
    with pytest.raises(AuthError, match="password is needed"):
        load_key(enc)
    with pytest.raises(AuthError, match="not a private key"):
        load_key(chain)
    with pytest.raises(AuthError, match="does not exist"):
        load_key(tmp_path / "missing.pem")
    with pytest.raises(AuthError, match="no PEM certificate"):
        load_certs(enc)


def test_load_key_from_combined_file(tmp_path, pki):
    both = tmp_path / "both.pem"
    both.write_bytes(pki.user_cert_path.read_bytes() + pki.user_key_path.read_bytes())
    assert load_key(both).private_numbers() == pki.user_key.private_numbers()


def test_other_ca_not_signer(pki):
    other, _ = make_ca("other CA")
    assert not signed_by(pki.user, other)
