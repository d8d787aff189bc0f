"""Energy per inference from power samples: Raspberry Pi 5 PMIC readings and external serial meters.

Both sources give instantaneous power, not accumulated energy, so the kit
samples power *while* the model runs and integrates over the timed window:

    energy per inference = mean power over the timed window x timed duration / runs

The timed window is the last `sum(latency samples)` seconds before the runner
exited (the runner's timed loop is the last thing it does before printing its
result). A window that holds fewer than `min_samples` power samples gives no
number (`None` plus the reason), never a guess.

Raspberry Pi 5 (`rpi5-pmic`): `vcgencmd pmic_read_adc` prints one line per
PMIC channel, currents and voltages of the board's internal rails:

    VDD_CORE_A current(7)=2.04843800A
    VDD_CORE_V volt(15)=0.82424520V

Power is the sum of volt x current over every rail reported with both (the
`EXT5V_V` and `BATT_V` inputs carry no current and are left out). These rails
feed the SoC, memory and I/O; USB devices and the 5 V input regulator's own
losses are not included. One reading is taken before the run (idle) and one
after, and readings are repeated while the runner runs; see `targets.ssh`.

External meter (`serial-meter`): any meter (an INA219/INA226 on a
microcontroller, a USB power meter with a serial port) that prints one ASCII
line per sample on a serial port (pyserial URLs work too, e.g.
`rfc2217://host:port`):

    <t_us> <current_A> <voltage_V>

- fields separated by a comma or by whitespace: `1234567,0.512,5.08`
- `t_us`: the meter's own monotonic timestamp in microseconds (an integer that
  never goes backwards; the kit aligns it to the host clock)
- `current_A`: current in amperes, `voltage_V`: voltage in volts (decimal or
  exponent notation)
- empty lines and lines starting with `#` are ignored; any other line that does
  not parse is counted and reported in the energy note.

Tested here: both parsers on text in the documented formats, the serial meter
through a real pseudo-terminal, and the PMIC flow end to end over a real SSH
server with an emulated `vcgencmd` (a script printing the documented format).
Not run on a physical Raspberry Pi 5 or a physical power meter.
"""
from __future__ import annotations

import re
import statistics
import threading
import time
from dataclasses import dataclass

from kit.core.errors import TargetError

_PMIC_LINE = re.compile(
    r"^\s*(?P<rail>\S+?)_(?P<kind>[AV])\s+(?:current|volt)\(\d+\)=(?P<value>[-+]?[0-9.]+(?:[eE][-+]?\d+)?)[AV]\s*$"
)
_METER_LINE = re.compile(r"^\s*(\d+)\s*[,\s]\s*([-+0-9.eE]+)\s*[,\s]\s*([-+0-9.eE]+)\s*$")


@dataclass
class PowerSample:
    """Instantaneous power at time `t` (seconds, on one clock for a whole series)."""

    t: float
    watts: float


@dataclass
class EnergyReading:
    uj_per_inference: float | None
    method: str | None
    note: str


def parse_pmic_adc(text: str) -> dict[str, dict[str, float]]:
    """`vcgencmd pmic_read_adc` output -> {rail: {"A": amps, "V": volts}}."""
    rails: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        m = _PMIC_LINE.match(line)
        if m:
            rails.setdefault(m["rail"], {})[m["kind"]] = float(m["value"])
    return rails


def pmic_power_w(text: str) -> float | None:
    """Sum of V x I over the rails that report both; None when the text has no such rail."""
    rails = parse_pmic_adc(text)
    pairs = [r["A"] * r["V"] for r in rails.values() if "A" in r and "V" in r]
    return sum(pairs) if pairs else None


def parse_meter_line(line: str) -> tuple[float, float, float] | None:
    """One meter line -> (t_seconds, amps, volts); None for blank and comment lines.

    Raises ValueError for a line that is neither.
    """
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    m = _METER_LINE.match(line)
    if not m:
        raise ValueError(f"not `<t_us> <current_A> <voltage_V>`: {line[:80]!r}")
    return int(m[1]) / 1e6, float(m[2]), float(m[3])


def energy_per_inference(samples: list[PowerSample], window_end: float, active_s: float, runs: int,
                         method: str, min_samples: int = 5, idle_w: float | None = None) -> EnergyReading:
    """Integrate power over [window_end - active_s, window_end] and divide by `runs`."""
    start = window_end - active_s
    inside = sorted((s for s in samples if start <= s.t <= window_end), key=lambda s: s.t)
    if len(inside) < min_samples:
        period = _median_period(samples)
        need = f"; at one sample every {period * 1e3:.0f} ms that needs >= {min_samples * period:.1f} s of timed runs" \
            if period else ""
        return EnergyReading(None, None, f"{method}: the timed runs lasted {active_s * 1e3:.1f} ms and only "
                             f"{len(inside)} power sample(s) fell inside them (need {min_samples}){need}: "
                             "use more --runs")
    mean_w = _time_weighted_mean(inside)
    uj = mean_w * active_s / runs * 1e6
    note = (f"{method}: mean {mean_w:.3f} W over {len(inside)} samples in the last {active_s:.3f} s before the "
            f"runner exited, x {active_s / runs * 1e6:.1f} us per inference")
    if idle_w is not None:
        above = round((mean_w - idle_w) * active_s / runs * 1e6, 1) + 0.0  # + 0.0: no "-0.0"
        note += f"; idle before the run {idle_w:.3f} W, so {above:.1f} uJ above idle"
    return EnergyReading(uj, method, note)


def _time_weighted_mean(samples: list[PowerSample]) -> float:
    """Trapezoid integral / span; a plain mean when all samples share one instant."""
    span = samples[-1].t - samples[0].t
    if span <= 0:
        return statistics.fmean(s.watts for s in samples)
    area = sum((b.t - a.t) * (a.watts + b.watts) / 2 for a, b in zip(samples, samples[1:]))
    return area / span


def _median_period(samples: list[PowerSample]) -> float | None:
    ts = sorted(s.t for s in samples)
    gaps = [b - a for a, b in zip(ts, ts[1:]) if b > a]
    return statistics.median(gaps) if gaps else None


class SerialPowerMeter:
    """Reads an external meter on a serial port in a background thread.

    `start()` before the run, `stop()` after: the samples come back stamped on
    the host's `time.monotonic()` clock, so that a window measured on the host
    selects them.
    """

    def __init__(self, port: str, baud: int = 115200):
        self.port = port
        self.baud = int(baud)
        self.bad_lines = 0
        self._raw: list[tuple[float, float, float]] = []  # (host arrival, meter t, watts)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._serial = None
        self._error: str | None = None

    def start(self) -> None:
        import serial

        try:
            self._serial = serial.serial_for_url(self.port, baudrate=self.baud, timeout=0.1)
        except (serial.SerialException, ValueError, OSError) as e:
            raise TargetError(f"cannot open the power meter at {self.port}: {e}",
                              "check the port name and that no other program holds it") from None
        self._serial.reset_input_buffer()
        self._thread = threading.Thread(target=self._read, name="power-meter", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        buf = b""
        while not self._stop.is_set():
            try:
                chunk = self._serial.read(4096)
            except Exception as e:  # a meter unplugged mid-run ends the series; the note says why
                self._error = f"{type(e).__name__}: {e}"
                return
            arrived = time.monotonic()
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                try:
                    parsed = parse_meter_line(raw.decode("ascii", "replace"))
                except ValueError:
                    self.bad_lines += 1
                    continue
                if parsed is not None:
                    t, amps, volts = parsed
                    self._raw.append((arrived, t, amps * volts))

    def stop(self) -> list[PowerSample]:
        """Stop reading and return the samples on the host clock."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._serial is not None:
            self._serial.close()
        if not self._raw:
            return []
        # the least-delayed line gives the offset between the meter's clock and the host's
        offset = min(arrived - t for arrived, t, _ in self._raw)
        return [PowerSample(t + offset, w) for _, t, w in self._raw]

    def problems(self) -> str:
        parts = []
        if self.bad_lines:
            parts.append(f"{self.bad_lines} malformed line(s) ignored")
        if self._error:
            parts.append(f"reading stopped: {self._error}")
        return "; ".join(parts)
