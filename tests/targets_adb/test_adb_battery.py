"""Battery energy arithmetic, units, sign conventions and the charging refusal."""
from __future__ import annotations

import subprocess

import pytest

from kit.core.errors import TargetError
from targets.battery import (
    ChargeState,
    battery_config,
    charge_state_command,
    energy_per_inference,
    parse_charge_state,
    parse_samples,
    sampler_start,
    SAMPLER_STOP,
)

UA_UV_POSITIVE = {"method": "android-battery", "current_unit": "uA", "voltage_unit": "uV", "discharge": "positive"}
MA_MV_NEGATIVE = {"method": "android-battery", "current_unit": "mA", "voltage_unit": "mV", "discharge": "negative"}
ON_BATTERY = ChargeState(status="Discharging", powered_by=[], level=70)

DUMPSYS_USB = """Current Battery Service state:
  AC powered: false
  USB powered: true
  Wireless powered: false
  Max charging current: 500000
  status: 2
  health: 2
  present: true
  level: 88
  scale: 100
  voltage: 4282
"""


def test_energy_from_microamps_and_microvolts_by_hand():
    cfg = battery_config(UA_UV_POSITIVE)
    samples = "400000 3850000\n500000 3800000\n300000 3900000\n"
    power = parse_samples(samples, cfg)
    # 0.4 A * 3.85 V = 1.54 W; 0.5 * 3.8 = 1.9 W; 0.3 * 3.9 = 1.17 W; mean 1.5366... W
    assert power == pytest.approx([1.54, 1.9, 1.17])
    energy, note = energy_per_inference(power, 2000.0, cfg, ON_BATTERY, ON_BATTERY)
    assert energy == pytest.approx((1.54 + 1.9 + 1.17) / 3 * 2000.0)  # W x us = uJ
    assert "1537 mW" in note and "3 current_now x voltage_now samples" in note


def test_milliamps_with_negative_discharge_sign():
    cfg = battery_config(MA_MV_NEGATIVE)
    power = parse_samples("-250 4000\n-250 4000\n-250 4000\n", cfg)
    assert power == pytest.approx([1.0, 1.0, 1.0])  # 0.25 A * 4 V
    energy, _ = energy_per_inference(power, 500.0, cfg, ON_BATTERY, ON_BATTERY)
    assert energy == pytest.approx(500.0)


def test_wrong_sign_or_charging_current_is_refused():
    cfg = battery_config(UA_UV_POSITIVE)
    power = parse_samples("-400000 3850000\n-410000 3850000\n-390000 3850000\n", cfg)
    energy, note = energy_per_inference(power, 1000.0, cfg, ON_BATTERY, ON_BATTERY)
    assert energy is None and "3 of 3" in note and "sign" in note


def test_charging_phone_is_refused_with_the_reason():
    state = parse_charge_state("Charging\n--prunekit-dumpsys--\n" + DUMPSYS_USB)
    assert state.status == "Charging" and state.powered_by == ["USB"] and state.level == 88
    assert not state.on_battery
    cfg = battery_config(UA_UV_POSITIVE)
    energy, note = energy_per_inference([1.5] * 10, 1000.0, cfg, state, state)
    assert energy is None and "'Charging'" in note and "USB powered" in note
    # `dumpsys battery unplug` fakes the service but not the kernel's status: still refused
    faked = parse_charge_state("Charging\n--prunekit-dumpsys--\n" + DUMPSYS_USB.replace("USB powered: true",
                                                                                         "USB powered: false"))
    assert not faked.on_battery
    # plugged in while the kernel says discharging (e.g. a weak charger) is refused too
    plugged = parse_charge_state("Discharging\n--prunekit-dumpsys--\n" + DUMPSYS_USB)
    assert not plugged.on_battery
    assert not parse_charge_state("--prunekit-dumpsys--\n").on_battery  # unknown: refused


def test_charging_starting_during_the_run_is_refused():
    cfg = battery_config(UA_UV_POSITIVE)
    after = ChargeState(status="Charging", powered_by=["AC"])
    energy, note = energy_per_inference([1.5] * 10, 1000.0, cfg, ON_BATTERY, after)
    assert energy is None and "AC powered" in note


def test_too_few_samples_and_cut_last_line():
    cfg = battery_config(UA_UV_POSITIVE)
    power = parse_samples("400000 3850000\n400000 38", cfg)  # killed mid-line: the cut line is not read
    assert power == pytest.approx([1.54])
    energy, note = energy_per_inference(power, 1000.0, cfg, ON_BATTERY, ON_BATTERY)
    assert energy is None and "only 1 usable battery sample" in note
    assert parse_samples("garbage\n 3850000\n400000 x\n", cfg) == []


def test_profile_energy_table_is_checked():
    assert battery_config({"method": "none"}) is None
    assert battery_config(None) is None
    with pytest.raises(TargetError, match="current_unit"):
        battery_config({"method": "android-battery", "current_unit": "uA"})
    with pytest.raises(TargetError, match="current_unit"):
        battery_config({**UA_UV_POSITIVE, "current_unit": "nA"})
    with pytest.raises(TargetError, match="interval_s"):
        battery_config({**UA_UV_POSITIVE, "interval_s": 0})


def test_sampler_snippet_runs_in_a_real_shell(tmp_path):
    battery = tmp_path / "bat dir"
    battery.mkdir()
    (battery / "current_now").write_text("123\n")
    (battery / "voltage_now").write_text("4567\n")
    cfg = battery_config({**UA_UV_POSITIVE, "interval_s": 0.02, "battery_dir": str(battery)})
    out = tmp_path / "samples.txt"
    script = f"{sampler_start(cfg, str(out))}; sleep 0.3; {SAMPLER_STOP}"
    subprocess.run(["/bin/sh", "-c", script], check=True, timeout=20)
    lines = [ln for ln in out.read_text().splitlines() if ln]
    assert len(lines) >= 3 and set(lines) == {"123 4567"}
    status = subprocess.run(["/bin/sh", "-c", charge_state_command(str(battery))], capture_output=True, text=True,
                            timeout=20).stdout
    assert parse_charge_state(status).status is None  # no status file there: unknown, so refused
