"""The VoBox role's own parsing: --central, jobagent_env, the default agent command."""

from __future__ import annotations

import sys

import pytest

from jalien.config import ConfigError, Settings
from jalien.roles.vobox import _extra_env, default_jobagent_command, parse_central


def test_jobagent_env_words():
    got = _extra_env(["A=0.5 B=1", "C='x y'", "D="])
    assert got == (("A", "0.5"), ("B", "1"), ("C", "x y"), ("D", ""))
    for bad in (["nokey"], ["1A=x"], ["A='open"]):
        with pytest.raises(ConfigError):
            _extra_env(bad)


def test_central_address():
    settings = Settings(central_host="central.example", binary_port=8098)
    assert parse_central(None, settings) == ("central.example", 8098)
    assert parse_central("10.0.0.1:9000", settings) == ("10.0.0.1", 9000)
    assert parse_central("[::1]:9000", settings) == ("::1", 9000)
    assert parse_central("[::1]", settings) == ("::1", 8098)
    assert parse_central("host", settings) == ("host", 8098)
    assert parse_central("::1", settings) == ("::1", 8098)
    with pytest.raises(ConfigError):
        parse_central("host:port", settings)


def test_default_agent_command_is_this_python():
    assert default_jobagent_command() == [sys.executable, "-m", "jalien"]
