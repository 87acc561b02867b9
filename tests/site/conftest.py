"""The Slurm test cluster and the ARC CE, started once per session by the tests that need
them."""

from __future__ import annotations

import shutil

import pytest

from tests.gridpki import make_grid_pki
from tests.site.arc_ce import ArcCE, arc_or_skip, public_dir
from tests.site.slurm_cluster import SlurmCluster, slurm_or_skip


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    slurm_or_skip()
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm")).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def arc_ce():
    """An ARC CE (A-REX, fork back end) of the session, trusting its own test CA; its
    ``pki`` holds the client the CE accepts (``vobox``) and the host certificate."""
    arc_or_skip()
    root = public_dir()
    try:
        pki = make_grid_pki(root / "pki")
        ce = ArcCE(root / "ce", pki.ca_dir, pki.host_cert, pki.host_key, [pki.users["vobox"].dn])
        ce.start()
        try:
            yield ce, pki
        finally:
            ce.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
