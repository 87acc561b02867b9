"""RFC 3820 proxy certificates: short-lived credentials a user signs with their own key.

A proxy's subject is its issuer's subject plus one ``CN=<serial>``; the critical
proxyCertInfo extension marks it so OpenSSL (with X509_V_FLAG_ALLOW_PROXY_CERTS) accepts an
end-entity certificate as its signer. The proxy file layout is Globus's: proxy certificate,
its unencrypted key, then the chain up to (not including) the CA.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from . import der
from .certs import CLOCK_SKEW, PrivateKey, certs_pem, key_matches, key_pem, new_key, utcnow
from .errors import AuthError
from .files import StrPath, write_file

PROXY_CERT_INFO = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.14")
# The pre-RFC Globus draft used this OID for the same extension; still seen in old proxies.
PROXY_CERT_INFO_DRAFT = x509.ObjectIdentifier("1.3.6.1.4.1.3536.1.222")
PPL_INHERIT_ALL = "1.3.6.1.5.5.7.21.1"
# Globus's policy language for "limited" proxies (refused for job submission by services).
PPL_LIMITED = "1.3.6.1.4.1.3536.1.1.1.9"


def proxy_cert_info(policy_language: str = PPL_INHERIT_ALL, path_len: int | None = None) -> bytes:
    """DER of ProxyCertInfo ::= SEQUENCE { pCPathLenConstraint OPTIONAL, proxyPolicy }."""
    policy = der.tlv(der.SEQUENCE, der.encode_oid(policy_language))
    length = b""
    if path_len is not None:
        if path_len < 0:
            raise AuthError("a proxy path length cannot be negative")
        body = path_len.to_bytes(path_len.bit_length() // 8 + 1, "big")  # keep the sign bit 0
        length = der.tlv(der.INTEGER, body)
    return der.tlv(der.SEQUENCE, length + policy)


def make_proxy(
    issuer_cert: x509.Certificate,
    issuer_key: PrivateKey,
    hours: float = 12,
    bits: int = 2048,
    limited: bool = False,
    *,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    """A proxy of *issuer_cert* valid for *hours*, never beyond the issuer's own expiry."""
    if not key_matches(issuer_cert, issuer_key):
        raise AuthError("the key does not belong to the certificate the proxy extends")
    now = utcnow()
    issuer_end = issuer_cert.not_valid_after_utc
    if not_after is None and issuer_end <= now:
        raise AuthError(f"cannot make a proxy: the certificate expired on {issuer_end}")
    start = not_before or max(now - CLOCK_SKEW, issuer_cert.not_valid_before_utc)
    end = not_after or min(now + dt.timedelta(hours=hours), issuer_end)
    if end <= start:
        raise AuthError("the proxy would expire before it becomes valid")
    key = new_key(bits)
    serial = secrets.randbelow(2**62) + 1
    subject = x509.Name(
        [
            *issuer_cert.subject.rdns,
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, str(serial))]),
        ]
    )
    language = PPL_LIMITED if limited else PPL_INHERIT_ALL
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=True,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(usage, critical=True)
        .add_extension(
            x509.UnrecognizedExtension(PROXY_CERT_INFO, proxy_cert_info(language)), critical=True
        )
    )
    return builder.sign(issuer_key, hashes.SHA256()), key


def write_proxy_file(
    path: StrPath,
    proxy_cert: x509.Certificate,
    proxy_key: rsa.RSAPrivateKey,
    chain: Sequence[x509.Certificate],
    *,
    overwrite: bool = True,
) -> None:
    """Write the Globus proxy file (cert, unencrypted key, chain) with mode 0600.

    Replacing an old proxy is the normal case (``/tmp/x509up_u<uid>``), so *overwrite*
    defaults to True here, unlike the other writers.
    """
    data = certs_pem(proxy_cert) + key_pem(proxy_key) + certs_pem(list(chain))
    write_file(path, data, 0o600, overwrite=overwrite)


def is_proxy(cert: x509.Certificate) -> bool:
    """Whether *cert* carries the proxyCertInfo extension (RFC 3820 or the Globus draft)."""
    return any(ext.oid in (PROXY_CERT_INFO, PROXY_CERT_INFO_DRAFT) for ext in cert.extensions)


def is_limited(cert: x509.Certificate) -> bool:
    """Whether *cert* is a proxy whose policy language is Globus's "limited"."""
    try:
        ext = cert.extensions.get_extension_for_oid(PROXY_CERT_INFO)
    except x509.ExtensionNotFound:
        return False
    value = ext.value
    raw = value.value if isinstance(value, x509.UnrecognizedExtension) else b""
    return der.encode_oid(PPL_LIMITED) in raw


def time_left(cert: x509.Certificate, now: dt.datetime | None = None) -> float:
    """Seconds until *cert* expires (negative once it has)."""
    return (cert.not_valid_after_utc - (now or utcnow())).total_seconds()
