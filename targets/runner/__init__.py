"""The self-contained LiteRT runner copied to Linux devices, and how to read its output.

`RUNNER` is run locally in a fresh process and remotely over SSH, so that
every Linux target measures the same way and reports the same fields.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kit.core.errors import TargetError
from targets.base import ArtifactRef, DeviceInfo, LatencyStats, ProfileResult, RunSettings
from targets.benchmark_model import parse_op_summary

RUNNER = Path(__file__).with_name("litert_runner.py")
#: how a latency measured under an emulator is labelled (profile `extra.emulated`, e.g. "qemu-user")
EMULATED_LATENCY = "emulated ({how}), not comparable"


#: how the runner times a model: LiteRT's Interpreter API, or its CompiledModel API on the CPU accelerator
APIS = ("interpreter", "compiled")


def runner_args(model: str, settings: RunSettings, delegate_library: str | None = None,
                input_path: str | None = None, op_profiling: bool = False, api: str = "interpreter") -> list[str]:
    """Command-line arguments for the runner (after the interpreter and runner path).

    `input_path` is where the input batch lies on the device (defaults to `settings.input_path`);
    `op_profiling` adds per-op times from LiteRT's own profiler after the timed runs; `api` = "compiled" times
    LiteRT's CompiledModel API instead of the Interpreter.
    """
    args = [model, "--threads", str(settings.threads), "--warmup", str(settings.warmup),
            "--runs", str(settings.runs), "--delegate", settings.delegate]
    if op_profiling:
        args.append("--op-profiling")
    if api != "interpreter":
        args += ["--api", api]
    if settings.instances > 1:
        args += ["--instances", str(settings.instances)]
    if delegate_library:
        args += ["--delegate-library", delegate_library]
    input_path = input_path or settings.input_path
    if input_path:
        args += ["--input", input_path]
    return args


def parse_runner_output(stdout: str, stderr: str = "", where: str = "device") -> dict[str, Any]:
    """The runner prints exactly one JSON object on its last stdout line."""
    lines = [ln for ln in stdout.strip().splitlines() if ln.startswith("{")]
    if not lines:
        tail = (stderr or stdout).strip().splitlines()[-5:]
        raise TargetError(f"the runner on {where} printed no result", "its last output lines: " + " | ".join(tail))
    try:
        raw = json.loads(lines[-1])
    except json.JSONDecodeError as e:
        raise TargetError(f"the runner on {where} printed malformed JSON: {e}") from None
    if "error" in raw:
        raise TargetError(f"{where}: {raw['error']}")
    return raw


def runner_result(target: str, artifact: ArtifactRef, settings: RunSettings, raw: dict[str, Any],
                  raw_output: str, memory_method: str) -> ProfileResult:
    d = raw["device"]
    notes = [f"model load + inference raised RSS by {raw.get('model_rss_bytes', 0)} bytes"]
    if d.get("api"):
        notes.append(f"timed through LiteRT's {d['api']} API")
    medians = raw.get("instance_medians_us") or []
    if len(medians) > 1:
        notes.append(f"runs split over {len(medians)} fresh interpreters; their medians: "
                     + ", ".join(f"{m:.4g}" for m in medians) + " us")
    return ProfileResult(
        target=target,
        device=DeviceInfo(
            name=d.get("name") or target,
            cpu=d.get("cpu"),
            os=d.get("os"),
            runtime=d.get("runtime"),
            runtime_version=d.get("runtime_version"),
            extra={k: d[k] for k in ("cores", "machine", "python", "api") if k in d},
        ),
        artifact=artifact,
        settings=settings,
        latency=LatencyStats.from_samples(raw["samples_us"]),
        init_us=raw.get("init_us"),
        first_inference_us=raw.get("first_inference_us"),
        peak_memory_bytes=raw.get("peak_rss_bytes"),
        memory_method=memory_method,
        notes=notes,
        raw_output=raw_output,
        op_profile=op_profile(raw["op_profile"]) if "op_profile" in raw else None,
    )


def op_profile(raw: dict[str, Any]) -> dict[str, Any]:
    """The runner's per-op profile as `ProfileResult.op_profile`: the runtime's own tables, in microseconds."""
    if "error" in raw:
        return {"unavailable": f"per-op profiling is not available on this runtime: {raw['error']}"}
    parsed = parse_op_summary(raw.get("summary", ""))
    if parsed is None:
        return {"unavailable": "LiteRT's profiler returned no op table"}

    def us(ms: float) -> float:
        return round(ms * 1000.0, 3)

    return {
        "method": f"{raw.get('how', 'LiteRT profiler')}, {raw.get('runs')} runs, {raw.get('threads')} thread(s); "
                  "times per call as the runtime's profiler reports them (1 us resolution)",
        "runs": raw.get("runs"),
        "by_node": [{"node": r.name, "op": r.node_type, "avg_us": us(r.avg_ms), "percent": r.percent,
                     "times_called": r.times_called} for r in parsed.run_order],
        "by_type": [{"op": r.node_type, "nodes": r.count, "avg_us": us(r.avg_ms), "percent": r.percent}
                    for r in parsed.by_node_type],
    }


def mark_emulated(result: ProfileResult, how: str) -> ProfileResult:
    """Label a result whose device is an emulator: outputs and loadability are real, its latency is the
    emulator's time on this host, so it is flagged `estimate` and never shown as a device measurement."""
    label = EMULATED_LATENCY.format(how=how)
    result.estimate = True
    result.device.extra["emulated"] = how
    result.device.extra["latency"] = label
    result.notes.insert(0, f"latency {label}: an emulator's time on the host, not the device's; "
                           "outputs and loadability are real")
    return result
