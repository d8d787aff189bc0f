"""The one interface every target implements: deploy, run, collect, clean up.

A target turns "this .tflite file on that device" into a `ProfileResult`.
Every result has the same schema whatever the device, so tables, the results
store and reports never special-case a target.
"""
from __future__ import annotations

import hashlib
import json
import math
import statistics
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from targets.uri import TargetURI

#: delegate names accepted by `RunSettings.delegate`
DELEGATES = ("default", "none", "xnnpack", "gpu", "nnapi", "edgetpu")


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
        from kit.core.errors import KitError

        if self.delegate not in DELEGATES:
            raise KitError(f"unknown delegate {self.delegate!r}", f"use one of {', '.join(DELEGATES)}")
        if self.threads < 1 or self.runs < 1 or self.warmup < 0:
            raise KitError("threads and runs must be >= 1 and warmup >= 0")
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
class ArtifactRef:
    path: str
    sha256: str
    bytes: int

    @classmethod
    def of(cls, path: str | Path) -> "ArtifactRef":
        data = Path(path).read_bytes()
        return cls(path=str(path), sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ProfileResult":
        d = dict(d)
        d["device"] = DeviceInfo(**d["device"])
        d["artifact"] = ArtifactRef(**d["artifact"])
        d["settings"] = RunSettings(**d["settings"])
        if d.get("latency") is not None:
            d["latency"] = LatencyStats(**d["latency"])
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class Deployment:
    """What `deploy` left on the device; `cleanup` removes it."""

    artifact: ArtifactRef
    location: str
    state: dict[str, Any] = field(default_factory=dict)


class Target(ABC):
    """A device that can run a .tflite model and report how it went.

    Subclasses implement `device_info`, `deploy`, `run`, `collect` and
    `cleanup`; `profile` chains them and always cleans up.
    """

    #: URI schemes this target answers to, e.g. ("ssh",)
    schemes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, uri: TargetURI, profile: "DeviceProfile | None" = None):
        self.uri = uri
        self.profile_spec = profile

    @abstractmethod
    def device_info(self) -> DeviceInfo:
        """Describe the device (CPU, OS, runtime and its version)."""

    @abstractmethod
    def deploy(self, artifact: Path) -> Deployment:
        """Put the model (and whatever runs it) on the device."""

    @abstractmethod
    def run(self, deployment: Deployment, settings: RunSettings) -> dict[str, Any]:
        """Run the deployed model; return the raw measurements."""

    @abstractmethod
    def collect(self, deployment: Deployment, raw: dict[str, Any], settings: RunSettings) -> ProfileResult:
        """Turn raw measurements into a `ProfileResult`."""

    @abstractmethod
    def cleanup(self, deployment: Deployment) -> None:
        """Remove everything `deploy` put on the device. Must not raise on a lost device."""

    def health(self) -> dict[str, Any]:
        """Reachability and state for `kit farm check`; subclasses add fields."""
        info = self.device_info()
        return {"reachable": True, "runtime": info.runtime, "runtime_version": info.runtime_version}

    def close(self) -> None:
        """Release connections. Safe to call twice."""

    def profile(self, artifact: str | Path, settings: RunSettings | None = None) -> ProfileResult:
        settings = settings or RunSettings()
        deployment = self.deploy(Path(artifact))
        try:
            raw = self.run(deployment, settings)
            return self.collect(deployment, raw, settings)
        finally:
            self.cleanup(deployment)

    def __enter__(self) -> "Target":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


from targets.profiles import DeviceProfile  # noqa: E402  (type used in annotations only)
