"""The monitoring page in a real headless browser (Debian's chromium through chromedriver,
driven by a small WebDriver client over its HTTP API): the browser presents the grid user's
certificate (an NSS database in its own HOME, picked by the AutoSelectCertificateForUrls
policy), the page loads from jcentral with its script and no external resource, its live
"jobs running" counter goes from 0 to 1 when a job runs (a site moves it to RUNNING over
the binary channel), and a screenshot is kept (``JALIEN_TEST_ARTIFACTS`` or the test's tmp
directory) and checked: a PNG of the window showing the RUNNING bar's colour. Without a
certificate the page answers 401; the Prometheus exposition is for admins."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import ssl
import struct
import subprocess
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12

from jalien.auth.certs import load_cert, load_key
from jalien.auth.tls import client_context
from jalien.net.client import Client
from jalien.wire import site_api
from jalien.wire.messages import Request
from jalien.wire.site_api import JobOffer, StatusChange
from tests.integration.conftest import free_port, run_setup, start_central, stop

# real processes, nothing twin-specific: run once, in the Cython pass (the suite's budget)
pytestmark = [pytest.mark.integration, pytest.mark.cython_only]

POLICY_DIR = Path("/etc/chromium/policies/managed")
RUNNING_RGB = (0x22, 0xAA, 0x77)  # COLORS.RUNNING of the page's script (#2a7)
JDL = 'Executable = "/bin/sleep";\nArguments = "1";\n'


def _missing() -> str:
    tools = ("chromium", "chromedriver", "certutil", "pk12util")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not installed (./jalien.sh installs its TEST_PACKAGES)"
    if not os.access(POLICY_DIR.parent.parent, os.W_OK):
        return f"{POLICY_DIR} is not writable (the browser's certificate policy goes there)"
    return ""


@pytest.fixture(scope="module")
def browser_tools():
    why = _missing()
    if why:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(f"SKIPPED LOUDLY: {why}")


class WebDriver:
    """The few WebDriver endpoints the test needs (W3C protocol, JSON over HTTP)."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.session = ""

    def call(self, method: str, path: str, body: dict | None = None) -> object:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=60) as answer:
            return json.loads(answer.read())["value"]

    def start(self, args: list[str]) -> None:
        options = {"binary": shutil.which("chromium"), "args": args}
        caps = {"browserName": "chrome", "goog:chromeOptions": options}
        value = self.call("POST", "/session", {"capabilities": {"alwaysMatch": caps}})
        assert isinstance(value, dict)
        self.session = value["sessionId"]

    def go(self, url: str) -> None:
        self.call("POST", f"/session/{self.session}/url", {"url": url})

    def js(self, script: str) -> object:
        return self.call("POST", f"/session/{self.session}/execute/sync",
                         {"script": script, "args": []})  # fmt: skip

    def screenshot(self) -> bytes:
        value = self.call("GET", f"/session/{self.session}/screenshot")
        assert isinstance(value, str)
        return base64.b64decode(value)

    def quit(self) -> None:
        if self.session:
            self.call("DELETE", f"/session/{self.session}")


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB(A) bytes) of an 8-bit RGB/RGBA PNG (what Chrome writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        chunk = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", chunk[:10])
            assert depth == 8 and color in (2, 6), (depth, color)
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, ul = prev[i], prev[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - ul
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - ul)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else ul
                line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(line))
        prev = line
    return (
        width,
        height,
        [bytes(r) for r in rows]
        if channels == 3
        else [b"".join(r[i : i + 3] for i in range(0, len(r), 4)) for r in rows],
    )


def count_colour(png: bytes, rgb: tuple[int, int, int]) -> int:
    _, _, rows = png_pixels(png)
    needle = bytes(rgb)
    return sum(row[i : i + 3] == needle for row in rows for i in range(0, len(row), 3))


def nss_with_user(home: Path, globus: Path, ca_dir: Path) -> None:
    """The browser's NSS database ($HOME/.pki/nssdb): the user's certificate and key, the
    grid's CA trusted for servers."""
    db = home / ".pki" / "nssdb"
    db.mkdir(parents=True)
    subprocess.run(["certutil", "-N", "-d", f"sql:{db}", "--empty-password"], check=True)
    p12 = home / "user.p12"
    cert = load_cert(globus / "usercert.pem")
    key = load_key(globus / "userkey.pem")
    p12.write_bytes(pkcs12.serialize_key_and_certificates(
        b"grid user", key, cert, None, BestAvailableEncryption(b"test")))  # fmt: skip
    subprocess.run(["pk12util", "-i", str(p12), "-d", f"sql:{db}", "-W", "test"], check=True,
                   capture_output=True)  # fmt: skip
    for pem in sorted(ca_dir.glob("*.0")):
        subprocess.run(["certutil", "-A", "-n", pem.name, "-t", "C,,", "-i", str(pem), "-d",
                        f"sql:{db}"], check=True)  # fmt: skip


def fetch(url: str, context: ssl.SSLContext) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, context=context, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_the_page_in_a_real_browser(browser_tools, tmp_path):
    home, globus = tmp_path / "home", tmp_path / "globus"
    assert run_setup(home, globus).returncode == 0
    web, binary = free_port(), free_port()
    env = {"JALIEN_MONITOR_WEB_PORT": str(web), "JALIEN_MONITOR_WEB_INTERVAL": "0.3",
           "JALIEN_EMBEDDED_SE": "1", "JALIEN_SE_PORT": str(free_port()),
           "JALIEN_CACHE_HTTP_PORT": "-1"}  # fmt: skip
    central = start_central(home, tmp_path / "jcentral.log", free_port(), binary, env)
    ca_dir = home / "certificates"
    url = f"https://127.0.0.1:{web}/monitor"
    policy = POLICY_DIR / f"jalien-test-{os.getpid()}.json"
    driver_proc = None
    browser_home = tmp_path / "browser"
    try:
        # the page without a certificate: 401; with the user's: the page; metrics: admins
        anonymous = ssl.create_default_context(capath=str(ca_dir))
        anonymous.check_hostname = False
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            fetch(url, anonymous)  # the TLS handshake wants a certificate
        user_tls = client_context(globus / "usercert.pem", globus / "userkey.pem", ca_dir)
        user_tls.check_hostname = False
        status, body = fetch(url, user_tls)
        assert status == 200 and b"jalien grid monitor" in body and b"https://" not in body
        status, body = fetch(f"https://127.0.0.1:{web}/monitor/state.json", user_tls)
        assert status == 200 and json.loads(body)["jobs"]["by_state"] == {}
        status, body = fetch(f"https://127.0.0.1:{web}/metrics", user_tls)  # jdoe: admin
        assert status == 200 and b"jalien_info" in body

        nss_with_user(browser_home, globus, ca_dir)
        POLICY_DIR.mkdir(parents=True, exist_ok=True)
        pattern = json.dumps({"pattern": f"https://127.0.0.1:{web}", "filter": {}})
        policy.write_text(json.dumps({"AutoSelectCertificateForUrls": [pattern]}))
        driver_port = free_port()
        driver_proc = subprocess.Popen(
            ["chromedriver", f"--port={driver_port}"],
            env={**os.environ, "HOME": str(browser_home)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        driver = WebDriver(driver_port)
        deadline = time.monotonic() + 30
        while True:
            try:
                driver.call("GET", "/status")
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "chromedriver did not start"
                time.sleep(0.1)
        driver.start(["--headless=new", "--no-sandbox", "--disable-gpu",
                      "--disable-dev-shm-usage", f"--user-data-dir={browser_home / 'profile'}",
                      "--window-size=1200,1400"])  # fmt: skip
        driver.go(url)

        def counter() -> str:
            value = driver.js(
                "const e = document.getElementById('running-count');"
                "const l = document.getElementById('live');"
                "return e ? e.textContent + '|' + (l ? l.className : '') : '';"
            )
            return str(value)

        wait_for(lambda: counter() == "0|on", "the page live with 0 running jobs", counter)
        job = asyncio.run(run_a_job(home, binary))
        wait_for(lambda: counter() == "1|on", "the live counter at 1 running job", counter)
        text = str(driver.js("return document.body.innerText;"))
        assert "jdoe (admin: everything)" in text and "RUNNING" in text and "jdoe" in text
        assert "ALICE::LOCAL::SE" in text and "job-watchdog" in text, text
        external = driver.js(
            "return performance.getEntriesByType('resource').map(e => e.name)"
            ".filter(n => !n.startsWith(location.origin));"
        )
        assert external == [], external
        shot = driver.screenshot()
        artifacts = Path(os.environ.get("JALIEN_TEST_ARTIFACTS") or tmp_path)
        artifacts.mkdir(parents=True, exist_ok=True)
        (artifacts / "monitor-page.png").write_bytes(shot)
        width, height, _ = png_pixels(shot)
        assert (width, height) == (1200, 1400) or width >= 800
        assert count_colour(shot, RUNNING_RGB) > 200, "the RUNNING bar is not in the screenshot"
        assert job > 0
        driver.quit()
    finally:
        if driver_proc is not None:
            driver_proc.terminate()
            driver_proc.wait(10)
        policy.unlink(missing_ok=True)
        stop(central)


def wait_for(check, what: str, show, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out: {what} (got {show()!r})"
        time.sleep(0.1)


async def run_a_job(home: Path, binary: int) -> int:
    """The user submits a job; the host (the grid's VoBox account) matches it and moves it
    to RUNNING over the binary channel, as a JobAgent would."""
    ca = home / "certificates"
    user = Client("127.0.0.1", binary, client_context(
        home.parent / "globus" / "usercert.pem", home.parent / "globus" / "userkey.pem", ca),
        reconnect=False)  # fmt: skip
    host = client_context(home / "host" / "hostcert.pem", home / "host" / "hostkey.pem", ca)
    site = Client("127.0.0.1", binary, host, reconnect=False)
    await user.connect()
    await site.connect()
    try:
        reply = await user.call("submit", "=<", JDL)
        assert reply.exitcode == 0, reply.error
        job = int(reply.results[0]["jobId"])
        offer = JobOffer(site="JALIEN::LOCAL::SITE", ce="LOCAL::CE", ttl=3600, node="wn1")
        got = await site.request(Request(command="getMatchJob", data=[site_api.encode(offer)]))
        assert got.exitcode == 0 and got.data, got.error
        for state in ("STARTED", "RUNNING"):
            change = site_api.encode(StatusChange(queue_id=job, state=state))
            done = await site.request(Request(command="setJobStatus", data=[change]))
            assert done.exitcode == 0, done.error
        return job
    finally:
        await user.close()
        await site.close()
