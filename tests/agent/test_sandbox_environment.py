"""Sandbox layout and cleanup; the payload's environment (packages: test_packages.py)."""

from __future__ import annotations

import pytest

from jalien.agent.environment import Endpoint, payload_environment
from jalien.agent.sandbox import Sandbox, SandboxError


async def test_sandbox_layout_usage_and_cleanup(tmp_path):
    box = Sandbox(tmp_path, 42).create()
    assert box.root == tmp_path / "jalien-job-42" and box.tmp.is_dir()
    assert box.root.stat().st_mode & 0o777 == 0o700
    (box.root / "data").write_bytes(b"x" * 100_000)
    assert box.disk_usage() >= 100_000
    (box.root / "stale").write_text("from a crashed agent")
    again = Sandbox(tmp_path, 42).create()  # the same name is made fresh
    assert not (again.root / "stale").exists()
    await again.cleanup()
    assert not again.root.exists()


def test_sandbox_in_a_missing_workdir_says_so(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(SandboxError, match="cannot make the sandbox"):
        Sandbox(tmp_path / "file", 1).create()


def _env(tmp_path, **kw):
    box = Sandbox(tmp_path / "work", 9).create()
    base = {
        "PATH": "/usr/bin:/bin",
        "JALIEN_TOKEN_CERT": "the jobagent's own token",
        "JALIEN_JOBAGENT_TTL": "3600",
        "X509_USER_PROXY": "/tmp/x509up_u0",
        "X509_CERT_DIR": "/etc/grid-security/certificates",
        "LANG": "C",
    }
    env = payload_environment(
        base,
        sandbox=box,
        queue_id=9,
        user="jdoe",
        site="ALICE::TEST::SITE",
        endpoint=Endpoint("127.0.0.1", 1234, 1235),
        token_cert="JOB CERT",
        token_key="JOB KEY",
        **kw,
    )
    return box, env


def test_payload_environment_is_the_jobs_only(tmp_path):
    box, env = _env(tmp_path)
    assert env["JALIEN_TOKEN_CERT"] == "JOB CERT" and env["JALIEN_TOKEN_KEY"] == "JOB KEY"
    assert (env["JALIEN_HOST"], env["JALIEN_PORT"], env["JALIEN_WSPORT"]) == (
        "127.0.0.1",
        "1234",
        "1235",
    )
    assert env["ALIEN_PROC_ID"] == "9" and env["ALIEN_USER"] == "jdoe"
    assert env["HOME"] == str(box.root) and env["TMPDIR"] == str(box.tmp)
    assert "JALIEN_JOBAGENT_TTL" not in env and "X509_USER_PROXY" not in env
    assert env["X509_CERT_DIR"] == "/etc/grid-security/certificates" and env["LANG"] == "C"
