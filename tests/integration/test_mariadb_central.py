"""jcentral configured for the sharded MariaDB catalogue (two real servers, a prefix
shard on the second), driven by alien.py as a user would."""

from __future__ import annotations

import json

import pytest

from tests.catalogue.mariadb_servers import mariadb_dsns, mariadb_servers  # noqa: F401
from tests.integration.conftest import Central, free_port, run_setup, start_central, stop
from tests.integration.test_jcentral_process import alien

pytestmark = pytest.mark.integration


def test_alienpy_on_sharded_mariadb(alienpy, mariadb_dsns, tmp_path):  # noqa: F811
    home, globus = tmp_path / "home", tmp_path / "globus"
    assert run_setup(home, globus).returncode == 0
    config = tmp_path / "jalien.toml"
    hosts = json.dumps(mariadb_dsns)
    config.write_text(
        'catalogue_backend = "mariadb"\n[catalogue_mariadb]\n'
        f"hosts = {hosts}\n"
        'prefixes = {"/alice/cern.ch/user/j/jdoe/far/" = 1}\n'
    )
    ws, binary = free_port(), free_port()
    log = tmp_path / "log"
    proc = start_central(home, log, ws, binary, env={"JALIEN_CONFIG": str(config)})
    central = Central(home, globus, ws, binary, log, proc)
    try:

        def a(*args):
            done = alien(alienpy, central, *args, tmp_path=tmp_path / "client")
            return done.returncode, done.stdout.strip()

        assert a("mkdir", "-p", "near", "far/deep")[0] == 0
        assert a("touch", "near/a.root", "far/deep/b.root")[0] == 0
        assert a("find", ".", ".root") == (
            0,
            "/alice/cern.ch/user/j/jdoe/far/deep/b.root\n/alice/cern.ch/user/j/jdoe/near/a.root",
        )
        assert a("ls", "far/deep") == (0, "b.root")
        assert a("rm", "-r", "far")[0] == 0
        assert a("ls", "far")[0] == 2
    finally:
        stop(proc)
    assert "Traceback" not in log.read_text()
