"""Token certificates: short-lived X.509 credentials that central services issue, with a CA
of their own, to users who authenticated with their grid certificate.

A token's subject says whom it is for, in JAliEn's layout so that tokens read the same:

    user      /C=ch/O=AliEn2/CN=Users/CN=<requester>/OU=<login>
    job       /C=ch/O=AliEn2/CN=Jobs/CN=<login>/OU=<login>/OU=<job id>
    jobagent  /C=ch/O=AliEn2/CN=JobAgent
    host      /C=ch/O=AliEn2/OU=ALICE/CN=<fqdn>

Decisions:

* The subject means something only when the token CA signed the certificate. A server
  (``TokenVerifier``) checks the signature with the token CA's public key itself, on top of
  OpenSSL's chain check against the whole CA directory: another trusted CA issuing a
  certificate with the same subject gets nothing from it.
* The login comes from the subject, not from an account entry per token: tokens are many and
  short-lived, and a login removed from the accounts file stops its tokens at once.
* A token's key is ECDSA P-256 (``TokenKeyType.EC_P256``): making one costs ~15-50 us,
  where an RSA-2048 key costs ~35-45 ms, which capped matching near 20 jobs/s per core (each
  match issues a job token). A new token CA is EC P-256 too, so that its signature on each
  token (~30 us; RSA-2048: ~0.3-1 ms) is cheap; an existing RSA token CA keeps working
  (loaded, verified and signing as before). Python's ssl, OpenSSL, pyOpenSSL (alien.py's
  ``tokenkey-match``) and Java's TLS accept EC keys; the XRootD client never sees a token
  (it reads and writes with envelopes).
* The key is written as PKCS#8 (``BEGIN PRIVATE KEY``) for EC, PKCS#1 (``BEGIN RSA PRIVATE
  KEY``) for RSA as JAliEn sends it. alien.py 1.7.0 takes key *text* in ``JALIEN_TOKEN_KEY``
  only when it starts with the RSA header; any key type works when ``JALIEN_TOKEN_KEY``
  names a file, which is how a JobAgent hands the job token to its payload.
* A user token carries serverAuth as well as clientAuth and names localhost: jBox serves its
  local clients with it (the JAliEn JBox does the same).
"""

from __future__ import annotations

import datetime as dt
import enum
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from . import token_der
from .certs import (
    CLOCK_SKEW,
    PrivateKey,
    key_matches,
    load_cert,
    load_key,
    make_ca,
    new_ec_key,
    new_key,
    signed_by,
    utcnow,
    write_pem_cert,
    write_pem_key,
)
from .errors import AuthError

TOKEN_CA_NAME = "jalien token CA"
TOKEN_CA_CERT = "tokenca.pem"  # beside the dev CA, in {jalien home}/ca/
TOKEN_CA_KEY = "tokenca.key"
TOKEN_ORG = "AliEn2"


class TokenKeyType(enum.Enum):
    """The key a token certificate is issued with."""

    EC_P256 = "ec-p256"  # the default: cheap to make and to sign with
    RSA_2048 = "rsa-2048"  # what JAliEn issues; ~40 ms of CPU per key


def new_token_key(key_type: TokenKeyType) -> PrivateKey:
    return new_ec_key() if key_type is TokenKeyType.EC_P256 else new_key(2048)


class TokenKind(enum.Enum):
    USER = "user"
    JOB = "job"
    JOBAGENT = "jobagent"
    HOST = "host"


# JAliEn's TokenCertificateType limits, in days; an admin may ask for up to ADMIN_MAX_DAYS.
MAX_DAYS = {TokenKind.USER: 31, TokenKind.JOB: 2, TokenKind.JOBAGENT: 2, TokenKind.HOST: 365}
ADMIN_MAX_DAYS = 400

_LOCAL_NAMES: list[x509.GeneralName] = [
    x509.DNSName("localhost"),
    x509.DNSName("localhost.localdomain"),
    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    x509.IPAddress(ipaddress.ip_address("::1")),
]


@dataclass(frozen=True, slots=True)
class TokenSubject:
    """Whom a token is for: *login* acts; *requester* asked for it; *extension* is the job id
    of a job token or the host name of a host token."""

    kind: TokenKind
    login: str = ""
    requester: str = ""
    extension: str = ""


_DER_TYPES = {
    NameOID.COUNTRY_NAME: token_der.COUNTRY,
    NameOID.ORGANIZATION_NAME: token_der.ORGANIZATION,
    NameOID.ORGANIZATIONAL_UNIT_NAME: token_der.UNIT,
    NameOID.COMMON_NAME: token_der.COMMON_NAME,
}


def _name_pairs(subject: TokenSubject) -> list[tuple[x509.ObjectIdentifier, str]]:
    """The attributes of a token's subject, one per RDN, in order."""
    cn, ou = NameOID.COMMON_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME
    pairs = [(NameOID.COUNTRY_NAME, "ch"), (NameOID.ORGANIZATION_NAME, TOKEN_ORG)]
    kind = subject.kind
    if kind is TokenKind.USER:
        if not subject.login:
            raise AuthError("a user token needs a login")
        pairs += [(cn, "Users"), (cn, subject.requester or subject.login), (ou, subject.login)]
    elif kind is TokenKind.JOB:
        if not subject.login or not subject.extension:
            raise AuthError("a job token needs the user and the job id")
        pairs += [(cn, "Jobs"), (cn, subject.login), (ou, subject.login)]
        pairs.append((ou, subject.extension))
    elif kind is TokenKind.JOBAGENT:
        pairs.append((cn, "JobAgent"))
    else:
        if not subject.extension:
            raise AuthError("a host token needs the host name")
        pairs += [(ou, "ALICE"), (cn, subject.extension)]
    return pairs


def token_name(subject: TokenSubject) -> x509.Name:
    """The certificate subject of a token (see the module docstring)."""
    return x509.Name(
        [
            x509.RelativeDistinguishedName([x509.NameAttribute(oid, value)])
            for oid, value in _name_pairs(subject)
        ]
    )


def _name_der(pairs: list[tuple[x509.ObjectIdentifier, str]]) -> bytes:
    return token_der.name([(_DER_TYPES[oid], value) for oid, value in pairs])


def token_name_der(subject: TokenSubject) -> bytes:
    """``token_name(subject).public_bytes()``, encoded directly (the matching path)."""
    return _name_der(_name_pairs(subject))


def parse_token_name(name: x509.Name) -> TokenSubject | None:
    """The TokenSubject a token subject encodes, or None for any other layout."""
    pairs: list[tuple[str, str]] = []
    for rdn in name.rdns:
        attributes = list(rdn)
        if len(attributes) != 1:
            return None
        oid = attributes[0].oid
        short = {
            NameOID.COUNTRY_NAME: "C",
            NameOID.ORGANIZATION_NAME: "O",
            NameOID.COMMON_NAME: "CN",
            NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
        }.get(oid)
        if short is None:
            return None
        pairs.append((short, str(attributes[0].value)))
    if pairs[:2] != [("C", "ch"), ("O", TOKEN_ORG)]:
        return None
    rest = pairs[2:]
    keys = [k for k, _ in rest]
    values = [v for _, v in rest]
    if keys == ["CN", "CN", "OU"] and values[0] == "Users":
        return TokenSubject(TokenKind.USER, login=values[2], requester=values[1])
    if keys == ["CN", "CN", "OU", "OU"] and values[0] == "Jobs" and values[1] == values[2]:
        return TokenSubject(TokenKind.JOB, login=values[1], extension=values[3])
    if keys == ["CN"] and values[0] == "JobAgent":
        return TokenSubject(TokenKind.JOBAGENT, login="jobagent")
    if keys == ["OU", "CN"] and values[0] == "ALICE":
        return TokenSubject(TokenKind.HOST, extension=values[1])
    return None


def token_lifetime(
    kind: TokenKind,
    requested: dt.timedelta | None,
    *,
    admin: bool,
    limit: dt.datetime | None,
    now: dt.datetime | None = None,
) -> tuple[dt.datetime, list[str]]:
    """The not-after of a token as JAliEn grants it, and notes on any reduction.

    Default: the kind's maximum. Beyond it a user gets the maximum, an admin up to
    ADMIN_MAX_DAYS. *limit* (the requester's own certificate expiry) caps it, except for
    an admin's user and host tokens.
    """
    now = now or utcnow()
    notes: list[str] = []
    most = dt.timedelta(days=MAX_DAYS[kind])
    lifetime = requested if requested is not None and requested.total_seconds() > 0 else most
    if lifetime > most:
        if admin:
            lifetime = min(lifetime, dt.timedelta(days=ADMIN_MAX_DAYS))
        else:
            notes.append(
                f"Reducing the validity from {_days(lifetime)} to {_days(most)} as this is "
                "the max allowed value for this type of certificate"
            )
            lifetime = most
    not_after = now + lifetime
    uncapped = admin and kind in (TokenKind.USER, TokenKind.HOST)
    if limit is not None and not uncapped and not_after > limit:
        notes.append(
            f"Restricting the validity to {limit:%Y-%m-%d %H:%M:%S} UTC, when the "
            "requester's own certificate expires"
        )
        not_after = limit
    if not_after <= now:
        raise AuthError("the requester's certificate has expired: no token can be issued")
    return not_after, notes


def _days(delta: dt.timedelta) -> str:
    days = delta.total_seconds() / 86400
    return f"{days:g} days" if days >= 1 else f"{delta.total_seconds() / 3600:g} hours"


def token_key_pem(key: PrivateKey) -> bytes:
    """The unencrypted PEM sent as ``tokenkey``: PKCS#1 (``BEGIN RSA PRIVATE KEY``, as JAliEn
    sends it) for an RSA key, PKCS#8 (``BEGIN PRIVATE KEY``) for an EC key, the form every
    OpenSSL-based reader and Java's PKCS8EncodedKeySpec take."""
    form = (
        serialization.PrivateFormat.TraditionalOpenSSL
        if isinstance(key, rsa.RSAPrivateKey)
        else serialization.PrivateFormat.PKCS8
    )
    return key.private_bytes(serialization.Encoding.PEM, form, serialization.NoEncryption())


def _usage(key: PrivateKey) -> x509.KeyUsage:
    # JAliEn's token usage; an EC key cannot encipher keys (RFC 5480), so only RSA says so
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=True,
        key_encipherment=isinstance(key, rsa.RSAPrivateKey),
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


class TokenVerifier:
    """Recognises certificates the token CA signed; needs only the CA's certificate."""

    def __init__(self, ca_cert: x509.Certificate) -> None:
        self.ca_cert = ca_cert

    def recognize(self, cert: x509.Certificate) -> TokenSubject | None:
        """The TokenSubject of *cert* if the token CA signed it, else None."""
        if cert.issuer != self.ca_cert.subject or not signed_by(cert, self.ca_cert):
            return None
        return parse_token_name(cert.subject)


class TokenAuthority(TokenVerifier):
    """The token CA of central services: issues token certificates.

    The CA key may be RSA (token CAs made before EC) or EC P-256 (new ones); the tokens'
    own keys are *key_type* whatever the CA's is."""

    key_type = TokenKeyType.EC_P256

    def __init__(
        self,
        ca_cert: x509.Certificate,
        ca_key: PrivateKey,
        *,
        key_type: TokenKeyType | None = None,
    ) -> None:
        if not isinstance(ca_key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
            raise AuthError("the token CA key must be an RSA or EC key")
        if not key_matches(ca_cert, ca_key):
            raise AuthError("the token CA key does not belong to the token CA certificate")
        super().__init__(ca_cert)
        self._ca_key = ca_key
        if key_type is not None:
            self.key_type = key_type
        # what every token shares, computed once: issue() is on the matching path
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        self._aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
        self._ca_end = ca_cert.not_valid_after_utc
        self._templates: dict[tuple[TokenKind, bool], token_der.TokenTemplate] = {}

    @classmethod
    def load_or_create(cls, directory: Path) -> tuple[TokenAuthority, bool]:
        """The token CA kept in *directory* (created there when missing); True if created."""
        cert_path, key_path = directory / TOKEN_CA_CERT, directory / TOKEN_CA_KEY
        has_cert, has_key = cert_path.exists(), key_path.exists()
        if has_cert and has_key:
            return cls(load_cert(cert_path), load_key(key_path)), False
        if has_cert or has_key:
            present, missing = (cert_path, key_path) if has_cert else (key_path, cert_path)
            raise AuthError(
                f"found the token CA file {present} but not {missing}; move it away so that "
                "a new token CA is made"
            )
        cert, key = make_ca(TOKEN_CA_NAME, key=new_ec_key())
        directory.mkdir(parents=True, exist_ok=True)
        write_pem_key(key_path, key)
        write_pem_cert(cert_path, cert)
        return cls(cert, key), True

    def issue(
        self,
        subject: TokenSubject,
        not_after: dt.datetime,
        *,
        not_before: dt.datetime | None = None,
        key_type: TokenKeyType | None = None,
    ) -> tuple[x509.Certificate, PrivateKey]:
        """A fresh key and its token certificate: ~0.08 ms of CPU with an EC key and an EC
        token CA, ~0.4 ms with an RSA token CA, tens of ms with an RSA key."""
        pairs = _name_pairs(subject)  # checks the subject first
        start = not_before or utcnow() - CLOCK_SKEW
        if not_after <= start:
            raise AuthError("the token would expire before it becomes valid")
        key = new_token_key(key_type or self.key_type)
        public = key.public_key()
        end = min(not_after, self._ca_end)
        serial = x509.random_serial_number()
        if subject.kind is TokenKind.HOST:  # its extensions name the host: no template
            builder = (
                self._builder(subject, key)
                .subject_name(token_name(subject))
                .public_key(public)
                .serial_number(serial)
                .not_valid_before(start)
                .not_valid_after(end)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), False)
            )
            return builder.sign(self._ca_key, hashes.SHA256()), key
        template = self._templates.get((subject.kind, isinstance(key, rsa.RSAPrivateKey)))
        if template is None:
            template = self._template(subject, key)
        der = template.certificate(serial, start, end, _name_der(pairs), public)
        return x509.load_der_x509_certificate(der), key

    def _template(self, subject: TokenSubject, key: PrivateKey) -> token_der.TokenTemplate:
        """The template of a kind and key type, cut from a certificate the builder makes."""
        public = key.public_key()
        sample = (
            self._builder(subject, key)
            .subject_name(token_name(subject))
            .public_key(public)
            .serial_number(1)
            .not_valid_before(self.ca_cert.not_valid_before_utc)
            .not_valid_after(self._ca_end)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), False)
            .sign(self._ca_key, hashes.SHA256())
        )
        template = token_der.TokenTemplate(sample, self._ca_key)
        self._templates[(subject.kind, isinstance(key, rsa.RSAPrivateKey))] = template
        return template

    def _builder(self, subject: TokenSubject, key: PrivateKey) -> x509.CertificateBuilder:
        """Issuer and the extensions a token's kind and key type give it, but its own key
        identifier (added last)."""
        kind = subject.kind
        eku = [ExtendedKeyUsageOID.CLIENT_AUTH]
        if kind is not TokenKind.JOBAGENT:
            eku.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if kind is TokenKind.USER:
            eku.append(ExtendedKeyUsageOID.EMAIL_PROTECTION)
        if kind is TokenKind.HOST:
            names: list[x509.GeneralName] = [x509.DNSName(subject.extension)]
        else:
            names = list(_LOCAL_NAMES)
        return (
            x509.CertificateBuilder()
            .issuer_name(self.ca_cert.subject)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(key), critical=True)
            .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(self._aki, False)
        )
