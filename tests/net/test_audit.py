"""The audit log: one JSON line per request served, on both personalities and through a
level; streams as one line; refusals with their reason; arguments bounded and secrets
masked; internal errors' tracebacks in the server's log only; rotation."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat

import pytest
from websockets.asyncio.client import connect as ws_connect

from jalien.auth.tls import client_context
from jalien.net.audit import (
    FLUSH_DELAY,
    FORWARDED,
    MAX_ARG,
    MAX_ARGS,
    AuditLog,
    bound_args,
    raw_outcome,
)
from jalien.net.client import Client, ConnectionLost
from jalien.net.identity import Identity
from jalien.net.limits import Limits
from jalien.net.proxy import UpstreamProxy
from jalien.wire import codec, framing
from jalien.wire.messages import Reply, Request

ENVELOPE = "eyJhY2Nlc3MiOiJ3cml0ZSIsInBmbiI6Ii9zZS8wMS8xMjM0NS9hYmMifQ" + "." + "Q" * 86


@pytest.fixture
def audit_of(tmp_path):
    """audit_of(server, name): the server writes its audit log under tmp_path/name;
    lines(name) closes it and reads its records."""
    logs: dict[str, AuditLog] = {}

    def attach(server, name: str = "central") -> AuditLog:
        audit = AuditLog(tmp_path / name / "log" / "audit.jsonl", level=name)
        server.audit = audit
        logs[name] = audit
        return audit

    def lines(name: str = "central") -> list[dict]:
        audit = logs[name]
        audit.close()
        path = audit.path
        assert path is not None
        return [json.loads(line) for line in path.read_text().splitlines()]

    attach.lines = lines  # type: ignore[attr-defined]
    yield attach
    for audit in logs.values():
        audit.close()


def ws_url(server) -> str:
    return f"wss://127.0.0.1:{server.ports()['websocket']}/websocket/json"


async def ask(ws, command, *options):
    await ws.send(json.dumps({"command": command, "options": list(options)}))
    return json.loads(await asyncio.wait_for(ws.recv(), 5))


def by_command(records: list[dict]) -> dict[str, dict]:
    return {r["command"]: r for r in records if r["event"] == "request"}


async def test_binary_one_line_per_request(make_server, connect, audit_of, grid_pki):
    server = await make_server()
    audit_of(server)
    client = await connect(server)
    assert (await client.call("whoami")).exitcode == 0
    assert (await client.call("fail")).exitcode == 2
    assert (await client.call("no-such-command", "x")).exitcode == 2
    assert (await client.call("sleep", "20")).exitcode == 0
    records = audit_of.lines()
    assert [r["command"] for r in records] == ["whoami", "fail", "no-such-command", "sleep"]
    who, fail, unknown, sleep = records
    assert who["personality"] == "binary" and who["level"] == "central"
    assert who["login"] == "jdoe" and who["dn"] == grid_pki.users["jdoe"].dn
    assert who["kind"] == "admin"  # jdoe is the test grid's admin
    assert who["peer"].startswith("127.0.0.1:") and who["channel"] == 0
    assert who["exitcode"] == 0 and who["error"] == "" and who["refused"] == ""
    assert who["bytes_out"] > 12 and who["pages"] == 1
    assert who["time"].endswith("Z") and "T" in who["time"]
    assert (fail["exitcode"], fail["error"]) == (2, "No such file or directory")
    assert unknown["args"] == ["x"] and unknown["exitcode"] == 2
    assert sleep["args"] == ["20"] and sleep["duration_ms"] >= 15


async def test_websocket_one_line_per_request(make_server, ssl_for, audit_of):
    server = await make_server()
    audit_of(server)
    async with ws_connect(ws_url(server), ssl=ssl_for("alice"), server_hostname="localhost") as ws:
        assert (await ask(ws, "pwd"))["metadata"]["exitcode"] == "0"
        assert (await ask(ws, "fail"))["metadata"]["exitcode"] == "2"
        assert (await ask(ws, "sleep", "10"))["metadata"]["exitcode"] == "0"
        await ws.send("not json")
        assert json.loads(await ws.recv())["metadata"]["exitcode"] == "22"
    records = audit_of.lines()
    assert [r["command"] for r in records] == ["pwd", "fail", "sleep", ""]
    pwd, fail, sleep, junk = records
    assert pwd["personality"] == "websocket" and pwd["login"] == "alice"
    assert pwd["kind"] == "user" and pwd["bytes_out"] > 0
    assert fail["exitcode"] == 2 and sleep["exitcode"] == 0
    assert junk["exitcode"] == 22 and "invalid JSON request" in junk["error"]


async def test_streams_are_one_line_with_bytes_and_pages(make_server, connect, ssl_for, audit_of):
    server = await make_server()
    audit_of(server)
    client = await connect(server)
    assert (await client.call("pages", "3", "2")).exitcode == 0
    assert (await client.call("pages", "2", "1", "gone wrong")).exitcode == 5
    async with ws_connect(ws_url(server), ssl=ssl_for("jdoe"), server_hostname="localhost") as ws:
        reply = await ask(ws, "pages", "4", "2")
        assert len(reply["results"]) == 8
    binary, failed, ws_stream = audit_of.lines()
    assert (binary["command"], binary["exitcode"], binary["pages"]) == ("pages", 0, 3)
    assert binary["bytes_out"] > 3 * 12
    assert (failed["exitcode"], failed["error"], failed["pages"]) == (5, "gone wrong", 3)
    assert ws_stream["personality"] == "websocket" and ws_stream["pages"] == 4
    assert ws_stream["bytes_out"] >= len(json.dumps(reply["results"])) // 2


async def test_internal_errors_traceback_server_side_only(
    make_server, connect, ssl_for, audit_of, caplog
):
    caplog.set_level(logging.ERROR, logger="jalien")
    server = await make_server()
    audit_of(server)
    client = await connect(server)
    crashed = await client.call("crash")
    assert crashed.exitcode == 121
    assert "Traceback" not in crashed.error and "line " not in crashed.error
    async with ws_connect(ws_url(server), ssl=ssl_for("jdoe"), server_hostname="localhost") as ws:
        reply = await ask(ws, "crash")
        assert reply["metadata"]["exitcode"] == "121"
        assert "Traceback" not in json.dumps(reply)
    binary, websocket = audit_of.lines()
    assert binary["exitcode"] == websocket["exitcode"] == 121
    assert "ZeroDivisionError" in binary["error"]
    failures = [r for r in caplog.records if r.exc_info and "crash" in r.getMessage()]
    assert len(failures) == 2  # the traceback is in the server's log, once per request


class Broken:
    """A handler whose own guard fails (a bug): the server's last resort answers."""

    def open_session(self, identity, push, *, personality):
        return identity

    def close_session(self, session):
        pass

    def dispatch(self, session, request):
        if request.command == "refuse":
            return Reply(exitcode=13, error="Permission denied: not for you")
        raise KeyError("secret internals")


async def test_handler_bug_is_logged_not_sent(make_server, connect, audit_of, caplog):
    caplog.set_level(logging.ERROR, logger="jalien.net.server")
    server = await make_server(handler=Broken())
    audit_of(server)
    client = await connect(server)
    reply = await client.call("anything")
    assert (reply.exitcode, reply.error) == (1, "internal error: KeyError")
    refused = await client.call("refuse", "/alice")
    assert refused.exitcode == 13
    bug, no = audit_of.lines()
    assert bug["exitcode"] == 1 and bug["error"] == "internal error: KeyError"
    assert any(r.exc_info and "secret internals" in str(r.exc_info[1]) for r in caplog.records)
    assert no["refused"] == "Permission denied: not for you" and no["args"] == ["/alice"]


async def test_refused_connections_and_channels(make_server, connect, ssl_for, audit_of):
    server = await make_server()
    audit_of(server)
    with pytest.raises((ConnectionLost, OSError)):
        stranger = await connect(server, "stranger")
        await stranger.call("whoami", timeout=5)
    alice = await connect(server, "alice")
    await alice.open_channel("/C=ch/O=AliEn2/CN=someone else")
    assert (await alice.call("whoami")).exitcode == 0  # frames are read in order
    records = audit_of.lines()
    connect_refusal = next(r for r in records if r["event"] == "connect")
    assert connect_refusal["exitcode"] == 13 and connect_refusal["refused"]
    assert connect_refusal["peer"].startswith("127.0.0.1:")
    channel = next(r for r in records if r["event"] == "channel")
    assert channel["login"] == "alice" and "may not act for" in channel["refused"]


async def test_long_arguments_bounded_and_secrets_masked(make_server, connect, audit_of):
    server = await make_server()
    audit_of(server)
    client = await connect(server)
    jdl = 'Executable = "/bin/true";\n' + "Comment = " + '"x"' * 5000 + ";\n"
    pem = "-----BEGIN PRIVATE KEY-----\n" + "A" * 1600 + "\n-----END PRIVATE KEY-----\n"
    url = f"https://se.cern.ch:8099/se/01/12345/guid?authz={ENVELOPE}&x=1"
    await client.call("submit", "=<", jdl)
    await client.call("commit", ENVELOPE, "12", "/alice/f")
    await client.call("token-import", pem)
    await client.call("get", url)
    await client.call("many", *[f"arg{i:04d}" for i in range(400)])
    records = by_command(audit_of.lines())
    submit = records["submit"]["args"]
    assert submit[0] == "=<" and len(submit[1]) < MAX_ARG + 40
    assert submit[1].startswith('Executable = "/bin/true"') and "chars>" in submit[1]
    commit = records["commit"]["args"]
    assert commit[0] == f"<masked: {len(ENVELOPE)} chars>" and commit[1:] == ["12", "/alice/f"]
    assert records["token-import"]["args"] == [f"<masked: {len(pem)} chars>"]
    (masked_url,) = records["get"]["args"]
    assert "authz=<masked>&x=1" in masked_url and ENVELOPE[:40] not in masked_url
    many = records["many"]["args"]
    assert sum(map(len, many[:-1])) <= MAX_ARGS and many[-1].startswith("<+")
    text = json.dumps(list(records.values()))
    assert "AAAAAAAAAAAAAAAA" not in text and ENVELOPE.split(".")[1][:40] not in text


def test_bound_args_rules():
    assert bound_args("ls", ["-l", "/alice"]) == ["-l", "/alice"]
    long = "x" * 1000
    (cut,) = bound_args("ls", [long])
    assert cut == "x" * MAX_ARG + "...<1000 chars>"
    # an envelope anywhere in a long argument, not only commit's first
    assert bound_args("access", [f"read {ENVELOPE}"]) == ["read <masked envelope>"]
    assert bound_args("commit", ["short"]) == ["<masked: 5 chars>"]
    # the total: the last argument that fits is cut to what is left
    out = bound_args("x", ["a" * 100] * 10)
    assert sum(len(a) for a in out[:-1]) <= MAX_ARGS
    assert out[-1] == "<+5 more>"


async def test_forwarded_requests_logged_at_the_level(
    make_server, connect, ssl_for, grid_pki, audit_of
):
    central = await make_server(limits=Limits(compress_local=True))  # as across a network
    cred = grid_pki.users["jdoe"]
    upstream = Client(
        "127.0.0.1",
        central.ports()["binary"],
        client_context(cred.cert, cred.key, grid_pki.ca_dir),
    )
    await upstream.connect()
    try:
        level = await make_server(handler=UpstreamProxy(upstream))
        audit_of(central, "central")
        audit_of(level, "level")
        client = await connect(level)
        assert (await client.call("whoami")).exitcode == 0
        assert (await client.call("fail")).exitcode == 2
        assert (await client.call("pages", "3", "2")).exitcode == 0
        assert len((await client.call("big", "3000")).results) == 3000  # compressed
        async with ws_connect(
            ws_url(level), ssl=ssl_for("jdoe"), server_hostname="localhost"
        ) as ws:
            assert (await ask(ws, "fail"))["metadata"]["exitcode"] == "2"
    finally:
        await upstream.close()
    at_level = audit_of.lines("level")
    at_central = audit_of.lines("central")
    assert [r["command"] for r in at_level] == ["whoami", "fail", "pages", "big", "fail"]
    who, fail, pages, big, ws_fail = at_level
    assert who["exitcode"] == 0 and fail["exitcode"] == 2 and fail["error"]
    assert pages["exitcode"] == 0 and pages["pages"] == 3
    assert big["exitcode"] == FORWARDED and big["bytes_out"] > 8 * 1024
    assert ws_fail["personality"] == "websocket" and ws_fail["exitcode"] == 2
    central_requests = [r for r in at_central if r["channel"] > 0]
    assert [r["command"] for r in central_requests] == ["whoami", "fail", "pages", "big", "fail"]
    assert central_requests[3]["exitcode"] == 0  # central knows what it sent
    assert {r["level"] for r in at_central} == {"central"}


def test_raw_outcome():
    body = codec.encode_msgpack(Reply(exitcode=7, error="nope", results=[{"a": "b"}]))
    assert raw_outcome(0, body) == (7, "nope")
    assert raw_outcome(framing.FLAG_MORE, body) == (7, "nope")
    assert raw_outcome(framing.CODEC_JSON, codec.encode_json(Reply())) == (0, "")
    assert raw_outcome(framing.FLAG_COMPRESSED, body) == (FORWARDED, "")
    assert raw_outcome(0, codec.encode_msgpack(Request(command="x"))) == (FORWARDED, "")
    assert raw_outcome(0, b"\xc1garbage") == (FORWARDED, "")


def someone() -> Identity:
    return Identity(dn="/CN=someone", login="someone")


def test_rotation_bounded(tmp_path):
    path = tmp_path / "log" / "audit.jsonl"
    audit = AuditLog(path, level="test", max_bytes=4000, backups=2)
    for i in range(300):  # no event loop: every record is a batch of its own
        audit.record("127.0.0.1:1", "binary", 0, someone(), "ls", [f"/alice/{i}"], 0, "", 0.0, 10)
    audit.close()
    names = sorted(p.name for p in path.parent.iterdir())
    assert names == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2", "audit.jsonl.lock"]
    for name in names[:3]:
        text = (path.parent / name).read_text()
        assert len(text.encode()) <= 4000
        assert all(json.loads(line)["command"] == "ls" for line in text.splitlines())
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    last = json.loads(path.read_text().splitlines()[-1])
    assert last["args"] == ["/alice/299"]


def test_another_process_has_the_file(tmp_path):
    path = tmp_path / "audit.jsonl"
    first = AuditLog(path, level="jcentral")
    second = AuditLog(path, level="vobox")  # flock: another open file, as a process
    try:
        assert first.path == path
        assert second.path == tmp_path / "audit-vobox.jsonl"
    finally:
        first.close()
        second.close()


async def test_requests_handed_over_in_batches(tmp_path):
    """The loop's thread keeps a tuple per request; FLUSH_DELAY later the whole batch goes
    to the writer thread at once."""
    audit = AuditLog(tmp_path / "audit.jsonl", level="test")
    for _ in range(100):
        audit.record("p:1", "binary", 0, someone(), "ping", [], 0, "", 0.0, 10)
    assert len(audit._pending) == 100 and audit._sent == 0  # not yet handed over
    for _ in range(200):  # the timer's turn (bounded wait on the condition)
        if not audit._pending:
            break
        await asyncio.sleep(FLUSH_DELAY / 10)
    assert audit._sent == 100
    audit.close()
    assert len((tmp_path / "audit.jsonl").read_text().splitlines()) == 100


def test_a_bad_entry_does_not_stop_the_writer(tmp_path, caplog):
    audit = AuditLog(tmp_path / "audit.jsonl", level="test")
    audit.record("p:1", "binary", 0, object(), "ls", [], 0, "", 0.0, 1)  # no dn, no login
    audit.record("p:1", "binary", 0, someone(), "ls", ["/ok"], 0, "", 0.0, 1)
    audit.close()
    (line,) = (tmp_path / "audit.jsonl").read_text().splitlines()
    assert json.loads(line)["args"] == ["/ok"]
    assert any("could not be written" in r.getMessage() for r in caplog.records)


def test_debug_console_line(caplog):
    caplog.set_level(logging.DEBUG, logger="jalien.audit")
    audit = AuditLog()  # no file: the console only
    audit.record(
        "127.0.0.1:5", "websocket", 0, someone(), "ls", ["/nope"], 2, "no such file", 0.0, 99
    )
    (line,) = [r.getMessage() for r in caplog.records if r.name == "jalien.audit"]
    assert line.startswith("127.0.0.1:5 websocket someone[user] ls /nope -> exit 2")
    assert line.endswith("99 B: no such file")


def test_no_file_no_debug_is_free(caplog):
    caplog.set_level(logging.INFO, logger="jalien.audit")
    audit = AuditLog()
    audit.record("p:1", "binary", 0, object(), "ls", [], 0, "", 0.0, 1)  # returns at once
    assert not caplog.records
