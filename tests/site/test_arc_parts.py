"""The ARC batch interface's parts that need no CE: the agent's job description, its
settings, its proxy (made, renewed, or the site's own)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from jalien.auth.certs import load_cert, load_key
from jalien.auth.proxy import is_proxy, make_proxy, write_proxy_file
from jalien.config import ConfigError, Settings
from jalien.roles.vobox import make_batch
from jalien.site.arc import ArcBatch, _local_id, job_description
from jalien.site.batch import BatchError
from tests.gridpki import make_grid_pki


def test_the_job_description_ships_the_agents_files(tmp_path):
    text = job_description(tmp_path / "a1", "jalien-agent", ["(queue=alice)"])
    assert text.startswith('&(executable="jobagent.sh")')
    for name in ("jobagent.sh", "tokencert.pem", "tokenkey.pem"):
        assert f'("{name}" "{tmp_path}/a1/{name}")' in text
    assert '("jobagent.log" "")' in text and '(jobname="jalien-agent")' in text
    assert text.rstrip().endswith("(queue=alice)")
    with pytest.raises(BatchError):
        job_description(Path('/tmp/a"b'), "x", [])


def test_job_ids():
    url = "https://ce.example.org:443/arex/rest/1.0/jobs/Ab12Cd"
    assert _local_id(url) == "Ab12Cd"
    with pytest.raises(BatchError):
        _local_id("https://ce/arex/rest/1.0/jobs/../x?y")


def test_settings(tmp_path):
    settings = Settings(home=str(tmp_path), batch="arc")
    with pytest.raises(ConfigError, match="arc_ce"):
        make_batch(settings, tmp_path, tmp_path / "c.pem", tmp_path / "k.pem")
    settings = Settings(home=str(tmp_path), batch="arc", arc_ce="ce.example.org")
    with pytest.raises(ConfigError, match="https://"):
        make_batch(settings, tmp_path, tmp_path / "c.pem", tmp_path / "k.pem")
    settings = Settings(
        home=str(tmp_path), batch="arc", arc_ce="https://ce:443/arex/", arc_xrsl=["(a=b)"]
    )
    batch = make_batch(settings, tmp_path / "vobox", tmp_path / "c.pem", tmp_path / "k.pem")
    assert isinstance(batch, ArcBatch) and batch.stages_files
    assert (batch.endpoint, batch.xrsl) == ("https://ce:443/arex", ["(a=b)"])
    assert batch.proxy_path == tmp_path / "vobox" / "arc" / "proxy.pem"


def test_the_proxy_is_made_and_renewed(tmp_path):
    pki = make_grid_pki(tmp_path / "pki")
    vobox = pki.users["vobox"]
    batch = ArcBatch(
        "https://ce/arex", tmp_path / "arc", ca_dir=pki.ca_dir, cert=vobox.cert,
        key=vobox.key, proxy_hours=2,
    )  # fmt: skip
    batch._ensure_proxy()
    first = load_cert(batch.proxy_path)
    assert is_proxy(first) and first.issuer == load_cert(vobox.cert).subject
    batch._ensure_proxy()  # still young: kept
    assert load_cert(batch.proxy_path).serial_number == first.serial_number
    # less than half of its life left: a new one
    issuer, key = load_cert(vobox.cert), load_key(vobox.key)
    now = dt.datetime.now(dt.UTC)
    old, old_key = make_proxy(issuer, key, not_before=now - dt.timedelta(hours=2),
                              not_after=now + dt.timedelta(minutes=30))  # fmt: skip
    write_proxy_file(batch.proxy_path, old, old_key, [issuer])
    batch._ensure_proxy()
    assert load_cert(batch.proxy_path).not_valid_after_utc > now + dt.timedelta(hours=1)


def test_a_site_proxy_is_used_as_it_is(tmp_path):
    pki = make_grid_pki(tmp_path / "pki")
    vobox = pki.users["vobox"]
    issuer, key = load_cert(vobox.cert), load_key(vobox.key)
    now = dt.datetime.now(dt.UTC)
    site_proxy = tmp_path / "x509up"
    proxy, proxy_key = make_proxy(issuer, key, not_before=now - dt.timedelta(hours=2),
                                  not_after=now - dt.timedelta(minutes=1))  # fmt: skip
    write_proxy_file(site_proxy, proxy, proxy_key, [issuer])
    batch = ArcBatch("https://ce/arex", tmp_path / "arc", ca_dir=pki.ca_dir, proxy=site_proxy)
    with pytest.raises(BatchError, match="expired"):
        batch._ensure_proxy()
    proxy, proxy_key = make_proxy(issuer, key, hours=1)
    write_proxy_file(site_proxy, proxy, proxy_key, [issuer])
    batch._ensure_proxy()  # an hour left of the site's own: fine, not replaced
    assert load_cert(site_proxy).serial_number == proxy.serial_number
    assert not (tmp_path / "arc" / "proxy.pem").exists()
