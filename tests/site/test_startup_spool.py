"""The startup script of an agent on a node without network: the spool, not a port."""

from __future__ import annotations

from pathlib import Path

import msgspec

from jalien.site.startup_script import agent_env, script_text
from tests.site.test_startup_script import config


def test_a_spool_replaces_host_and_port(tmp_path):
    spooled = msgspec.structs.replace(config(["jalien-bin"]), spool_dir="/lustre/alice/spool")
    env = agent_env(spooled, tmp_path / "tokencert.pem", tmp_path / "tokenkey.pem")
    assert env["JALIEN_SPOOL_DIR"] == "/lustre/alice/spool"
    assert "JALIEN_HOST" not in env and "JALIEN_PORT" not in env
    text = script_text(spooled, env, Path("/agents/a1/jobagent.log"))
    assert "export JALIEN_SPOOL_DIR=/lustre/alice/spool" in text
    assert "JALIEN_PORT" not in text.replace("unset", "")
    plain = agent_env(config(["jalien-bin"]), tmp_path / "c", tmp_path / "k")
    assert "JALIEN_SPOOL_DIR" not in plain and plain["JALIEN_PORT"] == "8198"
