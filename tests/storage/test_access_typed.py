"""access as a typed call (wire.site_api): an AccessRequest in Request.data is answered with
AccessGrants in Reply.data - the same grants the words get as JAliEn's records; the kind the
policy reads (the one option) must agree with the Struct's."""

from __future__ import annotations

from jalien.wire import site_api
from jalien.wire.messages import Request
from jalien.wire.site_api import AccessGrant, AccessRequest

from .test_access_commit import MD5, commit_args, put
from .test_access_commit import http as http  # the fixture


def typed(wanted: AccessRequest, *options: str) -> Request:
    opts = list(options) if options else [wanted.access]
    return Request(command="access", options=opts, data=[site_api.encode(wanted)])


def grants(reply) -> list[AccessGrant]:
    assert reply.exitcode == 0 and not reply.results, reply.error
    return [site_api.decode(d, AccessGrant) for d in reply.data]


async def test_typed_write_commit_read(data_server, connect, http):
    c = await connect(data_server)
    write = AccessRequest(access="write", lfn="typed/a.txt", size=5, md5=MD5, specs=["disk:2"])
    granted = grants(await c.request(typed(write)))
    assert len(granted) == 2 and all(g.n_ses == 2 and g.size == 5 for g in granted)
    assert {g.lfn for g in granted} == {"/alice/cern.ch/user/j/jdoe/typed/a.txt"}
    for grant in granted:
        record = grant.record()  # what cp and alien.py send back with commit
        assert await put(http, record, b"hello") == 201
        done = await c.call("commit", *commit_args(record))
        assert done.exitcode == 0, done.error
    read = grants(await c.request(typed(AccessRequest(access="read", lfn="typed/a.txt"))))
    assert {g.se for g in read} == {g.se for g in granted} and read[0].md5 == MD5
    words = (await c.call("access", "read", "typed/a.txt")).results
    assert [AccessGrant.from_record(r).se for r in words] == [g.se for g in read]
    assert list(words[0]) == list(read[0].record())  # JAliEn's keys, in JAliEn's order


async def test_typed_access_refusals(data_server, connect):
    c = await connect(data_server)
    missing = await c.request(typed(AccessRequest(access="read", lfn="typed/none")))
    assert missing.exitcode == 2 and not missing.data
    no_size = await c.request(typed(AccessRequest(access="write", lfn="typed/b.txt")))
    assert no_size.exitcode == 22 and "-s SIZE" in no_size.error
    # the policy decides from the option word: a write dressed as a read is refused
    sneaky = AccessRequest(access="write", lfn="typed/c.txt", size=1)
    lied = await c.request(typed(sneaky, "read"))
    assert lied.exitcode == 22 and "one option" in lied.error
    junk = await c.request(Request(command="access", options=["read"], data=[b"\x00"]))
    assert junk.exitcode == 22 and "not a site message" in junk.error
    usage = await c.call("access", "-h")
    assert usage.exitcode == 0 and "read|write lfn" in usage.results[0]["message"]
