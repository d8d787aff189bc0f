"""The one interface every target implements: deploy, run, collect, clean up.

A target turns "this .tflite file on that device" into a `ProfileResult`
(`kit.core.measurement`: the same schema whatever the device). The schema's
names are re-exported here because every target and its callers use them.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from kit.core.artifact import ArtifactRef
from kit.core.measurement import DELEGATES, DeviceInfo, LatencyStats, ProfileResult, RunSettings
from targets.profiles import DeviceProfile
from targets.uri import TargetURI

__all__ = ["DELEGATES", "ArtifactRef", "Deployment", "DeviceInfo", "LatencyStats", "ProfileResult", "RunSettings",
           "Target"]


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
        """Reachability and state for `kit farm check`.

        Keys: `reachable` (and `error` when not), `runtime`, `runtime_version`, and what the device can
        tell: `battery_level` (percent), `charging`, `free_storage_bytes` (where models are deployed).
        A key the target cannot read is left out and shown as unknown, never guessed.
        """
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

