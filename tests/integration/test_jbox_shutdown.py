"""jBox's shutdown: its owner stops it through alien.py 1.7.0 or jalien-bin (exit 0, the
jBox ends with 0 and removes its token files, as on SIGTERM); central lists the command
(alien.py sends only what the server lists) and refuses it."""

from __future__ import annotations

import pytest

from tests.integration import test_jbox_process as jbox_tests
from tests.integration.conftest import jalien_bin
from tests.integration.test_jbox_process import alien, client_env, run, start_jbox, token_files
from tests.integration.test_jcentral_process import alien as alien_direct

pytestmark = pytest.mark.integration
desktop = jbox_tests.desktop  # the user's desktop fixture


def test_alienpy_shutdown_stops_the_jbox(central, desktop, alienpy):
    jbox = start_jbox(central, desktop)
    try:
        jclient, jalien = token_files(desktop)
        assert jclient.exists() and jalien.exists()
        assert alien(alienpy, central, desktop, "pwd").returncode == 0
        done = alien(alienpy, central, desktop, "shutdown")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Shutting down the jBox" in done.stdout
        assert jbox.wait() == 0
        assert "shutdown asked by jdoe" in jbox.output()
        assert not jclient.exists() and not jalien.exists()
    finally:
        jbox.close()


def test_jalien_bin_shutdown_and_central_refusal(central, desktop, alienpy, tmp_path):
    jbox = start_jbox(central, desktop)
    try:
        env = client_env(central, desktop)
        usage = run([*jalien_bin(), "shutdown", "now"], env, check=False)
        assert usage.returncode == 22 and "usage: shutdown" in usage.stdout + usage.stderr
        done = run([*jalien_bin(), "shutdown"], env, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Shutting down the jBox" in done.stdout
        assert jbox.wait() == 0
        assert not any(path.exists() for path in token_files(desktop))
    finally:
        jbox.close()
    refused = alien_direct(alienpy, central, "shutdown", tmp_path=tmp_path)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "this is the central service" in refused.stdout + refused.stderr
