"""``access`` hands each client only replicas it can use: JSON clients (alien.py, ROOT: JAliEn's
words on a WebSocket or through a level) get root:// URLs, the same file under an SE's other
endpoint when it was written over HTTPS; jalien's own clients (typed access, or words on a
direct binary connection) get every protocol they speak, closest first; nothing usable is a
clear error, never an empty success. The endpoint rewrite itself is pure."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jalien.catalogue.cache import MemoryCache
from jalien.catalogue.model import StorageElement
from jalien.catalogue.service import Catalogue
from jalien.catalogue.sqlite_backend import SQLiteBackend
from jalien.commands.session import Session
from jalien.commands.storage_cmds import StorageCommands
from jalien.commands.table import CommandTable
from jalien.net.identity import Identity
from jalien.storage import endpoints
from jalien.storage.envelope import pfn_for, pfn_path
from jalien.wire import site_api
from jalien.wire.errors import RequestError
from jalien.wire.messages import Request
from jalien.wire.site_api import AccessGrant, AccessRequest

GUID = "0a1b2c3d-0000-11ee-8000-00000000000a"
WEB = StorageElement(
    name="ALICE::NEAR::WEB", url="https://127.0.0.1:1/web", site="NEAR", qos=["disk"]
)
XRD = StorageElement(name="ALICE::FAR::XRD", url="root://127.0.0.1:2/", site="FAR", qos=["disk"])
BOTH = StorageElement(
    name="ALICE::NEAR::BOTH",
    url="root://127.0.0.1:3//se",
    endpoints=["https://127.0.0.1:4/se"],
    site="NEAR",
    qos=["disk"],
)
USER = Identity(dn="/CN=jdoe", login="jdoe", home="/alice/cern.ch/user/j/jdoe/")


def test_rewrite_between_endpoints():
    https_pfn = pfn_for("https://127.0.0.1:4/se", GUID)
    root_pfn = pfn_for(BOTH.url, GUID)
    assert root_pfn.startswith("root://127.0.0.1:3//se/")
    assert endpoints.usable_url(https_pfn, BOTH, endpoints.JSON_CLIENTS) == root_pfn
    assert endpoints.usable_url(root_pfn, BOTH, endpoints.JALIEN_CLIENTS) == root_pfn
    assert endpoints.usable_url(root_pfn, BOTH, frozenset({"https"})) == https_pfn
    assert endpoints.usable_url(pfn_for(WEB.url, GUID), WEB, endpoints.JSON_CLIENTS) is None
    assert endpoints.usable_url("https://elsewhere:9/se/x", BOTH, endpoints.JSON_CLIENTS) is None
    assert endpoints.write_base(BOTH, endpoints.JSON_CLIENTS) == BOTH.url
    assert endpoints.write_base(WEB, endpoints.JSON_CLIENTS) is None
    assert endpoints.spoken([WEB, BOTH]) == "https, root"


@given(st.lists(st.text("abc09", min_size=1, max_size=4), max_size=4))
def test_rewrite_round_trips(parts):
    rest = "/" + "/".join(parts)
    root = endpoints.join(BOTH.url, rest)
    https = endpoints.usable_url(root, BOTH, frozenset({"https"}))
    assert https is not None and pfn_path(https).rstrip("/") == ("/se" + rest).rstrip("/")
    assert endpoints.usable_url(https, BOTH, endpoints.JSON_CLIENTS) == root


@pytest.fixture
async def storage(tmp_path, signer):
    backend = SQLiteBackend(tmp_path / "cat.db")
    await backend.start()
    cat = Catalogue(backend, cache=MemoryCache())
    for number, se in enumerate((WEB, XRD, BOTH), 1):
        await backend.put_se(msgspec.structs.replace(se, number=number))
    commands = StorageCommands(CommandTable(), cat, signer)
    await cat.ensure_home("jdoe")
    yield commands, cat
    await commands.close()
    await backend.close()


def session(personality: str) -> Session:
    return Session(identity=USER, cwd=USER.home, site="NEAR", personality=personality)


async def words(commands, personality: str, *options: str):
    return await commands.access(
        session(personality), Request(command="access", options=list(options))
    )


async def typed(commands, wanted: AccessRequest) -> list[AccessGrant]:
    request = Request(command="access", options=[wanted.access], data=[site_api.encode(wanted)])
    reply = await commands.access(session("binary"), request)
    return [site_api.decode(d, AccessGrant) for d in reply.data]


async def put_file(cat, lfn: str, *ses: StorageElement, via_https: bool = False) -> None:
    await cat.register(USER, lfn, 5, "5d41402abc4b2a76b9719d911017c592", guid=GUID)
    for se in ses:
        base = se.endpoints[0] if via_https and se.endpoints else se.url
        await cat.add_replica(USER, lfn, se.name, pfn_for(base, GUID))


async def test_reads_by_client(storage):
    commands, cat = storage
    await put_file(cat, USER.home + "f.txt", WEB, XRD, BOTH, via_https=True)
    for personality in ("websocket", "level"):  # alien.py direct, or through a jBox
        reply = await words(commands, personality, "read", "f.txt")
        urls = [r["url"] for r in reply.results]
        # the close dual SE first, its HTTPS replica handed out as root://; no HTTPS-only SE
        assert urls == [pfn_for(BOTH.url, GUID), pfn_for(XRD.url, GUID)], urls
        assert reply.results[0]["nSEs"] == "2"
    mine = await typed(commands, AccessRequest(access="read", lfn="f.txt"))
    assert [g.se for g in mine][-1] == XRD.name and len(mine) == 3  # closest first
    assert {g.url.partition(":")[0] for g in mine} == {"https", "root"}
    shell = await words(commands, "binary", "read", "f.txt")  # jalien-bin's shell
    assert len(shell.results) == 3


async def test_nothing_usable_is_an_error(storage):
    commands, cat = storage
    await put_file(cat, USER.home + "web.txt", WEB)
    with pytest.raises(RequestError) as refused:
        await words(commands, "websocket", "read", "web.txt")
    assert refused.value.exitcode != 0
    text = str(refused.value)
    assert "No read PFNs" in text and "https" in text and WEB.name in text, text
    assert len(await typed(commands, AccessRequest(access="read", lfn="web.txt"))) == 1


async def test_writes_by_client(storage):
    commands, _ = storage
    reply = await words(commands, "websocket", "-s", "5", "write", "new.txt", "disk:3")
    urls = sorted(r["url"] for r in reply.results)
    assert len(urls) == 2 and all(u.startswith("root://") for u in urls), urls
    only_web = await typed(
        commands, AccessRequest(access="write", lfn="w.txt", size=5, specs=[WEB.name])
    )
    assert only_web[0].url.startswith("https://127.0.0.1:1/web/")
    with pytest.raises(RequestError, match="No write PFNs"):
        await words(commands, "websocket", "-s", "5", "-f", "write", "x.txt", WEB.name)
