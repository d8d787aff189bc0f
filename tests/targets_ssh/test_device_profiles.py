"""The shipped device profiles load, and say what each target needs from them."""
from __future__ import annotations

import pytest

from targets.profiles import FORMATS, list_profiles, load_profile

EXPECTED = {"raspberry-pi-4", "raspberry-pi-5", "coral-dev-board", "coral-usb-accelerator", "jetson-nano", "pixel-8",
            "host"}


def test_every_profile_loads_with_known_formats():
    assert EXPECTED <= set(list_profiles())
    for name in EXPECTED:
        p = load_profile(name)
        assert p.name == name and p.description
        assert p.formats and set(p.formats) <= set(FORMATS)
        assert p.threads and all(t >= 1 for t in p.threads)
        for mask in p.core_masks.values():
            int(mask, 16)
        assert p.energy.get("method") in ("none", "rpi5-pmic", "android-battery", "serial-meter")
        if p.energy["method"] == "none":
            assert p.energy.get("note"), f"{name}: say why there is no energy reading"


def test_energy_methods_per_device():
    assert load_profile("raspberry-pi-5").energy["method"] == "rpi5-pmic"
    assert load_profile("raspberry-pi-4").energy["method"] == "none"
    assert load_profile("coral-usb-accelerator").formats == ["edgetpu"]
    assert load_profile("coral-dev-board").kind == "edgetpu"


def test_pixel_profile_satisfies_the_battery_reader():
    from targets.battery import battery_config

    config = battery_config(load_profile("pixel-8").energy)
    assert config is not None and config.current_to_a == pytest.approx(1e-6) and config.voltage_to_v == pytest.approx(1e-6)
