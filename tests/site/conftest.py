"""The Slurm test cluster, started once per session by the tests that need it."""

from __future__ import annotations

import pytest

from tests.site.slurm_cluster import SlurmCluster, slurm_or_skip


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    slurm_or_skip()
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm")).start()
    try:
        yield cluster
    finally:
        cluster.stop()
