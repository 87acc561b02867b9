import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from jalien.auth.certs import new_key, write_pem_cert
from jalien.auth.errors import AuthError
from jalien.auth.names import dn_string, normalize_dn, parse_dn, split_dn, subject_hash


def test_dn_string_keeps_certificate_order():
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "ch"),
            x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "cern"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Users"),
            x509.NameAttribute(NameOID.COMMON_NAME, "jdoe"),
            x509.NameAttribute(NameOID.EMAIL_ADDRESS, "jdoe@cern.ch"),
        ]
    )
    assert dn_string(name) == "/DC=ch/DC=cern/OU=Users/CN=jdoe/emailAddress=jdoe@cern.ch"


@pytest.mark.parametrize(
    "dn",
    [
        "/C=ch/O=AliEn/CN=jdoe",
        "/DC=ch/DC=cern/OU=Organic Units/OU=Users/CN=jdoe/CN=123456/CN=John Doe",
        "/C=ch/O=jalien/CN=host/alice.cern.ch",
        "/O=Grid/CN=a+UID=b/L=Genève",
    ],
)
def test_parse_dn_round_trips(dn):
    assert dn_string(parse_dn(dn)) == dn


def test_parse_dn_types_and_aliases():
    name = parse_dn("/C=ch/DC=cern/E=jdoe@cern.ch/CN=x")
    assert name.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)[0].value == "jdoe@cern.ch"
    assert normalize_dn("/C=ch/E=a@b.c") == "/C=ch/emailAddress=a@b.c"
    assert split_dn("/C=ch/CN=a+CN=b") == [[("C", "ch")], [("CN", "a"), ("CN", "b")]]


@pytest.mark.parametrize("bad", ["C=ch/O=x", "/", "/XX=1", "/C=switzerland"])
def test_parse_dn_refuses_garbage(bad):
    with pytest.raises(AuthError):
        parse_dn(bad)


HASH_NAMES = [
    "/C=ch/O=AliEn/CN=jdoe",
    "/C=CH/O=ALIEN/CN=JDoe",
    "/DC=ch/DC=cern/OU=Organic Units/OU=Users/CN=JDoe/CN=123456/CN=John    Doe ",
    "/O=  Leading and trailing  /CN=tab\there\t\tand  spaces",
    "/C=ch/O=jalien dev/CN=jalien dev CA",
    "/DC=org/DC=Example/CN=Zoë ÉCOLE/emailAddress=Jdoe@Example.ORG",
    "/O=multi/CN=zz+UID=AA+CN=Bb",
]


def _openssl_hash(path: Path) -> str:
    out = subprocess.run(
        ["openssl", "x509", "-noout", "-subject_hash", "-in", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def test_subject_hash_matches_openssl(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("SKIPPED LOUDLY: no `openssl` command, subject_hash not checked against it")
    key = new_key()
    now = dt.datetime.now(dt.UTC)
    names = [parse_dn(dn) for dn in HASH_NAMES] + [x509.Name([])]
    for index, name in enumerate(names):
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(index + 1)
            .not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256())
        )
        path = tmp_path / f"{index}.pem"
        write_pem_cert(path, cert)
        assert subject_hash(name) == _openssl_hash(path), dn_string(name)


def test_subject_hash_ignores_case_and_spacing():
    assert subject_hash(parse_dn("/O=A  b/CN=X")) == subject_hash(parse_dn("/O=a b/CN=x "))
    assert subject_hash(parse_dn("/O=a/CN=x")) != subject_hash(parse_dn("/O=a/CN=y"))
