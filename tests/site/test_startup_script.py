"""The JobAgent startup script: the contract's environment, private token files, the log."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys

import msgspec

from jalien.site.startup_script import AgentConfig, write_agent_dir

CONTRACT = {
    "JALIEN_HOST",
    "JALIEN_PORT",
    "X509_CERT_DIR",
    "JALIEN_TOKEN_CERT",
    "JALIEN_TOKEN_KEY",
    "JALIEN_SITE",
    "JALIEN_CE",
    "JALIEN_JOBAGENT_TTL",
    "JALIEN_CORES",
    "JALIEN_WORKDIR",
    "JALIEN_PACKAGES_DIR",
}


def config(command) -> AgentConfig:
    return AgentConfig(
        host="127.0.0.1",
        port=8198,
        ca_dir="/etc/grid-security/certificates",
        site="JALIEN::TEST::SITE",
        ce="JALIEN::TEST::CE",
        ttl=3600,
        cores=2,
        workdir="/tmp/it's work",  # quoting
        packages_dir="/cvmfs/alice.cern.ch",
        command=tuple(command),
    )


def test_script_runs_the_agent_with_the_contract(tmp_path):
    stand_in = tmp_path / "agent.py"
    stand_in.write_text(
        "import json, os, sys\n"
        "print(json.dumps({'argv': sys.argv[1:], 'env': dict(os.environ)}))\n"
        "print('to stderr', file=sys.stderr)\n"
    )
    directory = tmp_path / "agents" / "a1"
    script = write_agent_dir(
        directory, config([sys.executable, str(stand_in)]), b"CERT PEM", b"KEY PEM"
    )
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    for name in ("tokencert.pem", "tokenkey.pem"):
        assert stat.S_IMODE(os.stat(directory / name).st_mode) == 0o600
    assert (directory / "tokenkey.pem").read_bytes() == b"KEY PEM"
    done = subprocess.run(["/bin/sh", str(script)], capture_output=True, timeout=60, check=False)
    assert done.returncode == 0 and not done.stdout  # everything went to the log
    import json

    lines = (directory / "jobagent.log").read_text().splitlines()
    got = json.loads(lines[0])
    assert lines[1] == "to stderr"
    assert got["argv"] == ["--role", "jobagent"]
    env = got["env"]
    assert set(env) >= CONTRACT
    assert env["JALIEN_WORKDIR"] == "/tmp/it's work"
    assert env["JALIEN_TOKEN_KEY"] == str(directory / "tokenkey.pem")
    assert (env["JALIEN_PORT"], env["JALIEN_CORES"], env["JALIEN_JOBAGENT_TTL"]) == (
        "8198",
        "2",
        "3600",
    )


def test_a_staged_script_finds_its_files_beside_itself(tmp_path):
    """ARC: the CE copies the script and the token to its session directory and runs it
    there; the script must not name the VoBox's directory (absent on the node)."""
    stand_in = tmp_path / "agent.py"
    stand_in.write_text(
        "import json, os, sys\nprint(json.dumps({'env': dict(os.environ), 'cwd': os.getcwd()}))\n"
    )
    staged = msgspec.structs.replace(config([sys.executable, str(stand_in)]), staged=True)
    directory = tmp_path / "vobox" / "a1"
    script = write_agent_dir(directory, staged, b"CERT PEM", b"KEY PEM")
    assert str(directory) not in script.read_text()
    session = tmp_path / "session"  # what the CE made of it
    shutil.copytree(directory, session)
    done = subprocess.run(
        ["./jobagent.sh"], cwd=session, capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0 and not done.stdout, done.stderr
    import json

    got = json.loads((session / "jobagent.log").read_text().splitlines()[0])
    env = got["env"]
    assert env["JALIEN_TOKEN_CERT"] == f"{session}/tokencert.pem"
    assert env["JALIEN_TOKEN_KEY"] == f"{session}/tokenkey.pem"
    assert env["JALIEN_STATE_DIR"] == str(session) == got["cwd"]
    assert env["JALIEN_WORKDIR"] == "/tmp/it's work"
    assert not (directory / "jobagent.log").exists()
