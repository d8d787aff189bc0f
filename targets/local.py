"""The host itself: LiteRT in a fresh Python process, timed invoke by invoke."""
from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.core.errors import TargetError
from targets.base import ArtifactRef, Deployment, DeviceInfo, ProfileResult, RunSettings, Target
from targets.host_facts import local_health
from targets.options import parse_options
from targets.profiles import DeviceProfile
from targets.runner import APIS, RUNNER, parse_runner_output, runner_args, runner_result
from targets.uri import TargetURI


@dataclass
class LocalOptions:
    """`--option KEY=VALUE` of the host; anything else is refused by name."""

    #: per-op times from LiteRT's own profiler after the timed runs (`ProfileResult.op_profile`)
    op_profiling: bool = False
    #: interpreter = LiteRT's Interpreter API; compiled = its CompiledModel API on the CPU accelerator
    api: str = field(default="interpreter", metadata={"choices": APIS})


class LocalTarget(Target):
    schemes = ("local",)

    def __init__(self, uri: TargetURI, profile: DeviceProfile | None = None, **options: Any):
        super().__init__(uri, profile)
        self.options = parse_options(LocalOptions, options, "local")

    def device_info(self) -> DeviceInfo:
        proc = subprocess.run([sys.executable, str(RUNNER), "--info"], capture_output=True, text=True, timeout=60)
        d = parse_runner_output(proc.stdout, proc.stderr, where="local")["device"]
        return DeviceInfo(name=d["name"], cpu=d["cpu"], os=d["os"], runtime=d["runtime"],
                          runtime_version=d["runtime_version"])

    def health(self) -> dict[str, Any]:
        return {**super().health(), **local_health()}

    def deploy(self, artifact: Path) -> Deployment:
        if not artifact.is_file():
            raise TargetError(f"model file {artifact} does not exist")
        return Deployment(artifact=ArtifactRef.of(artifact), location=str(artifact))

    def _run_runner(self, model: Path, settings: RunSettings) -> tuple[dict[str, Any], str]:
        cmd = [sys.executable, str(RUNNER), *runner_args(str(model), settings, op_profiling=self.options.op_profiling,
                                                               api=self.options.api)]
        if settings.core_mask:
            if shutil.which("taskset") is None:
                raise TargetError("a core mask was given but `taskset` is not installed", "install util-linux")
            cmd = ["taskset", settings.core_mask, *cmd]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=settings.timeout_s)
        except subprocess.TimeoutExpired:
            raise TargetError(f"local run of {model} took longer than {settings.timeout_s:.0f} s") from None
        return parse_runner_output(proc.stdout, proc.stderr, where="local"), proc.stdout + proc.stderr

    def run(self, deployment: Deployment, settings: RunSettings) -> dict[str, Any]:
        if settings.delegate in ("gpu", "nnapi", "edgetpu"):
            raise TargetError(f"delegate {settings.delegate!r} is not available on the local target",
                              "use default, none or xnnpack; for a Coral use --target edgetpu+local")
        raw, text = self._run_runner(Path(deployment.location), settings)
        return {"result": raw, "text": text}

    def collect(self, deployment: Deployment, raw: dict[str, Any], settings: RunSettings) -> ProfileResult:
        result = runner_result("local", deployment.artifact, settings, raw["result"], raw["text"],
                               memory_method="peak RSS of the runner process (getrusage)")
        result.energy_note = "the host has no energy meter the kit can read"
        return result

    def cleanup(self, deployment: Deployment) -> None:
        """Nothing was copied: the model is run where it lies."""
