"""The ADB target end to end: the real `adb` client and server, an emulated phone.

The phone is `adbd_emulator` (adbd's transport and sync protocols over TCP, a
sandbox directory as its file system); its benchmark_model is the labelled
stand-in `benchmark_model_standin.py`, which runs the model with LiteRT.
"""
from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from .adbd_emulator import AdbdEmulator, EmulatedPhone
from tests.support.shared import shared_file
from kit.core.errors import TargetError
from targets.adb import ADBTarget
from targets.base import RunSettings
from targets.profiles import DeviceProfile
from targets.uri import parse_target_uri

ADB = shutil.which("adb")
pytestmark = pytest.mark.skipif(ADB is None, reason="`adb` is not installed (Debian package adb)")

STANDIN = Path(__file__).with_name("benchmark_model_standin.py")
PROPS = {"ro.product.model": "Prunekit Emulated Phone", "ro.build.version.release": "14",
         "ro.build.version.sdk": "34", "ro.board.platform": "emu", "ro.soc.manufacturer": "Emulated",
         "ro.soc.model": "EMU-1", "ro.product.cpu.abi": "x86_64"}
ENERGY = {"method": "android-battery", "current_unit": "uA", "voltage_unit": "uV", "discharge": "positive",
          "interval_s": 0.01}
SMALL = RunSettings(threads=1, warmup=1, runs=5, timeout_s=60)


@dataclass
class AdbServer:
    port: int
    env: dict

    def adb(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run([ADB, "-P", str(self.port), *args], capture_output=True, text=True, env=self.env,
                              timeout=timeout)

    def attach(self, emulator: AdbdEmulator) -> None:
        assert "connected" in self.adb("connect", emulator.serial).stdout
        self.adb("-s", emulator.serial, "wait-for-device", timeout=20).check_returncode()

    def uri(self, emulator: AdbdEmulator) -> str:
        return f"adb://{emulator.serial}@127.0.0.1:{self.port}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("adb_home")
    port = _free_port()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "ANDROID_ADB_SERVER_PORT": str(port)}
    srv = AdbServer(port, env)
    srv.adb("start-server").check_returncode()
    yield srv
    srv.adb("kill-server")


def _phone(tmp_path_factory, server: AdbServer) -> tuple[EmulatedPhone, AdbdEmulator]:
    phone = EmulatedPhone(tmp_path_factory.mktemp("phone"), PROPS)
    phone.set_battery(status="Discharging", usb_online=False, current_now=400000, voltage_now=3850000)
    emulator = AdbdEmulator(phone)
    server.attach(emulator)
    return phone, emulator


@pytest.fixture(scope="module")
def device(tmp_path_factory, server):
    phone, emulator = _phone(tmp_path_factory, server)
    yield phone, emulator
    server.adb("disconnect", emulator.serial)
    emulator.stop()


@pytest.fixture(scope="module")
def standin(tmp_path_factory) -> Path:
    """The stand-in with a shebang for this interpreter, pushed as the 'benchmark_model binary'."""
    path = tmp_path_factory.mktemp("bin") / "benchmark_model"
    path.write_text(f"#!{sys.executable}\n" + STANDIN.read_text())
    return path


@pytest.fixture
def target(server, device, standin):
    _, emulator = device
    profile = DeviceProfile(name="emulated-phone", kind="android", energy=ENERGY)
    with ADBTarget(parse_target_uri(server.uri(emulator)), profile, benchmark_binary=str(standin), adb=ADB,
                   command_timeout_s=30) as t:
        yield t


def _run_dirs(phone: EmulatedPhone) -> list[Path]:
    return sorted((phone.root / "data/local/tmp").glob("prunekit-*"))


def test_profile_end_to_end_with_energy(target, device):
    phone, _ = device
    model = shared_file("models/mlperf-tiny/pretrainedResnet_quant.tflite")  # > 64 KiB: several sync DATA chunks
    phone.set_battery(status="Discharging", usb_online=False, current_now=400000, voltage_now=3850000)
    # enough runs for a few dozen battery samples (the stand-in starts in a fraction of a second)
    settings = RunSettings(threads=1, warmup=2, runs=2000, core_mask="1", timeout_s=60)
    result = target.profile(model, settings)

    assert "[stand-in]" in result.raw_output.splitlines()[0]
    lat = result.latency
    assert lat.count == 2000 and 0 < lat.min_us <= lat.mean_us <= lat.max_us and lat.std_us >= 0
    assert lat.median_us is None and lat.p90_us is None  # the tool printed no percentiles: none invented
    assert result.init_us > 0 and result.first_inference_us > 0
    assert result.peak_memory_bytes > 10 * 2**20 and "periodically" in result.memory_method
    assert result.device.name == "Prunekit Emulated Phone" and result.device.os == "Android 14 (API 34)"
    assert result.device.cpu == "Emulated EMU-1" and result.device.extra["cores"] >= 1
    assert result.artifact.bytes == model.stat().st_size
    assert any(n.startswith("ran: taskset 1 ") and "--num_runs=2000" in n for n in result.notes)
    # 400000 uA x 3850000 uV = 0.4 A x 3.85 V = 1.54 W; 1.54 W x mean us = uJ per inference
    assert result.energy_method == "android-battery"
    assert result.energy_uj_per_inference == pytest.approx(1.54 * lat.mean_us, rel=1e-9)
    assert "1540 mW" in result.energy_note
    assert "400000 3850000" in result.raw_output  # the samples are kept for audit
    assert _run_dirs(phone) == []


def test_energy_refused_while_charging(target, device):
    phone, _ = device
    model = shared_file("models/tflm-examples/hello_world_float.tflite")
    phone.set_battery(status="Charging", usb_online=True, current_now=-900000, voltage_now=4200000)
    try:
        result = target.profile(model, SMALL)
    finally:
        phone.set_battery(status="Discharging", usb_online=False, current_now=400000, voltage_now=3850000)
    assert result.latency.count == 5
    assert result.energy_uj_per_inference is None and result.energy_method is None
    assert "'Charging'" in result.energy_note and "USB powered" in result.energy_note
    health = target.health()
    assert health["reachable"] and health["battery_status"] == "Discharging" and health["charging"] is False
    assert health["on_battery"] and health["battery_level"] == 80 and health["free_storage_bytes"] > 0


def test_nonzero_exit_reports_the_tool_output(target, device, tmp_path):
    phone, _ = device
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"this is not a flatbuffer" * 10)
    with pytest.raises(TargetError) as err:
        target.profile(bad, SMALL)
    assert "exited with status 1" in err.value.message
    assert "Failed to load model" in err.value.hint and "Benchmarking failed." in err.value.hint
    assert _run_dirs(phone) == []


def test_gpu_delegate_failure_is_an_error(target, device):
    phone, _ = device
    model = shared_file("models/tflm-examples/hello_world_float.tflite")
    with pytest.raises(TargetError, match="exited with status 1") as err:
        target.profile(model, RunSettings(delegate="gpu", runs=2, warmup=0))
    assert "GPU" in err.value.hint
    assert _run_dirs(phone) == []


def test_paths_with_spaces_and_quotes_cannot_inject(target, device, tmp_path):
    phone, _ = device
    folder = tmp_path / "my models; rm -rf ~"
    folder.mkdir()
    # each trick would leave a file in /data/local/tmp (the run directory's parent) if it ran
    name = "it's \"$(cd ..; touch INJECTED1)\" `cd ..; touch INJECTED2`; cd ..; touch INJECTED3 #.tflite"
    model = folder / name
    model.write_bytes(shared_file("models/tflm-examples/hello_world_float.tflite").read_bytes())
    result = target.profile(model, SMALL)
    assert result.latency.count == 5
    graph_line = next(ln for ln in result.raw_output.splitlines() if ln.startswith("INFO: Graph: ["))
    assert graph_line.endswith("/" + name + "]")  # the tool received the name unchanged
    for place in (phone.root, tmp_path):
        assert not list(place.rglob("INJECTED*"))
    assert _run_dirs(phone) == []


def test_device_offline_mid_push(server, standin, tmp_path_factory):
    phone, emulator = _phone(tmp_path_factory, server)
    emulator.drop_on_push = ".tflite"
    model = shared_file("models/tflm-examples/hello_world_float.tflite")
    target = ADBTarget(parse_target_uri(server.uri(emulator)), None, benchmark_binary=str(standin), adb=ADB,
                       command_timeout_s=20)
    started = time.monotonic()
    try:
        with pytest.raises(TargetError) as err:
            target.profile(model, SMALL)
    finally:
        server.adb("disconnect", emulator.serial)
    assert time.monotonic() - started < 60
    assert "pushing hello_world_float.tflite" in err.value.message
    assert "may remain on the device" in err.value.hint and "rm -rf /data/local/tmp/prunekit-" in err.value.hint
    assert target.health()["reachable"] is False


def test_unknown_device_is_a_clear_error(server, standin):
    target = ADBTarget(parse_target_uri(f"adb://127.0.0.1:1@127.0.0.1:{server.port}"), None,
                       benchmark_binary=str(standin), adb=ADB, command_timeout_s=20)
    model = shared_file("models/tflm-examples/hello_world_float.tflite")
    with pytest.raises(TargetError, match="is not available") as err:
        target.profile(model, SMALL)
    assert "adb devices" in err.value.hint


def test_kit_profile_command_with_a_toml_profile(server, device, standin, tmp_path, capsys):
    from kit.commands import profile as profile_command

    _, emulator = device
    toml = tmp_path / "phone.toml"
    toml.write_text(f'name = "emulated-phone"\nkind = "android"\nbenchmark_binary = "{standin}"\n'
                    '[energy]\nmethod = "android-battery"\ncurrent_unit = "uA"\nvoltage_unit = "uV"\n'
                    'discharge = "positive"\ninterval_s = 0.01\n')
    model = shared_file("models/mlperf-tiny/pretrainedResnet_quant.tflite")
    parser = argparse.ArgumentParser()
    profile_command.add_arguments(parser)
    out_json = tmp_path / "out.json"
    args = parser.parse_args([str(model), "--target", server.uri(emulator), "--profile", str(toml), "--runs", "2000",
                              "--warmup", "2", "--json", str(out_json), "--option", "op_profiling=false",
                              "--option", f"adb={ADB}"])
    assert profile_command.run(args) == 0
    printed = capsys.readouterr().out
    assert "pretrainedResnet_quant.tflite" in printed and "benchmark_model" in printed
    [saved] = json.loads(out_json.read_text())
    assert saved["latency"]["count"] == 2000 and saved["energy_method"] == "android-battery"
    assert saved["energy_uj_per_inference"] == pytest.approx(1.54 * saved["latency"]["mean_us"], rel=1e-9)


def test_emulator_round_trips_files_through_the_real_adb(server, device, tmp_path):
    """The emulated adbd's sync service, checked with plain `adb push` / `adb pull`."""
    _, emulator = device
    data = bytes(range(256)) * 1000  # 256 000 bytes: four sync DATA chunks
    (tmp_path / "up.bin").write_bytes(data)
    remote = "/data/local/tmp/roundtrip dir/up.bin"
    assert server.adb("-s", emulator.serial, "push", str(tmp_path / "up.bin"), remote).returncode == 0
    assert server.adb("-s", emulator.serial, "pull", remote, str(tmp_path / "down.bin")).returncode == 0
    assert (tmp_path / "down.bin").read_bytes() == data
    listing = server.adb("-s", emulator.serial, "shell", "ls -l '/data/local/tmp/roundtrip dir'").stdout
    assert "256000" in listing
    server.adb("-s", emulator.serial, "shell", "rm -rf '/data/local/tmp/roundtrip dir'").check_returncode()
    refused = server.adb("-s", emulator.serial, "push", str(tmp_path / "up.bin"), "/system/bin/up.bin")
    assert refused.returncode != 0 and "Permission denied" in refused.stderr + refused.stdout
