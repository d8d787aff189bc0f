"""The emulated aarch64 board (`kit board arm64`) as an SSH target: a real loopback sshd whose remote python
is aarch64 CPython + aarch64 ai-edge-litert under qemu-user. Outputs are compared with x86 LiteRT on the
same input batch; the board's latency must carry the emulation label."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kit.core.errors import TargetError
from targets.base import ArtifactRef, DeviceInfo, LatencyStats, ProfileResult, RunSettings
from targets.emulated_arm64 import EMULATED_LATENCY, build_board
from targets.local import LocalTarget
from targets.profiles import load_profile
from targets.registry import get_target
from targets.runner import mark_emulated
from targets.uri import parse_target_uri
from tests.support.arm64_board import board_dir, digits_artifacts
from tests.support.loopback_sshd import SSHD, LoopbackSSHD, cmdline, descendants

BOARD, WHY_NO_BOARD = board_dir()
needs_board = pytest.mark.skipif(BOARD is None, reason=WHY_NO_BOARD)
needs_sshd = pytest.mark.skipif(not SSHD.exists(), reason="/usr/sbin/sshd is absent: apt-get install openssh-server")
# each emulated runner start takes seconds (aarch64 CPython + numpy + LiteRT under qemu-user)
EMULATED = RunSettings(runs=3, warmup=1, timeout_s=300)


def test_mark_emulated_labels_latency_and_flags_the_estimate():
    result = ProfileResult(target="ssh://x", device=DeviceInfo(name="b"),
                           artifact=ArtifactRef(path="m.tflite", sha256="0" * 64, bytes=1),
                           settings=RunSettings(), latency=LatencyStats.from_samples([1.0, 2.0]),
                           notes=["ran in /tmp/x"])
    mark_emulated(result, "qemu-user")
    assert result.estimate is True
    assert result.device.extra["latency"] == EMULATED_LATENCY == "emulated (qemu-user), not comparable"
    assert result.notes[0].startswith(f"latency {EMULATED_LATENCY}") and result.notes[1] == "ran in /tmp/x"
    # the label survives the strict JSON round trip the results store uses
    back = ProfileResult.from_dict(json.loads(result.to_json()))
    assert back.estimate and back.device.extra["emulated"] == "qemu-user"


def test_shipped_profile_says_emulated():
    profile = load_profile("emulated-arm64")
    assert profile.extra["emulated"] == "qemu-user" and profile.energy["method"] == "none"
    assert "int8-sparse" in profile.formats


def test_build_without_debian_tools_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(TargetError) as e:
        build_board(tmp_path / "board", log=lambda _: None)
    assert "apt-get" in e.value.message and "dpkg" in e.value.message and e.value.hint
    assert not (tmp_path / "board").exists() or not any((tmp_path / "board").iterdir())


def test_bad_cpu_model_is_refused_before_any_download(tmp_path):
    with pytest.raises(TargetError, match="not a CPU model name"):
        build_board(tmp_path / "board", qemu_cpu="a76; rm -rf /", log=lambda _: None)
    assert not (tmp_path / "board").exists()


@pytest.mark.slow
@needs_board
def test_second_build_reuses_every_stage():
    lines: list[str] = []
    board = build_board(BOARD, log=lines.append)
    fetched = [s.name for s in board.stages if s.name not in ("wrapper", "check") and not s.reused]
    assert fetched == [], f"stages rebuilt on a finished board: {fetched}\n" + "\n".join(lines)
    assert board.device["machine"] == "aarch64" and board.device["runtime"] == "ai_edge_litert"
    assert any(ln.strip().startswith("check") for ln in lines)


@pytest.mark.slow
@needs_board
def test_kit_board_command_reports_stage_times_as_json():
    res = subprocess.run([sys.executable, "-m", "kit.cli", "board", "arm64", str(BOARD), "--json"],
                         capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert {s["name"] for s in report["stages"]} >= {"tools", "sysroot", "site", "precompile", "wrapper", "check"}
    assert report["device"]["machine"] == "aarch64" and Path(report["wrapper"]).is_file()


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    with LoopbackSSHD(tmp_path_factory.mktemp("sshd")) as b:
        yield b


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    return digits_artifacts(tmp_path_factory.mktemp("arm64-models"))


def board_target(sshd: LoopbackSSHD, **options):
    profile = load_profile(BOARD / "emulated-arm64.toml")
    return get_target(sshd.uri, profile, identity=str(sshd.user_key_path), known_hosts=str(sshd.known_hosts),
                      **options)


def checksum(result: ProfileResult) -> float:
    return json.loads(result.raw_output.splitlines()[0])["output_checksum"]


@pytest.mark.slow
@needs_sshd
@needs_board
@pytest.mark.parametrize("fmt", ["float32", "int8"])
def test_profile_over_ssh_agrees_with_x86(sshd, artifacts, fmt):
    models, inputs, _ = artifacts
    settings = RunSettings(runs=EMULATED.runs, warmup=EMULATED.warmup, timeout_s=EMULATED.timeout_s,
                           input_path=str(inputs[fmt]))
    with board_target(sshd) as board:
        remote = board.profile(models[fmt], settings)
    local = LocalTarget(parse_target_uri("local")).profile(models[fmt], settings)
    assert remote.device.extra["machine"] == "aarch64" and local.device.extra["machine"] == "x86_64"
    assert remote.device.runtime == "ai_edge_litert"
    # same artifact, same input batch. int8: the checksum sums the raw int8 outputs; the ARM and x86 kernels
    # requantize in different orders, so an output may differ by one step (seen on 100 digits inputs: 1 LSB)
    if fmt == "int8":
        assert abs(checksum(remote) - checksum(local)) <= 10  # 10 outputs, at most one step each
    else:
        assert abs(checksum(remote) - checksum(local)) <= 1e-5 * max(1.0, abs(checksum(local)))
    # the emulator's latency is labelled, never a device measurement; the x86 one is not
    assert remote.estimate and remote.device.extra["latency"] == EMULATED_LATENCY
    assert any(EMULATED_LATENCY in n for n in remote.notes)
    assert not local.estimate and "latency" not in local.device.extra
    assert remote.latency.count == EMULATED.runs and remote.latency.min_us > 0


@pytest.mark.slow
@needs_sshd
@needs_board
def test_int8_sparse_xnnpack_is_refused_with_the_runtime_message(sshd, artifacts):
    models, inputs, _ = artifacts
    settings = RunSettings(runs=2, warmup=0, timeout_s=300, input_path=str(inputs["int8-sparse"]))
    with board_target(sshd) as board:
        with pytest.raises(TargetError) as refused:
            board.profile(models["int8-sparse"], settings)
        # the built-in kernels (no XNNPACK) do take the sparse int8 model on aarch64
        builtin = board.profile(models["int8-sparse"], RunSettings(
            runs=2, warmup=0, timeout_s=300, delegate="none", input_path=str(inputs["int8-sparse"])))
    message = refused.value.message
    assert "model does not load" in message and "XNNPack" in message and "failed to prepare" in message
    dense = LocalTarget(parse_target_uri("local")).profile(
        models["int8"], RunSettings(runs=2, warmup=0, delegate="none", input_path=str(inputs["int8"])))
    assert abs(checksum(builtin) - checksum(dense)) <= 10  # the sparse encoding holds the same int8 weights


@pytest.mark.slow
@needs_sshd
@needs_board
def test_shipped_profile_without_a_wrapper_path_names_the_option(sshd, artifacts):
    models, _, _ = artifacts
    if any(Path(p, "python3-aarch64").exists() for p in os.environ.get("PATH", "").split(os.pathsep) if p):
        pytest.skip("a python3-aarch64 is on PATH, so the shipped profile finds it")
    with get_target(sshd.uri, load_profile("emulated-arm64"), identity=str(sshd.user_key_path),
                    known_hosts=str(sshd.known_hosts)) as board, pytest.raises(TargetError) as e:
        board.profile(models["float32"], EMULATED)
    assert "python3-aarch64 was not found" in e.value.message and "--option python=" in e.value.hint


@pytest.mark.slow
@needs_sshd
@needs_board
def test_timeout_kills_the_emulated_runner(sshd, artifacts):
    """The wrapper execs qemu, so the PID the target records is the emulator's and the kill reaches it."""
    models, inputs, _ = artifacts
    settings = RunSettings(runs=10_000_000, warmup=0, timeout_s=15, input_path=str(inputs["float32"]))
    with board_target(sshd) as board:
        with pytest.raises(TargetError, match="took longer than 15 s"):
            board.profile(models["float32"], settings)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            left = [cmdline(p) for p in descendants(sshd.proc.pid) if "qemu-aarch64" in cmdline(p)]
            if not left:
                break
            time.sleep(0.2)
    assert not left, f"emulated runners still running after the timeout: {left}"


@pytest.mark.slow
@needs_sshd
@needs_board
def test_compiled_model_api_profiles_on_the_board_and_locally_with_per_op_times(sshd, artifacts):
    """`--option api=compiled` times LiteRT's CompiledModel API (CPU accelerator) instead of the Interpreter,
    over SSH on aarch64 and on the host; outputs agree with the Interpreter's, and the per-op profile (the
    CompiledModel's own profiler) comes back from the board too."""
    models, inputs, _ = artifacts
    settings = RunSettings(runs=EMULATED.runs, warmup=EMULATED.warmup, timeout_s=EMULATED.timeout_s,
                           input_path=str(inputs["int8"]))
    with board_target(sshd, api="compiled", op_profiling=True) as board:
        remote = board.profile(models["int8"], settings)
    local = LocalTarget(parse_target_uri("local"), api="compiled").profile(models["int8"], settings)
    interpreter = LocalTarget(parse_target_uri("local")).profile(models["int8"], settings)
    assert remote.device.extra["machine"] == "aarch64" and remote.device.runtime == "ai_edge_litert CompiledModel"
    assert local.device.runtime == "ai_edge_litert CompiledModel" and interpreter.device.runtime == "ai_edge_litert"
    assert any("CompiledModel" in n for n in remote.notes) and not any("CompiledModel" in n for n in interpreter.notes)
    assert checksum(local) == checksum(interpreter)  # same kernels (XNNPACK) behind both APIs on x86
    assert abs(checksum(remote) - checksum(local)) <= 10  # aarch64 int8 may requantize one step apart
    assert remote.estimate and remote.latency.count == EMULATED.runs
    assert remote.op_profile and "error" not in remote.op_profile, remote.op_profile
    with pytest.raises(TargetError, match="not one of interpreter, compiled"):
        LocalTarget(parse_target_uri("local"), api="compiledmodel")
