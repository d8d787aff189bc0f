"""Android battery energy: current and voltage from sysfs, sampled on the phone during a run.

Phones have no power meter, but the fuel gauge reports the battery's
`current_now` and `voltage_now`. Their units (µA or mA, µV or mV) and the sign
of the current while discharging differ by vendor, so the device profile's
`energy` table must state them; nothing is guessed:

    [energy]
    method = "android-battery"
    current_unit = "uA"          # uA | mA | A
    voltage_unit = "uV"          # uV | mV | V
    discharge = "positive"       # sign of current_now while the battery discharges
    interval_s = 0.1             # optional sampling period (default 0.1)
    battery_dir = "/sys/class/power_supply/battery"   # optional

The number is whole-phone battery power (screen, radios and the idle draw
included) times the mean inference time. While the phone charges the battery
current says nothing about the model, so energy is then refused with the
reason, never estimated.

Not yet checked against a real phone's fuel gauge (none was available): the
tests feed fake sysfs files through an emulated phone and check the arithmetic
by hand.
"""
from __future__ import annotations

import math
import shlex
import statistics
from dataclasses import dataclass, field
from typing import Any

from kit.core.errors import TargetError

METHOD = "android-battery"
DEFAULT_BATTERY_DIR = "/sys/class/power_supply/battery"
MIN_SAMPLES = 3

_CURRENT_UNITS = {"uA": 1e-6, "µA": 1e-6, "mA": 1e-3, "A": 1.0}
_VOLTAGE_UNITS = {"uV": 1e-6, "µV": 1e-6, "mV": 1e-3, "V": 1.0}
_SIGNS = {"positive": 1, "negative": -1}
#: separates the sysfs status from `dumpsys battery` in one shell call
_SEPARATOR = "--prunekit-dumpsys--"


@dataclass(frozen=True)
class BatteryConfig:
    current_to_a: float
    voltage_to_v: float
    discharge_sign: int
    interval_s: float = 0.1
    battery_dir: str = DEFAULT_BATTERY_DIR


@dataclass
class ChargeState:
    """Whether the phone runs on its battery, from the kernel and from the battery service."""

    #: sysfs `status`: Charging, Discharging, Full, Not charging (None if unreadable)
    status: str | None = None
    #: power sources `dumpsys battery` reports as connected (AC, USB, Wireless, Dock)
    powered_by: list[str] = field(default_factory=list)
    level: int | None = None

    @property
    def on_battery(self) -> bool:
        return self.status == "Discharging" and not self.powered_by

    def refusal(self) -> str:
        """Why energy cannot be measured in this state."""
        if self.status is None:
            return "cannot read the battery status, so cannot tell whether the phone is charging"
        why = f"battery status {self.status!r}"
        if self.powered_by:
            why += f", {'/'.join(self.powered_by)} powered"
        return (f"the phone is not running on its battery ({why}): battery current does not measure the model "
                "while it charges; unplug it and use wireless debugging (adb tcpip / adb pair)")


def battery_config(energy: dict[str, Any] | None) -> BatteryConfig | None:
    """The profile's `energy` table read as a `BatteryConfig`; None if it names another method."""
    if not energy or energy.get("method") != METHOD:
        return None
    example = 'current_unit = "uA", voltage_unit = "uV", discharge = "positive"'
    try:
        current = _CURRENT_UNITS[energy["current_unit"]]
        voltage = _VOLTAGE_UNITS[energy["voltage_unit"]]
        sign = _SIGNS[energy["discharge"]]
    except KeyError:
        raise TargetError(
            "the device profile's energy table must give the battery's current_unit (uA|mA|A), "
            "voltage_unit (uV|mV|V) and discharge sign (positive|negative)",
            f"check the phone's kernel driver or measure once, then set e.g. {example}",
        ) from None
    interval = float(energy.get("interval_s", 0.1))
    if not 0.01 <= interval <= 10:
        raise TargetError(f"energy interval_s {interval} is out of range", "use 0.01 to 10 seconds")
    return BatteryConfig(current, voltage, sign, interval, str(energy.get("battery_dir", DEFAULT_BATTERY_DIR)))


def charge_state_command(battery_dir: str = DEFAULT_BATTERY_DIR) -> str:
    """One shell command printing the sysfs status and `dumpsys battery`."""
    return (f"cat {shlex.quote(battery_dir + '/status')} 2>/dev/null; echo {_SEPARATOR}; "
            "dumpsys battery 2>/dev/null")


def parse_charge_state(text: str) -> ChargeState:
    status_text, _, dumpsys = text.partition(_SEPARATOR)
    status = status_text.strip() or None
    fields = parse_dumpsys_battery(dumpsys)
    powered = [source for source in ("AC", "USB", "Wireless", "Dock")
               if fields.get(f"{source} powered", "").lower() == "true"]
    level = fields.get("level", "")
    return ChargeState(status=status, powered_by=powered, level=int(level) if level.isdigit() else None)


def parse_dumpsys_battery(text: str) -> dict[str, str]:
    """`  AC powered: false` lines of `dumpsys battery` as a dict."""
    found: dict[str, str] = {}
    for line in text.replace("\r", "").splitlines():
        key, sep, value = line.partition(":")
        if sep and line.startswith("  "):
            found.setdefault(key.strip(), value.strip())
    return found


def sampler_start(config: BatteryConfig, samples_path: str) -> str:
    """Shell snippet starting a background loop of `current voltage` lines; its pid is in $sampler."""
    current = shlex.quote(config.battery_dir + "/current_now")
    voltage = shlex.quote(config.battery_dir + "/voltage_now")
    return (f'( while :; do echo "$(cat {current}) $(cat {voltage})"; sleep {config.interval_s:g}; done ) '
            f"</dev/null >{shlex.quote(samples_path)} 2>/dev/null & sampler=$!")


SAMPLER_STOP = "kill $sampler 2>/dev/null"


def parse_samples(text: str, config: BatteryConfig) -> list[float]:
    """Battery power in watts per complete sample line, positive when discharging."""
    lines = text.replace("\r", "").split("\n")[:-1]  # the last line may be cut off by the kill
    power = []
    for line in lines:
        parts = line.split()
        if len(parts) != 2 or not all(p.lstrip("-").isdigit() for p in parts):
            continue
        current = int(parts[0]) * config.current_to_a * config.discharge_sign
        volts = int(parts[1]) * config.voltage_to_v
        power.append(current * volts)
    return power


def energy_per_inference(power_w: list[float], inference_avg_us: float | None, config: BatteryConfig,
                         before: ChargeState, after: ChargeState) -> tuple[float | None, str]:
    """(µJ per inference, note) or (None, the reason it cannot be measured)."""
    for state in (before, after):
        if not state.on_battery:
            return None, state.refusal()
    if inference_avg_us is None or not math.isfinite(inference_avg_us):
        return None, "benchmark_model reported no mean inference time"
    if len(power_w) < MIN_SAMPLES:
        return None, (f"only {len(power_w)} usable battery sample(s) during the run; at least {MIN_SAMPLES} are "
                      f"needed: raise --runs so the run lasts several sampling periods, and check that "
                      f"{config.battery_dir}/current_now and voltage_now are readable")
    charging = sum(1 for p in power_w if p <= 0)
    if charging:
        return None, (f"{charging} of {len(power_w)} battery samples show no discharge current: the phone drew "
                      "power from a charger, or the profile's `discharge` sign is wrong")
    mean_w = statistics.fmean(power_w)
    note = (f"whole-phone battery power {mean_w * 1e3:.0f} mW (mean of {len(power_w)} current_now x voltage_now "
            f"samples every {config.interval_s:g} s over the whole benchmark run, model load and warm-up included) "
            f"x mean inference time {inference_avg_us:.0f} us; includes the phone's idle draw")
    return mean_w * inference_avg_us, note
