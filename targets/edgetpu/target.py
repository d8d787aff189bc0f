"""The `edgetpu+local` / `edgetpu+ssh://…` target: a model compiled for the Coral Edge TPU, run through its delegate.

The target runs the compiled model with the device runner and the
`libedgetpu.so.1` delegate (`--delegate edgetpu --delegate-library …`), on
this host or through the SSH target. A model that is not compiled yet is
checked (`targets.edgetpu.check`) and compiled first (`targets.edgetpu.compiler`).

Tested here: the target's refusal paths on a machine without libedgetpu
(locally and over a real SSH server). No Edge TPU, Coral Dev Board or USB
Accelerator, and no edgetpu_compiler, were available: compiling and running
on the TPU were not run.
"""
from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kit.core.errors import TargetError
from targets.base import ArtifactRef, Deployment, DeviceInfo, ProfileResult, RunSettings, Target
from targets.edgetpu.check import COMPILED_OP, EdgeTPUReport, check_edgetpu_requirements
from targets.edgetpu.compiler import CompileResult, compile_for_edgetpu, find_compiler, format_size
from targets.host_facts import local_health
from targets.options import parse_options, split_options
from targets.profiles import DeviceProfile
from targets.runner import RUNNER, parse_runner_output, runner_args, runner_result
from targets.ssh import SSHTarget
from targets.uri import TargetURI

DEFAULT_LIBRARY = "libedgetpu.so.1"


@dataclass
class EdgeTPUOptions:
    """`--option KEY=VALUE` of the Edge TPU target; over SSH the SSH target's options apply as well."""

    #: default: the device profile's `extra.delegate_library`, then libedgetpu.so.1
    delegate_library: str | None = None
    #: compiler executable for models not compiled yet
    compiler: str = "edgetpu_compiler"


class EdgeTPUTarget(Target):
    """`edgetpu+local` (a USB Accelerator on this host) or `edgetpu+ssh://…` (Dev Board, or a board with one).

    Models that are not compiled yet are compiled first when edgetpu_compiler
    is installed; otherwise they are refused, since running an uncompiled
    model through the delegate would time the CPU and label it Edge TPU.
    """

    schemes = ("edgetpu+local", "edgetpu+ssh")

    def __init__(self, uri: TargetURI, profile: DeviceProfile | None = None, **options: Any):
        super().__init__(uri, profile)
        own, rest = split_options(EdgeTPUOptions, options)
        o = self.options = parse_options(EdgeTPUOptions, own, uri.scheme)
        delegate_library = o.delegate_library or (profile.extra.get("delegate_library") if profile else None) \
            or DEFAULT_LIBRARY
        self.delegate_library = delegate_library
        self.compiler = o.compiler
        if uri.base_scheme == "ssh":
            self.board = SSHTarget(uri, profile, delegate_library=delegate_library, **rest)
        elif uri.base_scheme == "local":
            rest.pop("trust_on_first_use", None)  # `kit profile --trust-on-first-use` is for SSH; nothing to trust here
            parse_options(EdgeTPUOptions, rest, uri.scheme)  # refuses the rest by name
            self.board = None
        else:
            raise TargetError(f"the Edge TPU target runs over local or ssh, not {uri.base_scheme!r}",
                              "use edgetpu+local or edgetpu+ssh://user@host")
        self._runtime_ok = False

    @property
    def where(self) -> str:
        return self.board.where if self.board else "this host"

    def device_info(self) -> DeviceInfo:
        if self.board:
            info = self.board.device_info()
        else:
            proc = subprocess.run([sys.executable, str(RUNNER), "--info"], capture_output=True, text=True, timeout=60)
            d = parse_runner_output(proc.stdout, proc.stderr, where="local")["device"]
            info = DeviceInfo(name=d["name"], cpu=d["cpu"], os=d["os"], runtime=d["runtime"],
                              runtime_version=d["runtime_version"])
        info.extra["edgetpu_runtime"] = f"{self.delegate_library}: {self._runtime_problem() or 'loads'}"
        return info

    def health(self) -> dict[str, Any]:
        facts = self.board.board_health() if self.board else local_health()
        return {**super().health(), **facts}

    def _runtime_problem(self) -> str | None:
        """None when the delegate library loads on the device, else the loader's message."""
        probe = "import ctypes, sys; ctypes.CDLL(sys.argv[1])"
        if self.board:
            res = self.board.execute([self.board.python, "-c", probe, self.delegate_library], 60,
                                     "loading the Edge TPU runtime")
            ok, text = res.rc == 0, res.stderr or res.stdout
        else:
            proc = subprocess.run([sys.executable, "-c", probe, self.delegate_library], capture_output=True,
                                  text=True, timeout=60)
            ok, text = proc.returncode == 0, proc.stderr
        if ok:
            return None
        lines = text.strip().splitlines()
        return lines[-1] if lines else "the library did not load"

    def _require_runtime(self) -> None:
        if self._runtime_ok:
            return
        problem = self._runtime_problem()
        if problem:
            raise TargetError(f"the Edge TPU runtime {self.delegate_library} cannot be loaded on {self.where}: {problem}",
                              "install libedgetpu1-std (Coral's apt repository), plug in the accelerator, or pass "
                              "--option delegate_library=PATH")
        self._runtime_ok = True

    def deploy(self, artifact: Path) -> Deployment:
        if not artifact.is_file():
            raise TargetError(f"model file {artifact} does not exist")
        self._require_runtime()
        report = check_edgetpu_requirements(artifact)
        model, workdir, compiled = artifact, None, None
        if not report.compiled:
            if find_compiler(self.compiler) is None:
                raise TargetError(f"{artifact} is not compiled for the Edge TPU and {self.compiler} is not on PATH",
                                  "compile it on an x86-64 Linux machine with `kit edgetpu MODEL` and profile the "
                                  "*_edgetpu.tflite it writes")
            workdir = tempfile.mkdtemp(prefix="kit-edgetpu-")
            try:
                compiled = compile_for_edgetpu(artifact, workdir, self.compiler)
            except BaseException:
                shutil.rmtree(workdir, ignore_errors=True)
                raise
            model = Path(compiled.output_path)
        if self.board:
            try:
                deployment = self.board.deploy(model)
            except BaseException:
                if workdir:
                    shutil.rmtree(workdir, ignore_errors=True)
                raise
        else:
            deployment = Deployment(artifact=ArtifactRef.of(model), location=str(model))
        deployment.state.update(edgetpu_report=report, edgetpu_compile=compiled, edgetpu_workdir=workdir,
                                source=str(artifact))
        return deployment

    def _settings(self, settings: RunSettings) -> RunSettings:
        if settings.delegate not in ("default", "edgetpu"):
            raise TargetError(f"the Edge TPU target runs the edgetpu delegate, not {settings.delegate!r}",
                              "for a CPU baseline use --target local or ssh://…")
        return dataclasses.replace(settings, delegate="edgetpu")

    def run(self, deployment: Deployment, settings: RunSettings) -> dict[str, Any]:
        settings = self._settings(settings)
        try:
            return self._run(deployment, settings)
        except TargetError as e:
            output = f"{e.message} {e.hint or ''}"
            if "delegate" not in output.lower():
                raise
            raise TargetError(f"the Edge TPU delegate {self.delegate_library} failed on {self.where}: "
                              f"{output.rsplit('|', 1)[-1].strip()}",
                              "check that the accelerator is attached (lsusb: 1a6e:089a or 18d1:9302) and that "
                              "libedgetpu matches the installed LiteRT runtime") from None

    def _run(self, deployment: Deployment, settings: RunSettings) -> dict[str, Any]:
        if self.board:
            return self.board.run(deployment, settings)
        cmd = [sys.executable, str(RUNNER), *runner_args(deployment.location, settings, self.delegate_library)]
        if settings.core_mask:
            cmd = ["taskset", settings.core_mask, *cmd]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=settings.timeout_s)
        except subprocess.TimeoutExpired:
            raise TargetError(f"Edge TPU run took longer than {settings.timeout_s:.0f} s") from None
        return {"result": parse_runner_output(proc.stdout, proc.stderr, where="local Edge TPU"),
                "text": proc.stdout + proc.stderr}

    def collect(self, deployment: Deployment, raw: dict[str, Any], settings: RunSettings) -> ProfileResult:
        settings = self._settings(settings)
        if self.board:
            result = self.board.collect(deployment, raw, settings)
        else:
            result = runner_result(self.uri.raw, deployment.artifact, settings, raw["result"], raw["text"],
                                   memory_method="peak RSS of the runner process (getrusage)")
            energy = self.profile_spec.energy if self.profile_spec else {}
            result.energy_note = energy.get("note") or "no energy meter for the Edge TPU on this host"
        result.target = self.uri.raw
        compiled: CompileResult | None = deployment.state.get("edgetpu_compile")
        if compiled:
            result.notes.append(f"compiled from {deployment.state['source']} by edgetpu_compiler "
                                f"{compiled.compiler_version}: {compiled.ops_tpu} op(s) on the Edge TPU, "
                                f"{compiled.ops_cpu} on the CPU; on-chip parameters "
                                f"{format_size(compiled.on_chip_bytes)}, off-chip {format_size(compiled.off_chip_bytes)}")
        report: EdgeTPUReport = deployment.state["edgetpu_report"]
        if report.compiled:
            result.notes.append(f"precompiled model: {len(report.cpu_ops)} op(s) outside {COMPILED_OP} run on the CPU")
        return result

    def cleanup(self, deployment: Deployment) -> None:
        if self.board:
            self.board.cleanup(deployment)
        workdir = deployment.state.get("edgetpu_workdir")
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)

    def close(self) -> None:
        if self.board:
            self.board.close()
