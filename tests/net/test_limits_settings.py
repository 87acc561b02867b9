"""Every server limit is a setting of the same name, with the same default."""

from __future__ import annotations

import msgspec

from jalien.config import Settings, load_settings
from jalien.net.limits import Limits, limits_from


def test_every_limit_is_a_setting_with_the_same_default():
    settings = {f.name: f.default for f in msgspec.structs.fields(Settings)}
    for field in msgspec.structs.fields(Limits):
        assert field.name in settings, f"Limits.{field.name} is not a setting"
        assert settings[field.name] == field.default, field.name


def test_a_limit_set_in_the_environment_reaches_the_server():
    settings = load_settings(env={"JALIEN_IDENTITY_SOFT": "64", "JALIEN_DEFLATE": "no"})
    limits = limits_from(settings)
    assert limits.identity_soft == 64
    assert limits.deflate is False
    assert limits.turns == Limits().turns
