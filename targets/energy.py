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
after, and readings are repeated while the runner runs (`pmic_script`, run by
`targets.ssh` on the board).

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
import shlex
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any

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


# -- Raspberry Pi 5 PMIC sampling during a run ---------------------------------------------------------

#: the line after which `pmic_script`'s output is the runner's own stdout
PMIC_RUNNER_START = "@runner-output"


def pmic_script(vcgencmd: str, cmd: list[str], run_dir: str, interval: float) -> str:
    """Shell script: idle PMIC reading, runner in the background, readings until it exits, runner output.

    Markers: `@before T`, `@sample T` (each followed by the tool's output), `@exit T RC` written the
    moment the runner ends, `@after T`, then the runner's stdout after `@runner-output`.
    """
    vc = shlex.quote(vcgencmd)
    out, err = shlex.quote(f"{run_dir}/runner.out"), shlex.quote(f"{run_dir}/runner.err")
    return "\n".join([
        "now() { date +%s.%N; }",
        f'echo "@before $(now)"; {vc} pmic_read_adc 2>&1',
        f'( {shlex.join(cmd)} >{out} 2>{err}; rc=$?; echo "@exit $(now) $rc" ) &',
        "pid=$!",
        f'while kill -0 "$pid" 2>/dev/null; do echo "@sample $(now)"; {vc} pmic_read_adc 2>&1; sleep {interval:.3f}; done',
        'wait "$pid"',
        f'echo "@after $(now)"; {vc} pmic_read_adc 2>&1',
        f"echo {PMIC_RUNNER_START}; cat {out}; cat {err} >&2",
    ])


def pmic_exit_code(log_text: str) -> int:
    """The runner's exit status from the `@exit` marker; -1 when it is missing."""
    for line in log_text.splitlines():
        if line.startswith("@exit "):
            parts = line.split()
            return int(parts[2]) if len(parts) > 2 and parts[2].lstrip("-").isdigit() else -1
    return -1


def parse_pmic_log(text: str) -> dict[str, Any]:
    """Sections of `pmic_script` output -> power samples, idle power, the runner's exit time."""
    sections: list[tuple[str, float | None, list[str]]] = []
    end = None
    for line in text.splitlines():
        if line.startswith(("@before ", "@sample ", "@after ", "@exit ")):
            tag, stamp = line.split()[:2]
            try:
                t = float(stamp)
            except ValueError:
                return {"error": f"the board's `date` gave {stamp!r}, not seconds with a fraction (date +%s.%N)",
                        "samples": [], "end": None, "idle_w": None}
            if tag == "@exit":
                end = t
            else:
                sections.append((tag, t, []))
        elif sections:
            sections[-1][2].append(line)
    idle_w: float | None = None
    samples: list[PowerSample] = []
    for tag, t, lines in sections:
        power = pmic_power_w("\n".join(lines))
        if tag == "@before":
            idle_w = power
            if power is None:
                return {"error": "`vcgencmd pmic_read_adc` printed no rail readings (is this a Raspberry Pi 5?): "
                                 + " | ".join(lines[-3:]), "samples": [], "end": None, "idle_w": None}
        elif tag == "@sample" and power is not None:
            samples.append(PowerSample(t, power))
    if end is None:
        return {"error": "the runner's exit time was not recorded", "samples": samples, "end": None, "idle_w": idle_w}
    return {"samples": samples, "end": end, "idle_w": idle_w}


def runner_energy(e: dict[str, Any], samples_us: list[float]) -> EnergyReading:
    """Energy per inference of one runner run from what was recorded beside it.

    `e` is {"method": "serial-meter", "samples", "end", "note", "port"}, {"method": "rpi5-pmic",
    "min_samples", **parse_pmic_log(...)} or {"method": None, "note": why there is no reading}.
    """
    active_s = sum(samples_us) / 1e6
    runs = len(samples_us)
    if e["method"] == "serial-meter":
        if not e["samples"]:
            return EnergyReading(None, None, f"serial-meter: the meter at {e['port']} sent no samples during the "
                                 f"run {('(' + e['note'] + ')') if e['note'] else ''}".strip())
        reading = energy_per_inference(e["samples"], e["end"], active_s, runs, "serial-meter")
        if e["note"]:
            reading.note += f"; {e['note']}"
        return reading
    if e["method"] == "rpi5-pmic":
        if e.get("error"):
            return EnergyReading(None, None, f"rpi5-pmic: {e['error']}")
        reading = energy_per_inference(e["samples"], e["end"], active_s, runs, "rpi5-pmic",
                                       min_samples=e["min_samples"], idle_w=e["idle_w"])
        if reading.uj_per_inference is not None:
            reading.note += ("; vcgencmd sampling ran on the board during the timed runs; PMIC rails exclude "
                             "USB devices and the 5 V input regulator")
        return reading
    return EnergyReading(None, None, e["note"])
