import shutil
import subprocess

import pytest

from jalien.auth.cadir import write_ca_dir
from jalien.auth.certs import make_ca
from jalien.auth.names import subject_hash


def test_pem_and_hash_files(tmp_path, pki):
    created = write_ca_dir(tmp_path, [pki.ca])
    digest = subject_hash(pki.ca.subject)
    assert sorted(p.name for p in created) == sorted(["test-CA.pem", f"{digest}.0"])
    link = tmp_path / f"{digest}.0"
    assert link.is_symlink() and not link.readlink().is_absolute()
    assert link.read_bytes() == (tmp_path / "test-CA.pem").read_bytes()


def test_idempotent_and_collisions(tmp_path, pki):
    write_ca_dir(tmp_path, [pki.ca])
    before = sorted(p.name for p in tmp_path.iterdir())
    assert write_ca_dir(tmp_path, [pki.ca]) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    twin, _ = make_ca("test CA")  # same subject, other key: same hash, other file
    created = write_ca_dir(tmp_path, [twin])
    digest = subject_hash(pki.ca.subject)
    assert sorted(p.name for p in created) == sorted(["test-CA-1.pem", f"{digest}.1"])
    assert write_ca_dir(tmp_path, [pki.ca, twin]) == []


def test_openssl_uses_the_directory(tmp_path, pki):
    if shutil.which("openssl") is None:
        pytest.skip("SKIPPED LOUDLY: no `openssl` command")
    write_ca_dir(tmp_path / "ca", [pki.ca])
    result = subprocess.run(
        ["openssl", "verify", "-CApath", str(tmp_path / "ca"), str(pki.user_cert_path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
