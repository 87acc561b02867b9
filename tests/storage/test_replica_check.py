"""What commit asks an SE before registering a replica: the verdict (pure), and the question
to a real XRootD SE (stat and checksum query through the XRootD client library), bounded in
time."""

from __future__ import annotations

import hashlib
import socket
import subprocess

import pytest

from jalien.storage.envelope import Grant, pfn_for
from jalien.storage.replica_check import ReplicaChecker, ReplicaProblem, StoredReplica, verdict
from tests.storage.xrootd_server import XRootDUnavailable, start_xrootd, unavailable

GUID = "0a1b2c3d-0000-11ee-8000-00000000000a"
DATA = b"0123456789" * 1000
MD5 = hashlib.md5(DATA).hexdigest()
SE = "ALICE::TEST::XRD"


def grant(url: str, size: int = len(DATA), md5: str = "") -> Grant:
    return Grant(access="write", pfn=url, turl=url, guid=GUID, size=size, md5=md5, se=SE)


def test_verdict():
    stored = StoredReplica(size=len(DATA), md5=MD5)
    g = grant("root://h//p")
    assert verdict(g, MD5, stored) == MD5
    assert verdict(g, "", stored) == MD5  # nothing stated: what the SE computed
    assert verdict(grant("root://h//p", md5=MD5), "", stored) == MD5
    with pytest.raises(ReplicaProblem, match=f"the SE computed {MD5}, not {'0' * 32}"):
        verdict(g, "0" * 32, stored)  # the envelope booked none: the SE's md5 decides
    with pytest.raises(ReplicaProblem, match=f"holds {len(DATA)} bytes, the envelope booked 5"):
        verdict(grant("root://h//p", size=5), MD5, stored)
    blind = StoredReplica(size=len(DATA), md5="")  # an SE that cannot checksum: size only
    assert verdict(grant("root://h//p", md5=MD5), "", blind) == MD5
    assert verdict(g, "", blind) == ""


@pytest.fixture(scope="module")
def xrootd():
    try:
        server = start_xrootd("check")
    except XRootDUnavailable as exc:
        unavailable(str(exc))
    yield server
    server.close()


async def test_xrootd_replica_stat_and_checksum(xrootd, signer):
    url = pfn_for(xrootd.url, GUID)
    checker = ReplicaChecker(signer, timeout=20)
    with pytest.raises(ReplicaProblem, match=f"no file at {url} on {SE}"):
        await checker.stored(grant(url))
    src = xrootd.workdir / "src"
    src.write_bytes(DATA)
    subprocess.run(["xrdcp", "-s", "-f", str(src), url], check=True, timeout=60)
    assert await checker.stored(grant(url)) == StoredReplica(size=len(DATA), md5=MD5)
    await checker.close()


async def test_a_silent_xrootd_server_is_bounded(signer):
    """A server that accepts and never answers: commit's question ends in its time."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = pfn_for(f"root://127.0.0.1:{silent.getsockname()[1]}/", GUID)
        checker = ReplicaChecker(signer, timeout=0.5)
        with pytest.raises(ReplicaProblem, match=f"{SE} did not answer within 0.5 s"):
            await checker.stored(grant(url))
