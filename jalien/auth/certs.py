"""RSA keys and X.509 certificates for a development grid: a CA, host and user credentials.

alien.py refuses RSA keys below 2048 bits, so this module does too. EC keys (P-256 and
larger NIST curves) are loaded and verified as well: token certificates and new token CAs use
them, because making an EC key costs microseconds where an RSA-2048 key costs tens of
milliseconds. Every issuing function accepts an explicit validity window so tests can build
expired or not-yet-valid credentials.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import AuthError
from .files import StrPath, read_file, write_file
from .names import dn_string

MIN_KEY_BITS = 2048
MIN_EC_BITS = 256  # P-256: what TLS 1.2/1.3, OpenSSL and Java all accept
# the private keys this package makes, loads and signs with
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
# Tolerate small clock differences between the machine issuing and the one verifying.
CLOCK_SKEW = dt.timedelta(minutes=5)


def utcnow() -> dt.datetime:
    """Timezone-aware now; cryptography's *_utc accessors return aware datetimes too."""
    return dt.datetime.now(dt.UTC)


def new_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    """A fresh RSA key with the usual public exponent."""
    if bits < MIN_KEY_BITS:
        raise AuthError(
            f"RSA keys must have at least {MIN_KEY_BITS} bits (alien.py refuses {bits})"
        )
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def new_ec_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-256 key (tens of microseconds, where RSA-2048 takes tens of ms)."""
    return ec.generate_private_key(ec.SECP256R1())


def _name(*pairs: tuple[x509.ObjectIdentifier, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in pairs])


def _validity(
    days: int, not_before: dt.datetime | None, not_after: dt.datetime | None
) -> tuple[dt.datetime, dt.datetime]:
    start = not_before or utcnow() - CLOCK_SKEW
    end = not_after or start + CLOCK_SKEW + dt.timedelta(days=days)
    if end <= start:
        raise AuthError(f"certificate validity ends ({end}) before it starts ({start})")
    return start, end


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: PublicKey,
    start: dt.datetime,
    end: dt.datetime,
    serial: int | None = None,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _issued_by(
    builder: x509.CertificateBuilder, ca_cert: x509.Certificate
) -> x509.CertificateBuilder:
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    return builder.add_extension(aki, critical=False)


def _key_usage(*, sign_certs: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=not sign_certs,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=sign_certs,
        crl_sign=sign_certs,
        encipher_only=False,
        decipher_only=False,
    )


def make_ca(
    cn: str,
    days: int = 3650,
    org: str = "jalien dev",
    *,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    bits: int = 2048,
    key: PrivateKey | None = None,
) -> tuple[x509.Certificate, PrivateKey]:
    """A self-signed CA (``/C=ch/O=<org>/CN=<cn>``) that may only issue end-entity certs;
    an RSA key of *bits* unless *key* is given (the token CA passes an EC key)."""
    key = key if key is not None else new_key(bits)
    name = _name(
        (NameOID.COUNTRY_NAME, "ch"), (NameOID.ORGANIZATION_NAME, org), (NameOID.COMMON_NAME, cn)
    )
    start, end = _validity(days, not_before, not_after)
    builder = (
        _builder(name, name, key.public_key(), start, end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(sign_certs=True), critical=True)
    )
    return builder.sign(key, hashes.SHA256()), key


def key_matches(cert: x509.Certificate, key: PrivateKey) -> bool:
    """Whether *key* is the private half of *cert*'s public key, whatever the certificate's
    key type (an Ed25519 certificate with an RSA key is a mismatch, not a crash)."""
    der, spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return cert.public_key().public_bytes(der, spki) == key.public_key().public_bytes(der, spki)


def _check_ca(ca_cert: x509.Certificate, ca_key: PrivateKey) -> None:
    if not key_matches(ca_cert, ca_key):
        raise AuthError("the CA key does not belong to the CA certificate")


def _san_entry(hostname: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(hostname))
    except ValueError:
        return x509.DNSName(hostname)


def issue_host_cert(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    hostnames: Sequence[str],
    days: int = 365,
    *,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    bits: int = 2048,
) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    """A host certificate for *hostnames* (DNS names or IP addresses, first one in the CN).

    It carries both serverAuth and clientAuth because a jalien service also connects
    upstream with its host credentials.
    """
    if not hostnames:
        raise AuthError("a host certificate needs at least one host name")
    _check_ca(ca_cert, ca_key)
    key = new_key(bits)
    subject = _name(
        (NameOID.COUNTRY_NAME, "ch"),
        (NameOID.ORGANIZATION_NAME, "jalien"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "Hosts"),
        (NameOID.COMMON_NAME, hostnames[0]),
    )
    start, end = _validity(days, not_before, not_after)
    eku = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    builder = (
        _issued_by(_builder(subject, ca_cert.subject, key.public_key(), start, end), ca_cert)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([_san_entry(h) for h in hostnames]), critical=False
        )
    )
    return builder.sign(ca_key, hashes.SHA256()), key


_LOGIN = re.compile(r"[a-z_][a-z0-9._-]{0,63}")


def check_login(login: str) -> str:
    """A grid login: lower case letters, digits, ``._-``; it becomes a CN and a path part."""
    if not _LOGIN.fullmatch(login):
        raise AuthError(f"invalid login {login!r}: use lower-case letters, digits, '.', '_' or '-'")
    return login


def issue_user_cert(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    login: str,
    full_name: str | None = None,
    days: int = 365,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    *,
    bits: int = 2048,
) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    """A user certificate ``/C=ch/O=jalien/OU=Users/CN=<login>[/CN=<full name>]``.

    keyUsage includes digitalSignature, which OpenSSL requires of a certificate that signs
    RFC 3820 proxies.
    """
    check_login(login)
    _check_ca(ca_cert, ca_key)
    key = new_key(bits)
    pairs = [
        (NameOID.COUNTRY_NAME, "ch"),
        (NameOID.ORGANIZATION_NAME, "jalien"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "Users"),
        (NameOID.COMMON_NAME, login),
    ]
    if full_name:
        pairs.append((NameOID.COMMON_NAME, full_name))
    start, end = _validity(days, not_before, not_after)
    builder = (
        _issued_by(_builder(_name(*pairs), ca_cert.subject, key.public_key(), start, end), ca_cert)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    )
    return builder.sign(ca_key, hashes.SHA256()), key


def load_certs(path: StrPath) -> list[x509.Certificate]:
    """Every certificate in a PEM file, in file order (a proxy file or a chain holds several)."""
    data = read_file(path, "certificate file")
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        certs = []
    if not certs:
        raise AuthError(f"{path} holds no PEM certificate")
    return certs


def load_cert(path: StrPath) -> x509.Certificate:
    """The first certificate of a PEM file: the end of the chain that the file is about."""
    return load_certs(path)[0]


_KEY_BLOCK = re.compile(
    rb"-----BEGIN ((?:RSA |EC |DSA |ENCRYPTED )?PRIVATE KEY)-----.*?-----END \1-----", re.DOTALL
)


def load_key(path: StrPath, password: bytes | None = None) -> PrivateKey:
    """The RSA or EC private key in a PEM file (alone or inside a proxy file)."""
    data = read_file(path, "key file")
    match = _KEY_BLOCK.search(data)
    if not match:
        raise AuthError(f"{path} is not a private key (no PEM private key block)")
    block = match.group(0)
    encrypted = match.group(1) == b"ENCRYPTED PRIVATE KEY" or b"Proc-Type: 4,ENCRYPTED" in block
    if encrypted and not password:
        raise AuthError(f"the private key {path} is encrypted: a password is needed")
    try:
        key = serialization.load_pem_private_key(block, password if encrypted else None)
    except ValueError:
        if encrypted:
            raise AuthError(f"cannot decrypt the private key {path}: wrong password") from None
        raise AuthError(f"{path} is not a private key (unreadable PEM key)") from None
    except (TypeError, UnsupportedAlgorithm) as exc:
        raise AuthError(f"cannot load the private key {path}: {exc}") from None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.key_size < MIN_EC_BITS:
            raise AuthError(
                f"the EC key in {path} is on {key.curve.name}; at least {MIN_EC_BITS} bits needed"
            )
        return key
    if not isinstance(key, rsa.RSAPrivateKey):
        raise AuthError(f"{path} is neither an RSA nor an EC private key")
    if key.key_size < MIN_KEY_BITS:
        raise AuthError(
            f"the key in {path} has {key.key_size} bits; at least {MIN_KEY_BITS} needed"
        )
    return key


def key_pem(key: PrivateKey, password: bytes | None = None) -> bytes:
    """PKCS#8 PEM, encrypted with the best available cipher when a password is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def certs_pem(certs: x509.Certificate | Sequence[x509.Certificate]) -> bytes:
    """Concatenated PEM blocks, leaf first."""
    if isinstance(certs, x509.Certificate):
        certs = [certs]
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def write_pem_key(
    path: StrPath,
    key: PrivateKey,
    password: bytes | None = None,
    *,
    overwrite: bool = False,
    mode: int = 0o600,
) -> None:
    """Write a private key readable by its owner only."""
    write_file(path, key_pem(key, password), mode, overwrite=overwrite)


def write_pem_cert(
    path: StrPath,
    certs: x509.Certificate | Sequence[x509.Certificate],
    *,
    overwrite: bool = False,
) -> None:
    """Write one certificate or a chain (leaf first), world-readable."""
    write_file(path, certs_pem(certs), 0o644, overwrite=overwrite)


def dn_of(cert: x509.Certificate) -> str:
    """The subject of *cert* in slash notation (a shortcut used all over the package)."""
    return dn_string(cert.subject)


def signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether *issuer* names and signed *cert* (no chain or time checks): RSA (PKCS#1 v1.5)
    and ECDSA signatures alike, so an old RSA token CA and a new EC one both verify."""
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
