"""Android phones over ADB: push TFLite's `benchmark_model` and the model, run it, parse it, clean up.

`adb://SERIAL` uses the local adb server; `adb://SERIAL@host:5037` a remote
one (`adb -H host -P port -s SERIAL`); `adb://` alone the only connected phone.
The real `adb` client does the talking (Debian package `adb`, or Android SDK
platform-tools), so USB, wireless debugging and remote servers all work as
they do for `adb` itself.

The kit cannot download `benchmark_model`: the path of a build for the phone's
ABI comes from `--benchmark-binary` or the device profile's `benchmark_binary`.
Each run gets its own directory `/data/local/tmp/prunekit-<random>`, removed
afterwards even when the run fails; every argument sent to the phone's shell
is quoted. Energy comes from the battery fuel gauge (see `targets.battery`).

What has run where: nothing here has been run on a real phone (none was
available). The tests drive the real `adb` client and server against an
emulated adbd (`tests/targets_adb/adbd_emulator.py`) that speaks the adbd
transport and sync protocols and runs shell commands with /bin/sh in a sandbox
directory; its `benchmark_model` is a labelled stand-in that runs the model
with LiteRT and prints in benchmark_model's format. The output parser is
checked against real benchmark_model outputs from phones and Linux.
"""
from __future__ import annotations

import hashlib
import re
import secrets
import shlex
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from kit.core.errors import TargetError
from targets.base import ArtifactRef, Deployment, DeviceInfo, LatencyStats, ProfileResult, RunSettings, Target
from targets.battery import (
    DEFAULT_BATTERY_DIR,
    METHOD,
    SAMPLER_STOP,
    ChargeState,
    battery_config,
    charge_state_command,
    energy_per_inference,
    parse_charge_state,
    parse_samples,
    sampler_start,
)
from targets.benchmark_model import BenchmarkOutput, parse_benchmark_output
from targets.options import parse_options
from targets.profiles import DeviceProfile
from targets.uri import TargetURI

REMOTE_ROOT = "/data/local/tmp"
_RUN_PREFIX = f"{REMOTE_ROOT}/prunekit-"
_SEPARATOR = "--prunekit-section--"
_BINARY_HINT = (
    "the kit cannot download benchmark_model: build it for the phone's ABI from the LiteRT/TensorFlow sources "
    "(bazel build -c opt --config=android_arm64 //tensorflow/lite/tools/benchmark:benchmark_model) or take the "
    "prebuilt android_aarch64 benchmark_model linked from the TensorFlow Lite 'Performance measurement' page, "
    "then pass --benchmark-binary PATH or set benchmark_binary in the device profile"
)
#: delegate -> (use_xnnpack, use_gpu, use_nnapi); benchmark_model applies XNNPACK by default
_DELEGATE_FLAGS = {
    "default": (True, False, False),
    "xnnpack": (True, False, False),
    "none": (False, False, False),
    "gpu": (False, True, False),
    "nnapi": (False, False, True),
}
_PROPS = ("ro.product.model", "ro.build.version.release", "ro.build.version.sdk", "ro.board.platform",
          "ro.soc.manufacturer", "ro.soc.model", "ro.product.cpu.abi")
_MIB = 1024 * 1024


@dataclass
class ADBOptions:
    """`--option KEY=VALUE` of adb targets."""

    #: benchmark_model built for the phone's ABI; default: the device profile's `benchmark_binary`
    benchmark_binary: str | None = None
    #: the adb client program
    adb: str = "adb"
    #: seconds per adb command besides the run itself
    command_timeout_s: float = 60.0
    #: benchmark_model's per-op timing table (`--enable_op_profiling`)
    op_profiling: bool = False


class ADBTarget(Target):
    schemes = ("adb",)

    def __init__(self, uri: TargetURI, profile: DeviceProfile | None = None, **options: Any):
        o = self.options = parse_options(ADBOptions, options, "adb")
        super().__init__(uri, profile)
        self.serial, self.server_host, self.server_port = parse_adb_uri(uri.raw)
        self.adb = o.adb
        self.benchmark_binary = o.benchmark_binary or (profile.benchmark_binary if profile else None)
        self.command_timeout_s = o.command_timeout_s
        self.op_profiling = o.op_profiling
        self.battery = battery_config(profile.energy if profile else None)
        self._info: DeviceInfo | None = None

    # ---- the Target interface -------------------------------------------------------------

    def device_info(self) -> DeviceInfo:
        if self._info is None:
            props = "; ".join(f'echo "{p}=$(getprop {p})"' for p in _PROPS)
            text, _ = self._shell(f"{props}; echo {_SEPARATOR}; cat /proc/cpuinfo")
            self._info = _device_info(text, self.serial)
        return self._info

    def deploy(self, artifact: Path) -> Deployment:
        binary = self._binary()
        if not artifact.is_file():
            raise TargetError(f"model file {artifact} does not exist")
        ref = ArtifactRef.of(artifact)
        self._require_device()
        run_dir = f"{_RUN_PREFIX}{secrets.token_hex(6)}"
        deployment = Deployment(artifact=ref, location=run_dir, state={
            "model": f"{run_dir}/{artifact.name}",
            "binary": f"{run_dir}/benchmark_model",
            "binary_sha256": hashlib.sha256(binary.read_bytes()).hexdigest(),
        })
        try:
            self._push(artifact, deployment.state["model"])
            self._push(binary, deployment.state["binary"])
            self._shell_ok(f"chmod 755 {shlex.quote(deployment.state['binary'])}")
        except TargetError as e:
            left = self._remove(run_dir)
            where = (f"{run_dir} may remain on the device (removing it failed: {left}); remove it later with "
                     f"`adb{self._adb_flags_text()} shell rm -rf {run_dir}`") if left else f"{run_dir} was removed"
            raise TargetError(e.message, f"{e.hint + '; ' if e.hint else ''}{where}") from None
        return deployment

    def run(self, deployment: Deployment, settings: RunSettings) -> dict[str, Any]:
        if settings.input_path:
            raise TargetError("the ADB target runs benchmark_model on random inputs and cannot use --input",
                              "drop --input; latency does not depend on the input values for these models")
        bench = benchmark_command(deployment.state["binary"], deployment.state["model"], settings,
                                  self.op_profiling)
        before = self._charge_state() if self.battery else None
        sampling = before is not None and before.on_battery
        samples_path = f"{deployment.location}/battery_samples.txt"
        command = f"cd {shlex.quote(deployment.location)} && {{ "
        if sampling:
            command += sampler_start(self.battery, samples_path) + "; "
        command += f"{bench} 2>&1; rc=$?; "
        if sampling:
            command += SAMPLER_STOP + "; "
        command += "(exit $rc); }"
        output, rc = self._shell(command, timeout=settings.timeout_s + self.command_timeout_s)
        if rc != 0:
            tail = _tail(output)
            why = " (not found or not executable: is it built for this phone's ABI?)" if rc in (126, 127) else ""
            raise TargetError(f"benchmark_model on {self._where()} exited with status {rc}{why}",
                              f"its output ended with: {tail}")
        raw: dict[str, Any] = {"output": output, "command": bench, "before": before}
        if self.battery:
            raw["samples"] = self._shell_ok(f"cat {shlex.quote(samples_path)} 2>/dev/null") if sampling else ""
            raw["after"] = self._charge_state()
        return raw

    def collect(self, deployment: Deployment, raw: dict[str, Any], settings: RunSettings) -> ProfileResult:
        parsed = parse_benchmark_output(raw["output"])
        if parsed.inference is None and parsed.inference_avg_us is None:
            tail = _tail(raw["output"])
            raise TargetError(f"benchmark_model on {self._where()} printed no inference timings",
                              f"its output ended with: {tail}")
        result = ProfileResult(
            target=str(self.uri),
            device=self.device_info(),
            artifact=deployment.artifact,
            settings=settings,
            latency=_latency(parsed),
            init_us=parsed.timings.init_us if parsed.timings else None,
            first_inference_us=parsed.timings.first_inference_us if parsed.timings else None,
            notes=_notes(parsed, settings, raw["command"], deployment.state["binary_sha256"], self.op_profiling),
            raw_output=raw["output"],
        )
        result.peak_memory_bytes, result.memory_method = _memory(parsed)
        if self.battery is None:
            result.energy_note = ("the device profile names no energy method; set [energy] method = "
                                  "\"android-battery\" with the battery's units and sign (see targets/battery.py)")
        else:
            power = parse_samples(raw["samples"], self.battery)
            energy, note = energy_per_inference(power, parsed.inference_avg_us, self.battery,
                                                raw["before"], raw["after"])
            result.energy_uj_per_inference = energy
            result.energy_method = METHOD if energy is not None else None
            result.energy_note = note
            if raw["samples"]:
                result.raw_output += "\n--- battery samples (current_now voltage_now) ---\n" + raw["samples"]
        return result

    def cleanup(self, deployment: Deployment) -> None:
        left = self._remove(deployment.location)
        if left:
            warnings.warn(f"could not remove {deployment.location} from {self._where()}: {left}; remove it with "
                          f"`adb{self._adb_flags_text()} shell rm -rf {deployment.location}`", stacklevel=2)

    def health(self) -> dict[str, Any]:
        """Reachability, battery and free space in /data/local/tmp, for `kit farm check`."""
        try:
            self._require_device()
            info = self.device_info()
            battery_dir = self.battery.battery_dir if self.battery else DEFAULT_BATTERY_DIR
            text, _ = self._shell(f"{charge_state_command(battery_dir)}; echo {_SEPARATOR}; "
                                  f"df -k {REMOTE_ROOT}")
        except TargetError as e:
            return {"reachable": False, "error": e.message}
        charge_text, _, df_text = text.partition(_SEPARATOR)
        state = parse_charge_state(charge_text)
        return {
            "reachable": True,
            "model": info.name,
            "os": info.os,
            "runtime": "benchmark_model",
            "battery_level": state.level,
            "battery_status": state.status,
            "powered_by": state.powered_by,
            "charging": state.status in ("Charging", "Full") or bool(state.powered_by),
            "on_battery": state.on_battery,
            "free_storage_bytes": _df_available(df_text),
        }

    # ---- adb plumbing --------------------------------------------------------------------

    def _adb_flags(self) -> list[str]:
        flags = ["-H", self.server_host, "-P", str(self.server_port)] if self.server_host else []
        return flags + (["-s", self.serial] if self.serial else [])

    def _adb_flags_text(self) -> str:
        return "".join(" " + shlex.quote(f) for f in self._adb_flags())

    def _where(self) -> str:
        device = f"adb device {self.serial}" if self.serial else "the adb device"
        return device + (f" (adb server {self.server_host}:{self.server_port})" if self.server_host else "")

    def _adb(self, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
        timeout = timeout or self.command_timeout_s
        try:
            return subprocess.run([self.adb, *self._adb_flags(), *args], capture_output=True, text=True,
                                  errors="replace", stdin=subprocess.DEVNULL, timeout=timeout)
        except FileNotFoundError:
            raise TargetError(f"the adb program {self.adb!r} was not found",
                              "install it (Debian/Ubuntu: apt-get install adb, or Android SDK platform-tools) "
                              "or pass --option adb=/path/to/adb") from None
        except subprocess.TimeoutExpired:
            raise TargetError(f"adb {args[0]} on {self._where()} did not finish within {timeout:.0f} s",
                              "is the phone still connected? check `adb devices`") from None

    def _require_device(self) -> None:
        proc = self._adb("get-state")
        state = proc.stdout.strip()
        if proc.returncode != 0 or state != "device":
            why = _adb_message(proc) or state or "unknown state"
            raise TargetError(f"{self._where()} is not available: {why}",
                              "check `adb devices`: the phone must be listed as `device` (connected, USB or "
                              "wireless debugging on, this computer authorised)")

    def _shell(self, command: str, timeout: float | None = None) -> tuple[str, int]:
        """Run `command` in the phone's shell; (output with stderr, exit status).

        The status is printed after a random marker because adb's v1 shell
        protocol, which older phones speak, does not carry it.
        """
        marker = f"--prunekit-rc-{secrets.token_hex(4)}="
        proc = self._adb("shell", f"{command}; printf '\\n{marker}%s\\n' \"$?\"", timeout=timeout)
        out = proc.stdout.replace("\r\n", "\n")
        at = out.rfind("\n" + marker)
        if at < 0:
            why = _adb_message(proc) or "the connection ended before the command finished"
            raise TargetError(f"adb shell on {self._where()} failed: {why}",
                              "check that the phone is still connected (`adb devices`)")
        status = out[at + 1 + len(marker):].split("\n", 1)[0].strip()
        return out[:at], int(status) if status.isdigit() else -1

    def _shell_ok(self, command: str, timeout: float | None = None) -> str:
        output, rc = self._shell(command, timeout)
        if rc != 0:
            raise TargetError(f"`{command}` on {self._where()} exited with status {rc}: {output.strip()[-300:]}")
        return output

    def _push(self, local: Path, remote: str) -> None:
        size = local.stat().st_size
        proc = self._adb("push", str(local.resolve()), remote, timeout=self.command_timeout_s + size / 1e6)
        if proc.returncode != 0:
            raise TargetError(f"pushing {local.name} to {self._where()} failed: {_adb_message(proc)}",
                              "check that the phone is still connected (`adb devices`) and /data/local/tmp has room")

    def _remove(self, run_dir: str) -> str | None:
        """Remove a run directory; the error text if that failed (a lost phone is not an error here)."""
        if not run_dir.startswith(_RUN_PREFIX) or "/" in run_dir[len(_RUN_PREFIX):]:
            raise ValueError(f"refusing to remove {run_dir!r}: not a prunekit run directory")
        try:
            self._shell_ok(f"rm -rf {shlex.quote(run_dir)}", timeout=min(self.command_timeout_s, 30.0))
        except TargetError as e:
            return e.message
        return None

    def _charge_state(self) -> ChargeState:
        return parse_charge_state(self._shell_ok(charge_state_command(self.battery.battery_dir)))

    def _binary(self) -> Path:
        if not self.benchmark_binary:
            raise TargetError("no benchmark_model binary for the phone was given", _BINARY_HINT)
        path = Path(self.benchmark_binary).expanduser()
        if not path.is_file():
            raise TargetError(f"benchmark_model binary {path} does not exist", _BINARY_HINT)
        return path


def parse_adb_uri(raw: str) -> tuple[str | None, str | None, int | None]:
    """`adb://SERIAL[@host[:port]]` -> (serial, server host, server port); serials keep their case."""
    rest = raw.split("://", 1)[1] if "://" in raw else ""
    rest = rest.split("?", 1)[0].rstrip("/")
    serial, at, server = rest.rpartition("@")
    if not at:
        serial, server = rest, ""
    serial = unquote(serial) or None
    if not server:
        return serial, None, None
    m = re.fullmatch(r"(\[[^\]]+\]|[^:\[\]]+)(?::(\d+))?", server)
    if not m:
        raise TargetError(f"cannot read the adb server address {server!r} in {raw!r}",
                          "use adb://SERIAL@host:5037")
    host, port = m.group(1).strip("[]"), int(m.group(2) or 5037)
    if not 1 <= port <= 65535:
        raise TargetError(f"adb server port {port} in {raw!r} is out of range", "ports are 1 to 65535")
    return serial, host, port


def benchmark_command(binary: str, model: str, settings: RunSettings, op_profiling: bool = False) -> str:
    """The shell command that runs benchmark_model on the phone, every argument quoted."""
    try:
        xnnpack, gpu, nnapi = _DELEGATE_FLAGS[settings.delegate]
    except KeyError:
        raise TargetError(f"delegate {settings.delegate!r} is not available on Android phones",
                          f"use one of {', '.join(_DELEGATE_FLAGS)}") from None
    if settings.instances != 1:
        raise TargetError("benchmark_model runs one interpreter per call; --instances applies to the LiteRT "
                          "runner (local, ssh, edgetpu targets)", "drop --instances for adb targets")
    args = [binary, f"--graph={model}", f"--num_threads={settings.threads}",
            f"--warmup_runs={settings.warmup}", f"--num_runs={settings.runs}",
            # exactly the requested counts, not "at least N runs and at least 1 s"
            "--warmup_min_secs=0", "--min_secs=0",
            f"--use_xnnpack={_bool(xnnpack)}", f"--use_gpu={_bool(gpu)}", f"--use_nnapi={_bool(nnapi)}"]
    if op_profiling:
        args.append("--enable_op_profiling=true")
    if settings.core_mask:
        args = ["taskset", settings.core_mask, *args]
    return " ".join(shlex.quote(a) for a in args)


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _tail(output: str, lines: int = 8, width: int = 240) -> str:
    """The last lines of a tool's output, each cut to `width` characters, for an error hint."""
    cut = [ln if len(ln) <= width else ln[:width] + "…" for ln in output.strip().splitlines()[-lines:]]
    return " | ".join(cut) or "(no output)"


def _adb_message(proc: subprocess.CompletedProcess) -> str:
    text = (proc.stderr or "").strip() or (proc.stdout or "").strip()
    return " | ".join(text.splitlines()[-3:])


def _device_info(text: str, serial: str | None) -> DeviceInfo:
    props_text, _, cpuinfo = text.partition(_SEPARATOR)
    props = {}
    for line in props_text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key in _PROPS:
            props[key] = value.strip()
    cpu_fields: dict[str, str] = {}
    cores = 0
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if sep and key == "processor" and value.strip().isdigit():
            cores += 1
        elif sep and value.strip():
            cpu_fields.setdefault(key, value.strip())
    soc = " ".join(v for v in (props.get("ro.soc.manufacturer"), props.get("ro.soc.model")) if v)
    cpu = soc or cpu_fields.get("hardware") or props.get("ro.board.platform") or cpu_fields.get("model name")
    release, sdk = props.get("ro.build.version.release"), props.get("ro.build.version.sdk")
    os_name = f"Android {release}" + (f" (API {sdk})" if sdk else "") if release else None
    extra = {"serial": serial, "abi": props.get("ro.product.cpu.abi") or None,
             "board_platform": props.get("ro.board.platform") or None, "cores": cores or None}
    return DeviceInfo(name=props.get("ro.product.model") or serial or "android", cpu=cpu or None, os=os_name,
                      runtime="benchmark_model", runtime_version=None,
                      extra={k: v for k, v in extra.items() if v is not None})


def _latency(parsed: BenchmarkOutput) -> LatencyStats | None:
    s = parsed.inference
    if s is None:
        return None
    return LatencyStats(count=s.count, min_us=s.min_us, median_us=s.median_us, mean_us=s.avg_us,
                        p90_us=None, p99_us=None, max_us=s.max_us, std_us=s.std_us)


def _memory(parsed: BenchmarkOutput) -> tuple[int | None, str | None]:
    if parsed.periodic_peak_memory_mb is not None:
        return round(parsed.periodic_peak_memory_mb * _MIB), \
            "benchmark_model: peak memory footprint of the whole tool process, sampled periodically"
    if parsed.peak_memory_overall_mb is not None:
        return round(parsed.peak_memory_overall_mb * _MIB), \
            "benchmark_model: peak memory footprint of the whole tool process over the run"
    if parsed.memory_delta_overall_mb is not None:
        return round(parsed.memory_delta_overall_mb * _MIB), \
            "benchmark_model: growth of the tool's memory footprint from its start to the end of the run " \
            "(model and runtime, not the process total)"
    return None, None


def _notes(parsed: BenchmarkOutput, settings: RunSettings, command: str, binary_sha256: str,
           op_profiling: bool) -> list[str]:
    notes = [f"ran: {command}", f"benchmark_model sha256 {binary_sha256}"]
    s = parsed.inference
    if s is None:
        notes.append(f"benchmark_model printed only the mean inference time, {parsed.inference_avg_us:g} us")
    else:
        printed = [(name, v) for name, v in (("p5", s.p5_us), ("median", s.median_us), ("p95", s.p95_us))
                   if v is not None]
        if printed:
            notes.append("benchmark_model percentiles: " + ", ".join(f"{n} {v:g} us" for n, v in printed))
        if s.median_us is None:
            notes.append("benchmark_model printed no median: median, p90 and p99 are not available")
        if s.count < settings.runs:
            notes.append(f"benchmark_model stopped after {s.count} of {settings.runs} runs (its --max_secs limit)")
    if parsed.op_profile and parsed.op_profile.by_node_type:
        top = ", ".join(f"{r.node_type} {r.percent:.1f}%" for r in parsed.op_profile.by_node_type[:5])
        notes.append(f"time by op type: {top}")
    elif op_profiling:
        notes.append("op profiling was requested but benchmark_model printed no op table")
    return notes


def _df_available(text: str) -> int | None:
    """Available bytes from `df -k` output (toybox and GNU print the same columns)."""
    for line in text.splitlines():
        m = re.search(r"\s(\d+)\s+(\d+)\s+(\d+)\s+\d+%\s+\S", line)
        if m:
            return int(m.group(3)) * 1024
    return None

