"""A test grid's credentials, made once per session: a CA, a host, several users (one
revoked, one unknown, one expired, one from a foreign CA) and a proxy."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from jalien.auth.accounts import Account, AccountMap
from jalien.auth.cadir import write_ca_dir
from jalien.auth.certs import (
    dn_of,
    issue_host_cert,
    issue_user_cert,
    make_ca,
    write_pem_cert,
    write_pem_key,
)
from jalien.auth.proxy import make_proxy, write_proxy_file


@dataclass
class Cred:
    login: str
    dn: str
    cert: Path
    key: Path


@dataclass
class GridPki:
    root: Path
    ca_dir: Path
    host_cert: Path
    host_key: Path
    accounts: Path
    users: dict[str, Cred]

    def home(self, login: str) -> str:
        return f"/alice/cern.ch/user/{login[0]}/{login}/"


def make_grid_pki(root: Path) -> GridPki:
    root.mkdir(parents=True, exist_ok=True)
    ca, ca_key = make_ca("jalien test CA")
    write_ca_dir(root / "certificates", [ca])
    host, host_key = issue_host_cert(ca, ca_key, ["localhost", "127.0.0.1", "::1"])
    write_pem_cert(root / "hostcert.pem", host)
    write_pem_key(root / "hostkey.pem", host_key)
    users: dict[str, Cred] = {}
    accounts = AccountMap()

    def user(login: str, issuer=ca, issuer_key=ca_key, register=True, **validity) -> Cred:
        cert, key = issue_user_cert(issuer, issuer_key, login, **validity)
        cred = Cred(login, dn_of(cert), root / f"{login}.pem", root / f"{login}.key")
        write_pem_cert(cred.cert, cert)
        write_pem_key(cred.key, key)
        users[login] = cred
        if register:
            roles = ["users", "admin"] if login == "jdoe" else ["users"]
            if login == "vobox":
                roles = ["users", "proxy"]
            accounts.add(
                Account(
                    login=login,
                    dn=cred.dn,
                    roles=roles,
                    home=f"/alice/cern.ch/user/{login[0]}/{login}/",
                )
            )
        return cred

    jdoe = user("jdoe")
    user("alice")
    user("vobox")
    user("mallory")
    accounts.revoke(users["mallory"].dn)
    user("stranger", register=False)
    now = dt.datetime.now(dt.UTC)
    user("old", not_before=now - dt.timedelta(days=30), not_after=now - dt.timedelta(days=1))
    foreign_ca, foreign_key = make_ca("some other CA")
    user("foreigner", issuer=foreign_ca, issuer_key=foreign_key, register=False)
    # an RFC 3820 proxy of jdoe: cert + key + chain in one file, as /tmp/x509up_u<uid>
    from jalien.auth.certs import load_cert, load_key

    proxy, proxy_key = make_proxy(load_cert(jdoe.cert), load_key(jdoe.key), hours=2)
    proxy_path = root / "x509up_jdoe"
    write_proxy_file(proxy_path, proxy, proxy_key, [load_cert(jdoe.cert)])
    users["jdoe-proxy"] = Cred("jdoe", jdoe.dn, proxy_path, proxy_path)
    accounts.save(root / "accounts.toml")
    return GridPki(
        root,
        root / "certificates",
        root / "hostcert.pem",
        root / "hostkey.pem",
        root / "accounts.toml",
        users,
    )
