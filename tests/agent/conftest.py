"""A job token of a test token CA, and a CA directory that trusts it (for the local socket)."""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from jalien.auth.cadir import write_ca_dir
from jalien.auth.tokens import TokenAuthority, TokenKind, TokenSubject, token_key_pem


@dataclass
class JobToken:
    cert: str
    key: str
    ca_dir: Path
    authority: TokenAuthority

    def issue(self, job_id: str, login: str = "jdoe") -> tuple[str, str]:
        subject = TokenSubject(TokenKind.JOB, login=login, extension=job_id)
        expiry = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        cert, key = self.authority.issue(subject, expiry)
        return cert.public_bytes(Encoding.PEM).decode(), token_key_pem(key).decode()


@pytest.fixture(scope="session")
def job_token(grid_pki, tmp_path_factory) -> JobToken:
    root = tmp_path_factory.mktemp("agent-tokens")
    ca_dir = root / "certificates"
    shutil.copytree(grid_pki.ca_dir, ca_dir, symlinks=True)
    authority, _ = TokenAuthority.load_or_create(root / "ca")
    write_ca_dir(ca_dir, [authority.ca_cert])
    token = JobToken("", "", ca_dir, authority)
    token.cert, token.key = token.issue("7")
    return token
