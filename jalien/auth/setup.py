"""``jalien-bin setup``: everything a developer machine needs to run a grid of its own.

It creates a development CA, the token CA of jcentral, host credentials, the hashed CA
directory, the user's credentials in ~/.globus and the user's account (with the admin role:
it is the machine owner's grid). Existing files are never overwritten silently: they are
kept, used, and reported; ``force=True`` regenerates everything (but the token CA, so that
tokens already issued stay valid). Running it twice changes nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from jalien.config import Settings

from .accounts import RESERVED_LOGINS, Account, AccountMap
from .cadir import write_ca_dir
from .certs import (
    PrivateKey,
    check_login,
    dn_of,
    issue_host_cert,
    issue_user_cert,
    key_matches,
    load_cert,
    load_key,
    make_ca,
    signed_by,
    write_pem_cert,
    write_pem_key,
)
from .errors import AuthError
from .names import dn_string
from .tokens import TOKEN_CA_CERT, TOKEN_CA_KEY, TokenAuthority

DEFAULT_HOSTNAMES = ("localhost", "127.0.0.1", "::1")
DEV_CA_NAME = "jalien dev CA"
USER_ROLES = ["users", "admin"]
# the single-machine grid's VoBox acts for its worker nodes with the host certificate
VOBOX_LOGIN, VOBOX_ROLES = "vobox", ["proxy"]


@dataclass
class SetupReport:
    """What setup did, for the CLI to print (``lines()``) and for tests to check."""

    login: str
    user_dn: str = ""
    created: list[Path] = field(default_factory=list)
    updated: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"created {p}" for p in self.created]
        out += [f"updated {p}" for p in self.updated]
        out += [f"kept existing {p}" for p in self.kept]
        out += self.notes
        if self.user_dn:
            out.append(f"user {self.login} is {self.user_dn}")
        return out


def _existing_pair(cert: Path, key: Path, what: str, force: bool) -> bool:
    """True when both files exist and are to be kept; AuthError when only one does."""
    if force:
        return False
    has_cert, has_key = cert.exists(), key.exists()
    if has_cert and has_key:
        return True
    if has_cert or has_key:
        present, missing = (cert, key) if has_cert else (key, cert)
        raise AuthError(
            f"found the {what} file {present} but not {missing}; "
            "move it away or run setup with --force to regenerate both"
        )
    return False


def _refuse_half_pairs(settings: Settings, globus: Path, force: bool) -> None:
    ca_dir = settings.home_path / "ca"
    _existing_pair(ca_dir / "ca.pem", ca_dir / "ca.key", "dev CA", force)
    _existing_pair(settings.host_cert_path, settings.host_key_path, "host certificate", force)
    cert_path, key_path = globus / "usercert.pem", globus / "userkey.pem"
    if not force and key_path.exists() and not cert_path.exists():
        raise AuthError(
            f"found {key_path} but not {cert_path}; move it away or run setup with --force"
        )


def _ca(directory: Path, report: SetupReport, force: bool) -> tuple[x509.Certificate, PrivateKey]:
    cert_path, key_path = directory / "ca.pem", directory / "ca.key"
    if _existing_pair(cert_path, key_path, "dev CA", force):
        cert, key = load_cert(cert_path), load_key(key_path)
        if not key_matches(cert, key):
            raise AuthError(f"{key_path} is not the key of {cert_path}")
        report.kept += [cert_path, key_path]
        return cert, key
    cert, key = make_ca(DEV_CA_NAME)
    directory.mkdir(parents=True, exist_ok=True)
    write_pem_key(key_path, key, None, overwrite=force)
    write_pem_cert(cert_path, cert, overwrite=force)
    report.created += [cert_path, key_path]
    return cert, key


def _token_ca(directory: Path, report: SetupReport) -> x509.Certificate:
    """jcentral's token CA (kept across --force: tokens already issued stay valid)."""
    authority, created = TokenAuthority.load_or_create(directory)
    paths = [directory / TOKEN_CA_CERT, directory / TOKEN_CA_KEY]
    (report.created if created else report.kept).extend(paths)
    return authority.ca_cert


def _host(
    settings: Settings,
    ca: tuple[x509.Certificate, PrivateKey],
    hostnames: list[str],
    report: SetupReport,
    force: bool,
) -> None:
    cert_path, key_path = settings.host_cert_path, settings.host_key_path
    if _existing_pair(cert_path, key_path, "host certificate", force):
        report.kept += [cert_path, key_path]
        if not signed_by(load_cert(cert_path), ca[0]):
            report.notes.append(
                f"note: the kept host certificate {cert_path} was not issued by the dev CA; "
                "clients trusting only the dev CA will refuse it (use --force to renew)"
            )
        return
    cert, key = issue_host_cert(*ca, hostnames)
    write_pem_key(key_path, key, None, overwrite=force)
    write_pem_cert(cert_path, cert, overwrite=force)
    report.created += [cert_path, key_path]


def _user(
    globus: Path,
    ca: tuple[x509.Certificate, PrivateKey],
    login: str,
    password: bytes | None,
    ca_dir: Path,
    report: SetupReport,
    force: bool,
) -> str:
    cert_path, key_path = globus / "usercert.pem", globus / "userkey.pem"
    if not force and cert_path.exists():
        cert = load_cert(cert_path)
        report.kept.append(cert_path)
        if key_path.exists():
            report.kept.append(key_path)
        else:
            report.notes.append(f"note: no {key_path} beside the kept {cert_path}")
        if not signed_by(cert, ca[0]):
            report.notes.append(
                f"note: the kept user certificate {cert_path} was issued by "
                f"{dn_string(cert.issuer)}, not by the dev CA; its DN is registered anyway, "
                f"but its CA was not added to {ca_dir}"
            )
        return dn_of(cert)
    globus.mkdir(mode=0o700, parents=True, exist_ok=True)
    cert, key = issue_user_cert(*ca, login)
    write_pem_key(key_path, key, password, overwrite=force)
    write_pem_cert(cert_path, cert, overwrite=force)
    report.created += [cert_path, key_path]
    return dn_of(cert)


def _register(settings: Settings, account: Account, report: SetupReport, force: bool) -> None:
    path = settings.accounts_path
    existed = path.exists()
    accounts = AccountMap.load(path) if existed else AccountMap()
    current = accounts.get(account.dn)
    listed = path in report.kept or path in report.created or path in report.updated
    if current == account:
        if not listed:
            report.kept.append(path)
        return
    if current is not None and not force:
        if not listed:
            report.kept.append(path)
        report.notes.append(
            f"note: {account.dn} is already registered as {current.login} "
            f"(roles {', '.join(current.roles) or 'none'}) in {path}; left unchanged"
        )
        return
    accounts.add(account)
    accounts.save(path)
    if path in report.kept:
        report.kept.remove(path)
    if path not in report.created and path not in report.updated:
        (report.updated if existed else report.created).append(path)


def run_setup(
    settings: Settings,
    *,
    globus_dir: Path | None = None,
    password: bytes | None = None,
    login: str,
    hostnames: list[str] | None = None,
    force: bool = False,
) -> SetupReport:
    """Create (or keep) the dev CA, host and user credentials, CA dir and user account."""
    check_login(login)
    if login in RESERVED_LOGINS:
        raise AuthError(f"login {login!r} is reserved (the catalogue's own owner): choose another")
    globus = Path(os.path.expanduser(globus_dir)) if globus_dir else Path.home() / ".globus"
    report = SetupReport(login=login)
    _refuse_half_pairs(settings, globus, force)  # before writing anything
    ca = _ca(settings.home_path / "ca", report, force)
    _host(settings, ca, list(hostnames or DEFAULT_HOSTNAMES), report, force)
    token_ca = _token_ca(settings.home_path / "ca", report)
    # jalien's own CA dir under the home unless one was asked for (ca_dir in the config, flags or
    # JALIEN_CA_DIR): an X509_CERT_DIR in the environment is some grid's trust store to read, not
    # a place to add a development CA to
    ca_dir = settings.path(settings.ca_dir, "certificates")
    created = write_ca_dir(ca_dir, [ca[0], token_ca])
    outside = os.environ.get("X509_CERT_DIR", "")
    if outside and Path(os.path.expanduser(outside)) != ca_dir:
        report.notes.append(
            f"note: X509_CERT_DIR={outside} was left alone; the dev CA is in {ca_dir}"
            f" (use X509_CERT_DIR={ca_dir} for this grid)"
        )
    report.created += created
    if not created:
        report.kept.append(ca_dir)
    elif force:
        report.notes.append(
            f"note: {ca_dir} still trusts any previous dev CA; remove its files if unwanted"
        )
    report.user_dn = _user(globus, ca, login, password, ca_dir, report, force)
    home = settings.user_home_template.format(initial=login[0], login=login)
    account = Account(login=login, dn=report.user_dn, roles=list(USER_ROLES), home=home)
    _register(settings, account, report, force)
    host_dn = dn_of(load_cert(settings.host_cert_path))
    vobox = Account(login=VOBOX_LOGIN, dn=host_dn, roles=list(VOBOX_ROLES), home="/alice/vobox/")
    _register(settings, vobox, report, force)
    return report
