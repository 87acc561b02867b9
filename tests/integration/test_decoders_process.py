"""Hostile input against a jcentral process: a request nested 100k deep (WebSocket JSON,
binary-channel JSON and MessagePack) is exit code 22 and the same connection answers the
next request; a bad JDL is exit code 22 with its line and column, never 121."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess

import pytest
from websockets.asyncio.client import connect as ws_connect

from jalien.auth.tls import client_context
from jalien.net.client import Client
from jalien.wire import codec, framing
from jalien.wire.messages import Request
from tests.integration.conftest import jalien_bin

pytestmark = pytest.mark.integration

DEEP = 100_000
NESTED = "[" * DEEP + "]" * DEEP


def _context(central):
    return client_context(
        central.globus / "usercert.pem", central.globus / "userkey.pem", central.ca_dir
    )


def _quiet_log(central) -> None:
    log = central.log_text()
    assert "RecursionError" not in log and "Traceback" not in log, log[-3000:]


def test_deep_json_on_websocket_keeps_the_connection(central):
    bodies = [
        '{"command": "ls", "x": ' + NESTED + "}",
        '{"command": "ls", "options": ' + NESTED + "}",
        NESTED,
        '{"command": "ls", "x": ' + "[" * DEEP,  # never closed
    ]

    async def go():
        url = f"wss://127.0.0.1:{central.ws_port}/websocket/json"
        async with ws_connect(url, ssl=_context(central), server_hostname="localhost") as ws:
            for body in bodies:
                await ws.send(body)
                reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert reply["metadata"]["exitcode"] == "22", reply
                assert "nested deeper than 64 levels" in reply["metadata"]["error"]
                await ws.send(json.dumps({"command": "pwd"}))
                pwd = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert pwd["metadata"]["exitcode"] == "0", pwd

    asyncio.run(go())
    _quiet_log(central)


def test_deep_bodies_on_the_binary_channel_keep_the_connection(central):
    unknown_field = b"\x83\xa4type\xa3req\xa7command\xa2ls\xa1x" + b"\x91" * DEEP + b"\x90"
    frames = [
        (1, framing.CODEC_JSON, ('{"type": "req", "command": "ls", "x": ' + NESTED + "}").encode()),
        (2, framing.CODEC_JSON, NESTED.encode()),
        (3, framing.CODEC_MSGPACK, unknown_field),
        (4, framing.CODEC_MSGPACK, b"\x91" * DEEP + b"\x90"),  # typed: refused at the top
    ]
    said = {
        1: "JSON nested deeper than 64",
        2: "JSON nested deeper than 64",
        3: "nested too deeply",
    }

    async def go():
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", central.binary_port, ssl=_context(central), server_hostname="localhost"
        )
        decoder = framing.FrameDecoder()
        for sid, kind, body in frames:
            for threshold in (0, 8192):  # as sent, and compressed
                writer.write(framing.encode_frame(sid, body, kind, compress_threshold=threshold))
                pwd = codec.encode_msgpack(Request(command="pwd"))
                writer.write(framing.encode_frame(sid + 100, pwd))
                got = []
                while len(got) < 2:
                    data = await asyncio.wait_for(reader.read(65536), 10)
                    assert data, "the server closed the connection"
                    got += decoder.feed(data)
                replies = {s: codec.decode_msgpack(b) for s, _, b in got}
                assert replies[sid].exitcode == 22, replies[sid]
                assert said.get(sid, "bad message") in replies[sid].error, replies[sid].error
                assert replies[sid + 100].exitcode == 0, replies[sid + 100]
        writer.close()

    asyncio.run(go())
    _quiet_log(central)


def _nested(depth: int, opener: str, inner: str, closer: str) -> str:
    return opener * depth + inner + closer * depth


BAD_JDLS = [
    # (JDL, line, column, what the message says)
    ("InputFile = " + _nested(3000, "{", '"a"', "}") + ";", 2, 77, "lists nested deeper"),
    ("Requirements = " + _nested(3000, "(", "a", ")") + ";", 2, 80, "parentheses nested deeper"),
    ("Requirements = other.TTL > ;", 2, 27, "unexpected end of input in Requirements"),
    ("Requirements = frob(other.TTL);", 2, 16, "unknown function frob()"),
    ("TTL = 1e999;", 2, 7, "number 1e999 is too large"),
    ("TTL = 99999999999999999999999999;", 2, 7, "is too large"),
    ('MemorySize = "99999999999T";', 2, 1, "MemorySize: '99999999999T' is not a size"),
    ('Arguments = "unterminated;', 2, 13, "unterminated string"),
    ('Arguments = "ends with \\";', 2, 13, "unterminated string (a backslash"),
    ('Arguments = "a\0b";', 2, 15, "NUL character"),
    ('Arguments = "' + "x" * (1 << 20) + '";', 1, 1, "JDL longer than 1048576 characters"),
]


def test_bad_jdls_are_exit_22_with_line_and_column(central):
    async def go():
        client = Client("127.0.0.1", central.binary_port, _context(central), reconnect=False)
        await client.connect()
        good = await client.call(
            "submit", "=<", 'Executable = "/bin/true";\nRequirements = other.Price >= 25e3;'
        )
        assert good.exitcode == 0 and good.results[0]["jobId"], good
        answers = []
        for text, _, _, _ in BAD_JDLS:
            answers.append(await client.call("submit", "=<", 'Executable = "/bin/true";\n' + text))
        await client.close()
        return answers

    answers = asyncio.run(go())
    for (_, line, col, message), reply in zip(BAD_JDLS, answers, strict=True):
        assert reply.exitcode == 22, (message, reply)
        assert f"bad JDL: line {line}, column {col}: " in reply.error, (message, reply.error)
        assert message in reply.error, (message, reply.error)
    _quiet_log(central)


def test_cli_submit_of_a_bad_jdl_exits_22(central, tmp_path):
    jdl = tmp_path / "deep.jdl"
    jdl.write_text('Executable = "/bin/true";\nRequirements = ' + "(" * 3000 + "a" + ")" * 3000)
    env = {
        **os.environ,
        "JALIEN_HOST": "127.0.0.1",
        "JALIEN_PORT": str(central.binary_port),
        "X509_USER_CERT": str(central.globus / "usercert.pem"),
        "X509_USER_KEY": str(central.globus / "userkey.pem"),
        "X509_CERT_DIR": str(central.ca_dir),
        "TMPDIR": str(tmp_path),
        "X509_USER_PROXY": str(tmp_path / "no-proxy"),
    }
    done = subprocess.run(
        [*jalien_bin(), "submit", f"file:{jdl}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 22, done.stdout + done.stderr
    assert (
        "line 2, column 80: parentheses nested deeper than 64 levels" in done.stderr + done.stdout
    )
