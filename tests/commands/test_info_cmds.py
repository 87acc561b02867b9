"""The information commands' parsing and formatting: a GUID's time and MAC, grep's words
and matching, the JAliEn usage and exit codes of bad arguments; time and w through a
dispatcher."""

from __future__ import annotations

import uuid

import pytest

from jalien.commands.dispatch import Dispatcher
from jalien.commands.info_cmds import (
    InfoCommands,
    bind_dispatcher,
    grep_lines,
    grep_words,
    guid_time_mac,
    uuid_line,
)
from jalien.commands.table import CommandTable
from jalien.net.identity import Identity
from jalien.wire.errors import RequestError
from jalien.wire.messages import Request

GUID = "2a6f0c5e-9f3b-11ee-8c90-0242ac120002"  # version 1, MAC 02:42:ac:12:00:02


def test_guid_time_and_mac():
    ms, mac = guid_time_mac(GUID)
    assert mac == "02:42:ac:12:00:02"
    u = uuid.UUID(GUID)
    assert ms == (u.time - 0x01B21DD213814000) // 10_000
    assert 1_700_000_000_000 < ms < 1_800_000_000_000  # December 2023
    line = uuid_line("f.root", ms, mac)
    assert line.startswith("f.root : created on ") and line.endswith(f"({ms}) on {mac}")


@pytest.mark.parametrize("text", ["nonsense", str(uuid.uuid4())])
def test_not_a_time_guid_is_einval(text):
    with pytest.raises(RequestError) as exc:
        guid_time_mac(text)
    assert exc.value.exitcode == 22


def test_grep_words():
    assert grep_words(["-i", "-n", "abc", "f1", "f2"]) == ({"i", "n"}, "abc", ["f1", "f2"])
    assert grep_words(["-e", "-x-", "f"]) == (set(), "-x-", ["f"])
    assert grep_words(["-vc", "a", "f"])[0] == {"v", "c"}
    for bad, why in ((["abc"], "requires some files"), ([], "requires a pattern"),
                     (["-Z", "a", "f"], "not a recognized option")):  # fmt: skip
        with pytest.raises(RequestError) as exc:
            grep_words(bad)
        assert (
            exc.value.exitcode == 22 and why in str(exc.value) and "usage: grep" in str(exc.value)
        )


def test_grep_lines():
    text = "alpha\nBeta\ngamma beta\n"
    assert grep_lines(text, "beta", set()) == (["gamma beta"], 1)
    assert grep_lines(text, "beta", {"i", "n"}) == (["2:Beta", "3:gamma beta"], 2)
    assert grep_lines(text, "beta", {"i", "v"})[0] == ["alpha"]
    assert grep_lines(text, "beta", {"i", "c"}, "f", True)[0] == ["f: 2"]
    assert grep_lines(text, "alpha", {"x"})[1] == 1 and grep_lines(text, "alph", {"x"})[1] == 0
    assert grep_lines(text, "a", {"l"}, "/f")[0] == ["/f"]
    with pytest.raises(RequestError):
        grep_lines(text, "(", set())


@pytest.fixture
def wired():
    table = CommandTable()
    info = InfoCommands(table, catalogue=None)  # type: ignore[arg-type]
    info.register()
    dispatcher = Dispatcher(table, site="CERN")
    bind_dispatcher(table, dispatcher)
    jdoe = dispatcher.open_session(
        Identity(dn="/CN=jdoe", login="jdoe"), None, personality="binary"
    )
    dispatcher.open_session(Identity(dn="/CN=jdoe", login="jdoe"), None, personality="websocket")
    dispatcher.open_session(Identity(dn="/CN=alice", login="alice"), None, personality="binary")
    return dispatcher, jdoe


async def run(dispatcher, session, *words):
    from jalien.commands.info_cmds import _answer

    return await _answer(
        dispatcher.dispatch(session, Request(command=words[0], options=list(words[1:])))
    )


async def test_time_w_echo_setsite(wired):
    dispatcher, jdoe = wired
    timed = await run(dispatcher, jdoe, "time", "3", "echo", "hi", "there")
    assert timed.exitcode == 0, timed.error
    text = timed.results[0]["message"]
    assert text.startswith('"echo hi there" with #3 tries,\tavr/total msec:\t\t')
    assert timed.results[0]["times"] == "3"
    usage = await run(dispatcher, jdoe, "time", "x", "echo")
    assert usage.exitcode == 22 and "Usage: time <times>" in usage.error
    assert (await run(dispatcher, jdoe, "time", "2")).exitcode == 22
    assert (await run(dispatcher, jdoe, "timing", "2", "nosuch")).exitcode == 2
    who = await run(dispatcher, jdoe, "w")
    assert "  1. alice" in who.results[0]["message"] and "TOTAL" in who.results[0]["message"]
    assert [(r["account"], r["sessions"]) for r in who.results[1:]] == [
        ("alice", "1"),
        ("jdoe", "2"),
    ]
    assert (await run(dispatcher, jdoe, "echo", "a", "b")).results[0]["message"] == "a b"
    keep = await run(dispatcher, jdoe, "setSite")
    assert keep.results[0]["message"] == "Keeping the current close site: CERN"
    moved = await run(dispatcher, jdoe, "setSite", "GSI")
    assert moved.results[0]["message"] == "Setting close site to GSI (was CERN)"
    assert moved.metadata["site"] == "GSI" and jdoe.site == "GSI"
    auto = await run(dispatcher, jdoe, "setSite", "auto")
    assert auto.exitcode == 1 and jdoe.site == "GSI"


async def test_grep_reads_at_most_100_files():
    class Many:
        async def expand(self, caller, path):
            return [f"/f{i}" for i in range(101)]

    from jalien.commands.info_cmds import MAX_GREP_FILES

    table = CommandTable()
    InfoCommands(table, catalogue=Many()).register()  # type: ignore[arg-type]
    dispatcher = Dispatcher(table, site="CERN")
    session = dispatcher.open_session(Identity(dn="/CN=jdoe", login="jdoe"), None, personality="x")
    reply = await run(dispatcher, session, "grep", "a", "/f*")
    assert reply.exitcode == 22 and f"at most {MAX_GREP_FILES} files, not 101" in reply.error
