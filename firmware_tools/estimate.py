"""Latency and energy ESTIMATES for microcontrollers, from a cycles-per-op model. Not measurements.

Work is counted per layer from the .tflite (shapes only): multiply-accumulates
(MACs), filter taps (one per output element and kernel position, where the
reference convolution kernels pay index arithmetic and a bounds check),
output elements (bias, requantization, clamp and store each), and elements of
element-wise ops. An MCU profile (`mcu_profiles/*.toml`) gives cycles per unit
of each, plus a fixed cost per op; latency = cycles / clock, energy = active
power x latency.

The Cortex-M4F profile is checked against the MLPerf Tiny v0.5 reference on
NUCLEO-L4R5ZI (TFLM reference kernels). Two of its constants are fitted on two
of the four reference models (named in the profile), the rest are priors from
the kernels' loop structure; `reference_check` reports the error on all four,
marking which were fitted. Other profiles scale those cycles by a prior factor
and are not validated against measurements.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kit.core.artifact import ArtifactRef
from kit.core.errors import KitError
from kit.core.measurement import DeviceInfo, LatencyStats, ProfileResult, RunSettings
from kit.core.toml import TomlFile, check_keys, load_named, named_files
from kit.core.tflite_file import TFLiteInfo, read_tflite

PROFILE_DIR = Path(__file__).parent / "mcu_profiles"
#: cycle constants every profile defines (after resolving `base`)
CYCLE_KEYS = ("op", "conv_mac", "conv_tap", "output", "fc_mac", "elementwise", "pool_input", "transcendental",
              "copy", "decode", "element")
_CONV = ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV")
_FC = ("FULLY_CONNECTED", "BATCH_MATMUL")
_ELEMENTWISE = ("ADD", "SUB", "MUL", "SQUARED_DIFFERENCE", "MAXIMUM", "MINIMUM", "PRELU")
_POOL = ("AVERAGE_POOL_2D", "MAX_POOL_2D", "MEAN", "SUM", "REDUCE_MAX")
_TRANSCENDENTAL = ("SOFTMAX", "LOGISTIC", "TANH", "LOG_SOFTMAX", "EXP", "HARD_SWISH", "ELU")
_COPY = ("RESHAPE", "SQUEEZE", "EXPAND_DIMS", "CONCATENATION", "PAD", "PADV2", "STRIDED_SLICE", "SLICE",
         "TRANSPOSE", "PACK", "UNPACK", "SPLIT", "SPLIT_V", "QUANTIZE", "DEQUANTIZE")
_PROFILE_KEYS = {"name", "description", "core", "clock_mhz", "active_power_mw", "kernels", "base", "cycle_factor",
                 "cycles", "fit", "power_note"}


@dataclass
class McuProfile:
    name: str
    description: str
    core: str
    clock_mhz: float
    active_power_mw: float
    kernels: str
    cycles: dict[str, float]
    fit: dict[str, Any] = field(default_factory=dict)
    power_note: str = ""


@dataclass
class LayerWork:
    index: int
    op: str
    macs: int = 0
    taps: int = 0
    outputs: int = 0
    inputs: int = 0


@dataclass
class Estimate:
    """An estimate, never a measurement: `estimate` is always True."""

    profile: str
    cycles: float
    latency_us: float
    energy_uj: float
    macs: int
    layers: list[tuple[LayerWork, float]]  # (work, cycles) per op
    estimate: bool = True

    def to_profile_result(self, model_path: str | Path, profile: McuProfile) -> ProfileResult:
        """The estimate in the schema every target reports, flagged `estimate=True`."""
        fitted = ", ".join(profile.fit.get("models", [])) or "nothing (priors only)"
        return ProfileResult(
            target=f"estimate:{profile.name}",
            device=DeviceInfo(name=profile.description, cpu=f"{profile.core} @ {profile.clock_mhz:g} MHz",
                              runtime=f"TFLite Micro ({profile.kernels}), modelled"),
            artifact=ArtifactRef.of(model_path),
            settings=RunSettings(warmup=0, runs=1),
            latency=LatencyStats.from_samples([self.latency_us]),
            energy_uj_per_inference=self.energy_uj,
            energy_method=f"estimate: {profile.active_power_mw:g} mW active power x estimated latency",
            energy_note=profile.power_note,
            estimate=True,
            notes=[f"estimate from a cycles-per-op model ({self.macs} MACs, {self.cycles:.0f} cycles); "
                   f"constants fitted on {fitted}"],
        )


@dataclass
class ReferenceCheck:
    task: str
    model_file: str
    measured_ms: float
    estimated_ms: float
    fitted: bool  # the latency constants were fitted on this model
    measured_energy_uj: float | None
    estimated_energy_uj: float
    energy_valid: bool  # the reference flags some energy figures invalid

    @property
    def error_pct(self) -> float:
        return 100.0 * (self.estimated_ms / self.measured_ms - 1.0)

    @property
    def energy_error_pct(self) -> float | None:
        if self.measured_energy_uj is None:
            return None
        return 100.0 * (self.estimated_energy_uj / self.measured_energy_uj - 1.0)


def list_mcu_profiles() -> list[str]:
    return named_files(PROFILE_DIR)


def load_mcu_profile(name_or_path: str | Path) -> McuProfile:
    data = _read_profile(name_or_path)
    if "base" in data:
        base = load_mcu_profile(data["base"])
        factor = float(data.get("cycle_factor", 1.0))
        cycles = {k: v * factor for k, v in base.cycles.items()}
        cycles.update(data.get("cycles", {}))
        fit = {"models": [], "note": f"{data['name']}: cycles of {base.name} x {factor:g} (prior, not fitted)"}
        kernels = data.get("kernels", base.kernels)
    else:
        cycles, fit, kernels = data.get("cycles", {}), data.get("fit", {}), data.get("kernels", "")
    missing = [k for k in CYCLE_KEYS if k not in cycles]
    if missing:
        raise KitError(f"MCU profile {data['name']!r} lacks cycle constant(s) {', '.join(missing)}")
    return McuProfile(name=data["name"], description=data.get("description", ""), core=data["core"],
                      clock_mhz=float(data["clock_mhz"]), active_power_mw=float(data["active_power_mw"]),
                      kernels=kernels, cycles={k: float(v) for k, v in cycles.items()}, fit=fit,
                      power_note=data.get("power_note", ""))


def _read_profile(name_or_path: str | Path) -> dict:
    """The profile file's table, every key checked at its line like a device profile."""
    doc = load_named(name_or_path, PROFILE_DIR, "MCU profile")
    return check_mcu_table(doc, doc.data)


def check_mcu_table(doc: TomlFile, t: dict) -> dict:
    """`t` when every key is known and of the right type; else the error names the file, the line and the key."""
    check_keys(doc, t, (), _PROFILE_KEYS, "MCU profile")
    for key in ("name", "core"):
        doc.get(t, (), key, str, required=True, allowed="a string")
    for key in ("clock_mhz", "active_power_mw"):
        doc.get(t, (), key, float, required=True, check=lambda v: v > 0, allowed="a number > 0")
    for key in ("description", "kernels", "base", "power_note"):
        doc.get(t, (), key, str)
    doc.get(t, (), "cycle_factor", float, check=lambda v: v > 0, allowed="a number > 0")
    cycles = doc.table(t.get("cycles", {}), ("cycles",), set(CYCLE_KEYS))
    for key in cycles:
        doc.get(cycles, ("cycles",), key, float, check=lambda v: v >= 0, allowed="cycles >= 0")
    fit = doc.table(t.get("fit", {}), ("fit",), {"params", "models", "note"})
    for key in ("params", "models"):
        doc.string_list(fit, ("fit",), key, [])
    doc.get(fit, ("fit",), "note", str)
    return t


def count_work(info: TFLiteInfo) -> list[LayerWork]:
    """MACs, filter taps, output and input elements of every op, from tensor shapes."""
    layers = []
    for op in info.ops:
        outputs = sum(info.tensor(i).elements for i in op.outputs if i >= 0)
        ins = [info.tensor(i) if i >= 0 else None for i in op.inputs]
        work = LayerWork(op.index, op.op, outputs=outputs, inputs=ins[0].elements if ins and ins[0] else 0)
        w = ins[1].shape if len(ins) > 1 and ins[1] is not None else []
        if op.op == "CONV_2D" and len(w) == 4:  # filter [out_ch, kh, kw, in_ch]
            work.taps = outputs * w[1] * w[2]
            work.macs = work.taps * w[3]
        elif op.op == "DEPTHWISE_CONV_2D" and len(w) == 4:  # filter [1, kh, kw, out_ch]: one MAC per tap
            work.taps = work.macs = outputs * w[1] * w[2]
        elif op.op == "TRANSPOSE_CONV" and len(w) == 4 and len(ins) > 2 and ins[2] is not None:
            work.inputs = ins[2].elements  # every input element is scattered through the whole filter
            work.taps = work.inputs // max(w[3], 1) * w[1] * w[2] * w[0]
            work.macs = work.inputs * w[1] * w[2] * w[0]
        elif op.op == "FULLY_CONNECTED" and len(w) == 2:  # weights [out, depth]
            work.macs = outputs * w[1]
        elif op.op == "BATCH_MATMUL" and ins and ins[0] is not None and ins[0].shape:
            work.macs = outputs * ins[0].shape[-1]
        layers.append(work)
    return layers


def layer_cycles(work: LayerWork, c: dict[str, float]) -> float:
    cycles = c["op"]
    if work.op in _CONV:
        cycles += c["conv_mac"] * work.macs + c["conv_tap"] * work.taps + c["output"] * work.outputs
    elif work.op in _FC:
        cycles += c["fc_mac"] * work.macs + c["output"] * work.outputs
    elif work.op in _ELEMENTWISE:
        cycles += c["elementwise"] * work.outputs
    elif work.op in _POOL:
        cycles += c["pool_input"] * work.inputs + c["output"] * work.outputs
    elif work.op in _TRANSCENDENTAL:
        cycles += c["transcendental"] * work.outputs
    elif work.op in _COPY:
        cycles += c["copy"] * work.outputs
    elif work.op == "TFLM_DECODE":
        cycles += c["decode"] * work.outputs
    else:
        cycles += c["element"] * work.outputs
    return cycles


def estimate(model: bytes | str | Path | TFLiteInfo, profile: McuProfile | str) -> Estimate:
    """Estimated latency (µs) and energy (µJ) of one inference on the profile's MCU."""
    info = model if isinstance(model, TFLiteInfo) else read_tflite(model)
    p = load_mcu_profile(profile) if isinstance(profile, str) else profile
    layers = [(w, layer_cycles(w, p.cycles)) for w in count_work(info)]
    cycles = sum(c for _, c in layers)
    latency_us = cycles / p.clock_mhz
    return Estimate(profile=p.name, cycles=cycles, latency_us=latency_us,
                    energy_uj=p.active_power_mw * latency_us / 1000.0, macs=sum(w.macs for w, _ in layers),
                    layers=layers)


def read_reference(csv_path: str | Path) -> tuple[list[dict], set[str]]:
    """Rows of the MLPerf Tiny reference CSV, and the tasks whose energy the source flags invalid."""
    text = Path(csv_path).read_text()
    comments = [ln for ln in text.splitlines() if ln.startswith("#")]
    invalid = {t for ln in comments if "invalid" in ln for t in re.findall(r"\b([a-z]+\d\d)\b", ln)}
    rows = list(csv.DictReader(ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")))
    return rows, invalid


def reference_check(profile: McuProfile | str, csv_path: str | Path, models_dir: str | Path) -> list[ReferenceCheck]:
    """Estimate every reference model and compare with the published latency and energy."""
    p = load_mcu_profile(profile) if isinstance(profile, str) else profile
    rows, invalid = read_reference(csv_path)
    fitted = set(p.fit.get("models", []))
    checks = []
    for row in rows:
        est = estimate(Path(models_dir) / row["model_file"], p)
        energy = row.get("energy_uj_per_inference")
        checks.append(ReferenceCheck(
            task=row["task"], model_file=row["model_file"], measured_ms=float(row["latency_ms"]),
            estimated_ms=est.latency_us / 1000.0, fitted=row["task"] in fitted,
            measured_energy_uj=float(energy) if energy else None, estimated_energy_uj=est.energy_uj,
            energy_valid=row["task"] not in invalid))
    return checks


def fit_constants(profile: McuProfile | str, csv_path: str | Path, models_dir: str | Path,
                  on: tuple[str, ...], params: tuple[str, ...]) -> dict[str, float]:
    """Least-squares values of `params` (others fixed) matching the reference latency of the tasks `on`.

    With as many tasks as parameters the solution is exact; the profile stores the result and names `on`.
    """
    p = load_mcu_profile(profile) if isinstance(profile, str) else profile
    rows = {r["task"]: r for r in read_reference(csv_path)[0]}
    unknown = [t for t in on if t not in rows]
    if unknown:
        raise KitError(f"no reference row for {', '.join(unknown)}", f"tasks: {', '.join(rows)}")
    a, b = [], []
    for task in on:
        work = count_work(read_tflite(Path(models_dir) / rows[task]["model_file"]))
        fixed = {k: (0.0 if k in params else v) for k, v in p.cycles.items()}
        base = sum(layer_cycles(w, fixed) for w in work)
        # cycles are linear in the constants: a unit vector per parameter gives its coefficient
        a.append([sum(layer_cycles(w, {key: float(key == k) for key in p.cycles}) for w in work) for k in params])
        b.append(float(rows[task]["latency_ms"]) * 1000.0 * p.clock_mhz - base)
    solution, *_ = np.linalg.lstsq(np.array(a), np.array(b), rcond=None)
    return {k: float(v) for k, v in zip(params, solution)}
