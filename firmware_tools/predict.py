"""Latency and energy of a real board predicted from the compiled firmware's emulated instruction count.

One published measurement calibrates a board: the MLPerf Tiny reference kws model took 181.9 ms and
7,373.7 uJ per inference on ST's NUCLEO-L4R5ZI (Cortex-M4F, 120 MHz; v0.5 reference results). The same
model, built by the kit for the same core and run in QEMU under `-icount shift=0`, executes a known number
of instructions; their ratio (ms and uJ per million instructions) is applied to other models built the
same way. Every figure is an ESTIMATE naming its method and calibration point; where no toolchain or
QEMU is available the MAC model in `estimate.py` remains the fallback.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from kit.core.paths import user_cache


@dataclass(frozen=True)
class Reference:
    """A published per-inference measurement of one model on one real board."""

    board: str
    core: str  # the QEMU board whose core matches, e.g. mps2-an386 for a Cortex-M4F
    model: str  # file name under ../shared/models/mlperf-tiny
    latency_ms: float
    energy_uj: float
    source: str


#: the calibration point of each board profile (../shared/reference/mlperf_tiny, v0.5 closed, reference)
REFERENCES = {
    "cortex-m4f-120": Reference("NUCLEO-L4R5ZI", "mps2-an386", "kws_ref_model.tflite", 181.9, 7373.7,
                                "MLPerf Tiny v0.5 reference submission, kws01"),
}


@dataclass(frozen=True)
class Calibration:
    reference: Reference
    instructions: int  # the reference model's emulated instructions per inference, same build configuration
    config: str  # e.g. "mps2-an386, cmsis_nn kernels, -O2"

    @property
    def ms_per_minstr(self) -> float:
        return self.reference.latency_ms / (self.instructions / 1e6)

    @property
    def uj_per_minstr(self) -> float:
        return self.reference.energy_uj / (self.instructions / 1e6)


@dataclass(frozen=True)
class Prediction:
    latency_ms: float
    energy_uj: float
    instructions: int
    method: str
    estimate: bool = True

    def as_dict(self) -> dict:
        return asdict(self)


def calibrate(reference: Reference, instructions: int, config: str) -> Calibration:
    if instructions <= 0:
        raise ValueError("a calibration needs the reference model's instruction count (> 0)")
    return Calibration(reference, instructions, config)


def predict(instructions: int, cal: Calibration) -> Prediction:
    """Scale `instructions` (same build configuration as the calibration) to the reference board."""
    r = cal.reference
    return Prediction(
        latency_ms=instructions / 1e6 * cal.ms_per_minstr,
        energy_uj=instructions / 1e6 * cal.uj_per_minstr,
        instructions=instructions,
        method=(f"ESTIMATE: emulated instructions x {cal.ms_per_minstr:.3f} ms and {cal.uj_per_minstr:.1f} uJ per "
                f"million, calibrated on {r.model} = {r.latency_ms} ms, {r.energy_uj} uJ on {r.board} "
                f"({r.source}; {cal.config})"))


def reference_for(machine: str) -> Reference | None:
    """The calibration point whose real board has the core of QEMU board `machine`."""
    return next((r for r in REFERENCES.values() if r.core == machine), None)


def cached_calibration(key: str) -> int | None:
    """The reference model's instruction count stored for build configuration `key`, if measured before."""
    import json

    path = user_cache("calibration.json")
    try:
        return int(json.loads(path.read_text())[key])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def store_calibration(key: str, instructions: int) -> None:
    import json

    path = user_cache("calibration.json")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    data[key] = int(instructions)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    tmp.replace(path)
