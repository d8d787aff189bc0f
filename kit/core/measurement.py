"""What a target measures: the settings of a run and the one result schema every target reports.

Every `ProfileResult` has the same fields whatever the device (a phone, a
board over SSH, a microcontroller, an estimate), so tables, the results store
and reports never special-case a target. Plain data with no device code, so
that the kit's reports and the firmware tools' estimates share it without
importing the targets.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from kit.core.artifact import ArtifactRef
from kit.core.errors import KitError
from kit.core.jsonio import dumps
from kit.core.vocab import DELEGATES


@dataclass
class RunSettings:
    """How to run a model on a device; the same knobs for every target."""

    threads: int = 1
    warmup: int = 10
    runs: int = 100
    #: "default" = the runtime's default (XNNPACK on LiteRT CPU); "none" = built-in kernels only
    delegate: str = "default"
    #: CPU affinity as a hex mask ("f0" = cores 4-7), applied with taskset where available
    core_mask: str | None = None
    #: path of a .npy file with one input batch; random data of the right dtype when None
    input_path: str | None = None
    timeout_s: float = 600.0
    #: fresh interpreters the runs are split across (runner targets): one interpreter's speed depends on
    #: where its buffers land in memory, by up to 1.6x on small models, so one instance can mislead
    instances: int = 1

    def __post_init__(self) -> None:
        if self.delegate not in DELEGATES:
            raise KitError(f"unknown delegate {self.delegate!r}", f"use one of {', '.join(DELEGATES)}")
        if self.threads < 1 or self.runs < 1 or self.warmup < 0:
            raise KitError("threads and runs must be >= 1 and warmup >= 0")
        if not (isinstance(self.timeout_s, (int, float)) and math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise KitError(f"the run timeout must be a number of seconds > 0, got {self.timeout_s!r}",
                           "e.g. --timeout 600")
        if not 1 <= self.instances <= self.runs:
            raise KitError(f"instances must be between 1 and runs ({self.runs}), got {self.instances}")
        if self.core_mask is not None:
            try:
                int(self.core_mask, 16)
            except ValueError:
                raise KitError(f"core mask {self.core_mask!r} is not a hex number", "e.g. --core-mask f0") from None


@dataclass
class LatencyStats:
    """Latency of one inference, in microseconds."""

    count: int
    min_us: float | None
    median_us: float | None  # None where a tool reports no percentiles (never invented)
    mean_us: float
    p90_us: float | None
    p99_us: float | None
    max_us: float
    std_us: float

    @classmethod
    def from_samples(cls, samples_us: list[float]) -> "LatencyStats":
        if not samples_us:
            raise ValueError("no latency samples")
        s = sorted(samples_us)
        return cls(
            count=len(s),
            min_us=s[0],
            median_us=statistics.median(s),
            mean_us=statistics.fmean(s),
            p90_us=_percentile(s, 90),
            p99_us=_percentile(s, 99),
            max_us=s[-1],
            std_us=statistics.pstdev(s) if len(s) > 1 else 0.0,
        )


def _percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method)."""
    pos = (len(sorted_values) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


@dataclass
class DeviceInfo:
    name: str
    cpu: str | None = None
    os: str | None = None
    runtime: str | None = None
    runtime_version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProfileResult:
    """One measurement of one artifact on one device.

    Numbers are measured on the device; anything else is flagged (`estimate`)
    or left `None` with the reason in the matching `*_note` field.
    """

    target: str
    device: DeviceInfo
    artifact: ArtifactRef
    settings: RunSettings
    latency: LatencyStats | None = None
    init_us: float | None = None
    first_inference_us: float | None = None
    peak_memory_bytes: int | None = None
    memory_method: str | None = None
    energy_uj_per_inference: float | None = None
    energy_method: str | None = None
    energy_note: str = "no energy meter on this target"
    estimate: bool = False
    notes: list[str] = field(default_factory=list)
    raw_output: str = ""
    #: per-op time from the runtime's own profiler: {"method", "runs", "by_node": [...], "by_type": [...]},
    #: or {"unavailable": why} when it was asked for and the runtime has none; None when not asked for
    op_profile: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ProfileResult":
        d = dict(d)
        d["device"] = _known(DeviceInfo, d["device"])
        d["artifact"] = _known(ArtifactRef, d["artifact"])
        d["settings"] = _known(RunSettings, d["settings"])
        if d.get("latency") is not None:
            d["latency"] = _known(LatencyStats, d["latency"])
        return _known(cls, d)


def _known(cls, d: dict[str, Any]):
    """`cls` from the fields it has: strict JSON adds `<key>_note` beside values that were not finite."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})
