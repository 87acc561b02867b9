"""A jBox started with a proxy that ends: central closes its upstream connection at the
proxy's notAfter and the jBox cannot renew it, so it stops then, saying why (exit code 1),
and removes its token files."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time

import pytest

from jalien.auth.certs import certs_pem, key_pem, load_cert, load_key, utcnow
from jalien.auth.proxy import make_proxy
from jalien.config import Settings
from jalien.net import discovery
from jalien.roles.jbox import JBoxOptions, chain_end, serve
from tests.tokengrid import token_central


@pytest.fixture
async def central(grid_pki, tmp_path, monkeypatch):
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    for name in ("X509_CERT_DIR", "JALIEN_TOKEN_CERT", "JALIEN_TOKEN_KEY", "X509_USER_PROXY"):
        monkeypatch.delenv(name, raising=False)
    async with token_central(grid_pki, tmp_path / "central") as server:
        yield server


async def test_jbox_stops_when_its_own_proxy_ends(central, grid_pki, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="jalien")
    jdoe = grid_pki.users["jdoe"]
    user = load_cert(jdoe.cert)
    proxy, proxy_key = make_proxy(
        user, load_key(jdoe.key), not_after=utcnow() + dt.timedelta(seconds=3)
    )
    chain = certs_pem([proxy, user])
    assert chain_end(chain) == proxy.not_valid_after_utc.timestamp()
    settings = Settings(home=str(tmp_path / "home"), ca_dir=str(central.ca_dir))
    options = JBoxOptions("127.0.0.1", central.binary_port, 1.0, connect_wait=1.0)
    ready: list[str] = []
    started = time.monotonic()
    code = await asyncio.wait_for(
        serve(settings, options, chain, key_pem(proxy_key), ready.append, stop_on_hup=False), 20
    )
    assert ready and ready[0].startswith("jBox ready")
    assert code == 1 and time.monotonic() - started < 15
    assert time.time() >= proxy.not_valid_after_utc.timestamp() - 0.05
    assert "cannot renew it: stopping" in caplog.text
    assert not any(path.exists() for path in discovery.token_file_paths())
