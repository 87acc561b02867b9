"""Sandbox layout and cleanup; the payload's environment; the packages tree."""

from __future__ import annotations

import os

import pytest

from jalien.agent.environment import (
    Endpoint,
    PackageError,
    package_dir,
    payload_environment,
)
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


def _packages(root):
    (root / "ROOT" / "v6-28").mkdir(parents=True)
    (root / "ROOT" / "v6-30").mkdir(parents=True)
    (root / "ROOT" / "v6-28" / "env").write_text("ROOTSYS=$PACKAGE_DIR\n")
    (root / "ROOT" / "v6-30" / "env").write_text(
        "# ROOT 6.30\nexport ROOTSYS=$PACKAGE_DIR\nPATH=${ROOTSYS}/bin:$PATH\n"
        "GREETING='hello world'\n\n"
    )
    return root


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


def test_packages_from_the_tree(tmp_path):
    root = _packages(tmp_path / "cvmfs")
    _, env = _env(tmp_path, packages_root=str(root), packages=["VO_ALICE@ROOT::v6-30"])
    assert env["ROOTSYS"] == str(root / "ROOT" / "v6-30")
    assert env["PATH"] == f"{root}/ROOT/v6-30/bin:/usr/bin:/bin"
    assert env["GREETING"] == "hello world"
    assert "PACKAGE_DIR" not in env
    assert package_dir(root, "ROOT") == root / "ROOT" / "v6-30"  # no version: the highest


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("VO_ALICE@ROOT::v9", "does not exist on this node"),
        ("VO_ALICE@Geant4::v1", "does not exist on this node"),
        ("VO_ALICE@../etc::x", "not a valid package name"),
        ("VO_ALICE@ROOT::../../x", "not a valid package name"),
    ],
)
def test_missing_or_hostile_packages_are_refused(tmp_path, spec, message):
    root = _packages(tmp_path / "cvmfs")
    with pytest.raises(PackageError, match=message):
        _env(tmp_path, packages_root=str(root), packages=[spec])


def test_no_packages_dir_and_bad_env_lines(tmp_path):
    with pytest.raises(PackageError, match="JALIEN_PACKAGES_DIR"):
        _env(tmp_path, packages_root="", packages=["VO_ALICE@ROOT::v6-30"])
    root = _packages(tmp_path / "cvmfs")
    (root / "ROOT" / "v6-28" / "env").write_text("this is not an assignment\n")
    with pytest.raises(PackageError, match=r"env:1: expected KEY=VALUE"):
        _env(tmp_path, packages_root=str(root), packages=["VO_ALICE@ROOT::v6-28"])
    assert os.path.isdir(root)
