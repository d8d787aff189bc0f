"""Energy: PMIC text parsing, the serial meter through a real pty, and both sources end to end over real SSH.

The Raspberry Pi 5's `vcgencmd` is emulated by a shell script that prints
`pmic_read_adc` output in the documented format with fixed values, so the
expected power is known; everything else (sshd, the runner, the sampling
script, the pty) is real.
"""
from __future__ import annotations

import os
import pty
import sys
import threading
import time
from pathlib import Path

import pytest

from kit.core.errors import TargetError
from tests.support.loopback_sshd import SSHD, LoopbackSSHD
from targets.base import RunSettings
from targets.energy import (PowerSample, SerialPowerMeter, energy_per_inference, parse_meter_line, parse_pmic_adc,
                            pmic_power_w)
from targets.profiles import DeviceProfile
from targets.registry import get_target
from .tiny_model import write_tiny_model

# `vcgencmd pmic_read_adc` on a Raspberry Pi 5 (format: RAIL_A current(N)=…A / RAIL_V volt(N)=…V)
PMIC_SAMPLE = """\
     3V7_WL_SW_A current(0)=0.00390372A
       3V3_SYS_A current(1)=0.05172400A
       1V8_SYS_A current(2)=0.17081580A
      DDR_VDD2_A current(3)=0.02049456A
      DDR_VDDQ_A current(4)=0.00000000A
       1V1_SYS_A current(5)=0.18739680A
        0V8_SW_A current(6)=0.32694690A
      VDD_CORE_A current(7)=2.04843800A
     3V7_WL_SW_V volt(8)=3.70379100V
       3V3_SYS_V volt(9)=3.30158400V
       1V8_SYS_V volt(10)=1.80012100V
      DDR_VDD2_V volt(11)=1.11224400V
      DDR_VDDQ_V volt(12)=0.60476190V
       1V1_SYS_V volt(13)=1.10574400V
        0V8_SW_V volt(14)=0.80476190V
      VDD_CORE_V volt(15)=0.82424520V
        0V8_AON_A current(16)=0.00528720A
        0V8_AON_V volt(19)=0.80256410V
         EXT5V_V volt(24)=5.15096000V
          BATT_V volt(25)=0.00000000V
"""
# the same numbers, paired by hand: (amps, volts)
PAIRS = [(0.00390372, 3.70379100), (0.05172400, 3.30158400), (0.17081580, 1.80012100), (0.02049456, 1.11224400),
         (0.0, 0.60476190), (0.18739680, 1.10574400), (0.32694690, 0.80476190), (2.04843800, 0.82424520),
         (0.00528720, 0.80256410)]
SAMPLE_WATTS = sum(a * v for a, v in PAIRS)


def test_pmic_text_is_parsed_rail_by_rail():
    rails = parse_pmic_adc(PMIC_SAMPLE)
    assert rails["VDD_CORE"] == {"A": 2.048438, "V": 0.8242452}
    assert rails["EXT5V"] == {"V": 5.15096}  # an input with no current reading: not part of the sum
    assert len(rails) == 11
    assert pmic_power_w(PMIC_SAMPLE) == pytest.approx(SAMPLE_WATTS, rel=1e-12)
    assert pmic_power_w('error=1 error_msg="Command not registered"\n') is None


def test_meter_lines():
    assert parse_meter_line("1234567,0.512,5.08") == (1.234567, 0.512, 5.08)
    assert parse_meter_line("  42 1.5e-1\t4.9  ") == (42e-6, 0.15, 4.9)
    assert parse_meter_line("# INA226 meter v1") is None and parse_meter_line("  ") is None
    for bad in ("0.5,5.0", "t=1 I=2 V=3", "12,abc,5"):
        with pytest.raises(ValueError):
            parse_meter_line(bad)


def test_energy_integrates_only_the_timed_window():
    # 1 W until t=10 s, then 3 W; the timed window is the last 2 s before t=12
    samples = [PowerSample(t / 10, 1.0 if t < 100 else 3.0) for t in range(0, 121)]
    reading = energy_per_inference(samples, window_end=12.0, active_s=2.0, runs=1000, method="test")
    assert reading.uj_per_inference == pytest.approx(3.0 * 2.0 / 1000 * 1e6)
    assert reading.method == "test"
    short = energy_per_inference(samples, window_end=12.0, active_s=0.25, runs=10, method="test")
    assert short.uj_per_inference is None and short.method is None
    assert "only 3 power sample(s)" in short.note and "--runs" in short.note


class PtyMeter:
    """Writes meter lines into a real pseudo-terminal, stamped with real elapsed microseconds."""

    def __init__(self, watts_at=lambda t: 2.5, period_s: float = 0.002, garbage_every: int = 0):
        self.master, slave = pty.openpty()
        self.port = os.ttyname(slave)
        self._slave = slave
        self.watts_at, self.period_s, self.garbage_every = watts_at, period_s, garbage_every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._feed, daemon=True)
        self.t0 = time.monotonic()

    def _feed(self) -> None:
        n = 0
        while not self._stop.is_set():
            now = time.monotonic()
            volts = 5.0
            amps = self.watts_at(now) / volts
            line = f"{int((now - self.t0) * 1e6)},{amps:.6f},{volts:.3f}\n"
            if self.garbage_every and n % self.garbage_every == 0:
                line = "overcurrent!\n" + line
            os.write(self.master, line.encode())
            n += 1
            time.sleep(self.period_s)

    def __enter__(self) -> "PtyMeter":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        os.close(self.master)
        os.close(self._slave)


def test_serial_meter_reads_a_real_pty():
    switch = time.monotonic() + 0.6
    with PtyMeter(watts_at=lambda t: 1.0 if t < switch else 4.0, garbage_every=50) as feeder:
        meter = SerialPowerMeter(feeder.port, 115200)
        meter.start()
        time.sleep(1.2)
        end = time.monotonic()
        samples = meter.stop()
    assert len(samples) > 100
    assert meter.bad_lines >= 2 and "malformed" in meter.problems()
    # the last 0.4 s are all after the switch to 4 W; host-clock alignment must keep them apart
    late = energy_per_inference(samples, end, 0.4, runs=400, method="serial-meter")
    assert late.uj_per_inference == pytest.approx(4.0 * 0.4 / 400 * 1e6, rel=0.02)
    whole = energy_per_inference(samples, end, 1.1, runs=1, method="serial-meter")
    assert 1.5 * 1.1e6 < whole.uj_per_inference < 3.5 * 1.1e6


def test_missing_meter_port_is_a_clear_error(tmp_path):
    with pytest.raises(TargetError, match="cannot open the power meter"):
        SerialPowerMeter(str(tmp_path / "ttyUSB9")).start()


# -- over SSH ---------------------------------------------------------------------------------------------

needs_sshd = pytest.mark.skipif(not SSHD.exists(), reason="/usr/sbin/sshd is absent: apt-get install openssh-server")


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    if not SSHD.exists():
        pytest.skip("/usr/sbin/sshd is absent")
    with LoopbackSSHD(tmp_path_factory.mktemp("sshd")) as b:
        yield b


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("model") / "tiny.tflite")


@pytest.fixture(scope="module")
def fake_vcgencmd(tmp_path_factory) -> Path:
    """Emulated Raspberry Pi 5 `vcgencmd`: prints the sample above for pmic_read_adc."""
    path = tmp_path_factory.mktemp("vc") / "vcgencmd"
    path.write_text("#!/bin/sh\nif [ \"$1\" = pmic_read_adc ]; then cat <<'EOF'\n" + PMIC_SAMPLE +
                    "EOF\nelse echo 'error=1 error_msg=\"Command not registered\"'; exit 1; fi\n")
    path.chmod(0o755)
    return path


def pi5(min_samples: int = 3) -> DeviceProfile:
    return DeviceProfile(name="pi5-loopback", energy={"method": "rpi5-pmic", "interval_s": 0.01,
                                                      "min_samples": min_samples})


def connect(board, profile, **options):
    return get_target(board.uri, profile, identity=str(board.user_key_path), known_hosts=str(board.known_hosts),
                      python=sys.executable, **options)


@needs_sshd
def test_rpi5_pmic_energy_end_to_end(board, model, fake_vcgencmd):
    with connect(board, pi5(), vcgencmd=str(fake_vcgencmd)) as target:
        result = target.profile(model, RunSettings(runs=150_000, warmup=10, timeout_s=300))
    assert result.energy_method == "rpi5-pmic", result.energy_note
    mean_us = result.latency.mean_us
    assert result.energy_uj_per_inference == pytest.approx(SAMPLE_WATTS * mean_us, rel=1e-6)
    assert f"idle before the run {SAMPLE_WATTS:.3f} W" in result.energy_note
    assert result.latency.count == 150_000


@needs_sshd
def test_rpi5_pmic_too_short_run_reports_none_with_the_reason(board, model, fake_vcgencmd):
    with connect(board, pi5(min_samples=5), vcgencmd=str(fake_vcgencmd)) as target:
        result = target.profile(model, RunSettings(runs=3, warmup=0))
    assert result.energy_uj_per_inference is None and result.energy_method is None
    assert "rpi5-pmic" in result.energy_note and "use more --runs" in result.energy_note
    assert result.latency.count == 3


@needs_sshd
def test_rpi5_profile_without_vcgencmd_says_so(board, model):
    with connect(board, pi5(), vcgencmd="/nonexistent/vcgencmd") as target:
        result = target.profile(model, RunSettings(runs=3, warmup=0))
    assert result.energy_uj_per_inference is None
    assert "/nonexistent/vcgencmd` is not installed" in result.energy_note


@needs_sshd
def test_serial_meter_during_an_ssh_run(board, model):
    with PtyMeter(watts_at=lambda t: 2.5, period_s=0.001) as feeder:
        with connect(board, None, meter=feeder.port, meter_baud="115200") as target:
            result = target.profile(model, RunSettings(runs=150_000, warmup=10, timeout_s=300))
    assert result.energy_method == "serial-meter", result.energy_note
    assert result.energy_uj_per_inference == pytest.approx(2.5 * result.latency.mean_us, rel=1e-3)
