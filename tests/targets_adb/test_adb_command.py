"""ADB target pieces that need no device: URIs, the quoted benchmark command, missing binaries."""
from __future__ import annotations

import shlex

import pytest

from kit.core.errors import TargetError
from targets.adb import ADBTarget, benchmark_command, parse_adb_uri
from targets.base import RunSettings
from targets.profiles import DeviceProfile
from targets.registry import get_target
from targets.uri import parse_target_uri


def test_uri_forms():
    assert parse_adb_uri("adb://R58M12ABCDE") == ("R58M12ABCDE", None, None)  # case kept
    assert parse_adb_uri("adb://R58M12ABCDE@buildhost") == ("R58M12ABCDE", "buildhost", 5037)
    assert parse_adb_uri("adb://192.168.1.7:5555@127.0.0.1:5038") == ("192.168.1.7:5555", "127.0.0.1", 5038)
    assert parse_adb_uri("adb://emulator-5554@[::1]:5037") == ("emulator-5554", "::1", 5037)
    assert parse_adb_uri("adb://") == (None, None, None)
    with pytest.raises(TargetError, match="out of range"):
        parse_adb_uri("adb://X@host:70000")
    target = get_target("adb://192.168.1.7:5555@127.0.0.1:5038")
    assert isinstance(target, ADBTarget)
    assert target._adb_flags() == ["-H", "127.0.0.1", "-P", "5038", "-s", "192.168.1.7:5555"]


def test_benchmark_command_quotes_every_argument():
    model = "/data/local/tmp/prunekit-ab/m'; touch pwned; echo \"$(id)\" `x`.tflite"
    settings = RunSettings(threads=4, warmup=2, runs=7, delegate="none", core_mask="f0")
    cmd = benchmark_command("/data/local/tmp/prunekit-ab/benchmark_model", model, settings, op_profiling=True)
    assert shlex.split(cmd) == [
        "taskset", "f0", "/data/local/tmp/prunekit-ab/benchmark_model", f"--graph={model}", "--num_threads=4",
        "--warmup_runs=2", "--num_runs=7", "--warmup_min_secs=0", "--min_secs=0", "--use_xnnpack=false",
        "--use_gpu=false", "--use_nnapi=false", "--enable_op_profiling=true"]


def test_instances_are_refused_for_benchmark_model():
    with pytest.raises(TargetError, match="one interpreter per call"):
        benchmark_command("/b", "/m", RunSettings(runs=10, instances=2))


@pytest.mark.parametrize("delegate, flags", [
    ("default", ("true", "false", "false")), ("xnnpack", ("true", "false", "false")),
    ("gpu", ("false", "true", "false")), ("nnapi", ("false", "false", "true")),
])
def test_delegate_flags(delegate, flags):
    words = shlex.split(benchmark_command("/b", "/m", RunSettings(delegate=delegate)))
    assert [w.split("=")[1] for w in words if w.split("=")[0] in ("--use_xnnpack", "--use_gpu", "--use_nnapi")] \
        == list(flags)
    assert "taskset" not in words


def test_edgetpu_delegate_is_refused():
    with pytest.raises(TargetError, match="not available on Android"):
        benchmark_command("/b", "/m", RunSettings(delegate="edgetpu"))


def test_missing_binary_says_where_to_get_it(tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(b"x")
    target = ADBTarget(parse_target_uri("adb://SERIAL"), None, adb="/nonexistent/adb")
    with pytest.raises(TargetError) as err:
        target.deploy(model)
    assert "no benchmark_model binary" in err.value.message
    assert "cannot download" in err.value.hint and "--benchmark-binary" in err.value.hint
    target = ADBTarget(parse_target_uri("adb://SERIAL"), None, benchmark_binary=str(tmp_path / "nope"))
    with pytest.raises(TargetError, match="does not exist"):
        target.deploy(model)


def test_binary_from_the_device_profile_and_missing_adb(tmp_path):
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF")
    model = tmp_path / "m.tflite"
    model.write_bytes(b"x")
    profile = DeviceProfile(name="phone", kind="android", benchmark_binary=str(binary))
    target = ADBTarget(parse_target_uri("adb://SERIAL"), profile, adb=str(tmp_path / "no-adb"))
    assert target.benchmark_binary == str(binary)
    with pytest.raises(TargetError, match="adb program") as err:
        target.deploy(model)
    assert "apt-get install adb" in err.value.hint


def test_cli_options_arrive_as_text():
    target = ADBTarget(parse_target_uri("adb://S"), None, op_profiling="true", command_timeout_s="5")
    assert target.op_profiling is True and target.command_timeout_s == 5.0
    with pytest.raises(TargetError):
        ADBTarget(parse_target_uri("adb://S"), None, op_profiling="maybe")
    with pytest.raises(TargetError, match="trust_on_first_use do not apply"):
        ADBTarget(parse_target_uri("adb://S"), None, trust_on_first_use=True)
