"""The supervisor's pure parts: how many workers, the settings each gets, the held ports
(the processes themselves: tests/integration/test_workers_process.py)."""

from __future__ import annotations

import socket

from jalien.config import Settings, load_settings
from jalien.roles.workers import for_worker, reserve_port, worker_count, worker_settings


def test_worker_count_defaults_to_the_cores():
    assert load_settings(env={}).workers == 0
    assert worker_count(0) >= 1
    assert worker_count(3) == 3
    assert load_settings(env={"JALIEN_WORKERS": "1"}).workers == 1


def test_each_worker_gets_its_metrics_port_and_audit_log(tmp_path):
    settings = Settings(home=str(tmp_path), metrics_port=9100)
    assert for_worker(settings, 0) is settings
    second = for_worker(settings, 1)
    assert second.metrics_port == 9101
    assert second.audit_path == tmp_path / "log" / "audit-w1.jsonl"
    anywhere = for_worker(Settings(home=str(tmp_path), metrics_port=0), 1)
    assert anywhere.metrics_port == 0  # each worker picks its own


def test_port_zero_is_chosen_once_and_held(tmp_path):
    settings = Settings(home=str(tmp_path), listen=["127.0.0.1"], ws_port=0, binary_port=0)
    shared, held = worker_settings(settings)
    try:
        assert shared.shared_ports
        assert shared.ws_port > 0 and shared.binary_port > 0
        assert shared.ws_port != shared.binary_port
        assert shared.cache_http_port == settings.cache_http_port  # a fixed port stays
        # a worker binds the held port with SO_REUSEPORT and listens
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", shared.binary_port))
        sock.listen()
        sock.close()
    finally:
        for sock in held:
            sock.close()


def test_reserved_port_is_free_on_every_host():
    port, socks = reserve_port(["127.0.0.1", "::1"])
    try:
        assert {s.getsockname()[1] for s in socks} == {port}
    finally:
        for sock in socks:
            sock.close()


def test_negative_workers_is_a_clear_error(tmp_path, capsys):
    from jalien.roles.jcentral import run_jcentral

    assert run_jcentral(Settings(home=str(tmp_path), workers=-1)) == 2
    assert "workers must be 0 (one per core) or more, not -1" in capsys.readouterr().err
