"""SSHTarget against a real OpenSSH server on 127.0.0.1; the "board" is this machine and its venv's Python."""
from __future__ import annotations

import base64
import glob
import hashlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from kit.core.errors import TargetError
from tests.support.loopback_sshd import SSHD, LoopbackSSHD, cmdline, descendants
from targets.base import RunSettings
from targets.local import LocalTarget
from targets.profiles import load_profile
from targets.registry import get_target
from targets.uri import parse_target_uri
from .tiny_model import write_tiny_model

pytestmark = pytest.mark.skipif(not SSHD.exists(), reason="/usr/sbin/sshd is absent: apt-get install openssh-server")

QUICK = RunSettings(runs=5, warmup=1, timeout_s=120)


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    with LoopbackSSHD(tmp_path_factory.mktemp("sshd")) as b:
        yield b


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("model") / "tiny.tflite")


def connect(board: LoopbackSSHD, **options):
    options.setdefault("identity", str(board.user_key_path))
    options.setdefault("known_hosts", str(board.known_hosts))
    options.setdefault("python", sys.executable)
    profile = options.pop("profile", None)
    return get_target(board.uri, profile, **options)


def run_dirs() -> set[str]:
    return set(glob.glob("/tmp/kit-ssh.*"))


def expected_fingerprint(board: LoopbackSSHD) -> str:
    blob = base64.b64decode(board.host_key.get_base64())
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def test_profile_end_to_end_matches_local_run(board, model):
    before = run_dirs()
    settings = RunSettings(runs=30, warmup=3, timeout_s=120)
    with connect(board, profile="raspberry-pi-4") as target:
        result = target.profile(model, settings)
    local = LocalTarget(parse_target_uri("local")).profile(model, settings)
    from importlib.metadata import version

    assert result.latency.count == 30
    assert result.latency.min_us > 0 and result.init_us > 0
    assert result.device.runtime == "ai_edge_litert"
    assert result.device.runtime_version == version("ai-edge-litert")
    assert "Linux" in result.device.os and result.device.extra["ssh"].endswith(f"127.0.0.1:{board.port}")
    assert result.artifact.sha256 == hashlib.sha256(model.read_bytes()).hexdigest()
    assert result.peak_memory_bytes > 10_000_000
    # same model, same seeded input: the board computed exactly what the host computes
    remote_out = json.loads(result.raw_output.splitlines()[0])["output_checksum"]
    local_out = json.loads(local.raw_output.splitlines()[0])["output_checksum"]
    assert remote_out == local_out
    assert result.energy_uj_per_inference is None and "no power telemetry" in result.energy_note
    remote_dir = next(n for n in result.notes if n.startswith("ran in ")).split()[2]
    assert remote_dir.startswith("/tmp/kit-ssh.") and not os.path.exists(remote_dir)
    assert run_dirs() == before


def test_device_info_through_ssh_config_alias(board, tmp_path):
    import getpass

    config = tmp_path / "ssh_config"
    config.write_text(f"Host pi-on-loopback\n  HostName 127.0.0.1\n  Port {board.port}\n  User {getpass.getuser()}\n"
                      f"  IdentityFile {board.user_key_path}\n  UserKnownHostsFile {board.known_hosts}\n")
    target = get_target("ssh://pi-on-loopback", None, ssh_config=str(config), python=sys.executable)
    with target:
        info = target.device_info()
    assert target.port == board.port and target.identities == [str(board.user_key_path)]
    assert info.runtime == "ai_edge_litert" and info.cpu


def test_unknown_host_key_is_refused_with_its_fingerprint(board, tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text("")
    with pytest.raises(TargetError) as e:
        connect(board, known_hosts=str(known)).device_info()
    text = f"{e.value.message} {e.value.hint}"
    assert f"[127.0.0.1]:{board.port}" in text
    assert expected_fingerprint(board) in text
    assert "--trust-on-first-use" in text
    assert known.read_text() == ""


def test_trust_on_first_use_records_the_key(board, tmp_path):
    known = tmp_path / "sub" / "known_hosts"
    with connect(board, known_hosts=str(known), trust_on_first_use=True) as target:
        assert target.device_info().runtime == "ai_edge_litert"
    assert known.read_text().split() == [f"[127.0.0.1]:{board.port}", board.host_key.get_name(),
                                         board.host_key.get_base64()]
    with connect(board, known_hosts=str(known)) as again:  # recorded key: no flag needed now
        assert again.device_info().runtime == "ai_edge_litert"


def test_changed_host_key_is_refused_even_with_trust_on_first_use(board, tmp_path):
    import paramiko

    other = paramiko.ECDSAKey.generate()
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{board.port} {other.get_name()} {other.get_base64()}\n")
    before = known.read_text()
    with pytest.raises(TargetError) as e:
        connect(board, known_hosts=str(known), trust_on_first_use=True).device_info()
    assert "CHANGED" in e.value.message and expected_fingerprint(board) in e.value.message
    assert "ssh-keygen -R" in e.value.hint
    assert known.read_text() == before


@pytest.mark.parametrize("name", [
    "my model; touch MARKER.tflite",
    "it's \"quoted\" $(touch MARKER) `touch MARKER`.tflite",
    "-x; rm -rf ~ ; touch MARKER & .tflite",
])
def test_hostile_model_names_cannot_inject_commands(board, model, tmp_path, name):
    marker_dirs = [Path.cwd(), Path.home(), tmp_path, Path("/tmp")]
    hostile = tmp_path / name
    hostile.write_bytes(model.read_bytes())
    with connect(board) as target:
        result = target.profile(hostile, QUICK)
    assert result.latency.count == QUICK.runs
    assert result.artifact.path == str(hostile)
    for d in marker_dirs:
        assert not (d / "MARKER").exists(), f"a command was injected: {d / 'MARKER'} exists"


def test_failing_run_reports_the_runtime_error_and_removes_the_dir(board, tmp_path):
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(b"\x1c\x00\x00\x00TFL3" + os.urandom(2000))
    before = run_dirs()
    with connect(board) as target, pytest.raises(TargetError) as e:
        target.profile(corrupt, QUICK)
    assert "does not load on ai_edge_litert" in e.value.message
    assert run_dirs() == before


def test_run_timeout_kills_the_remote_runner(board, model, tmp_path):
    slow = tmp_path / "slow-model.tflite"
    slow.write_bytes(model.read_bytes())
    before = run_dirs()
    t0 = time.monotonic()
    with connect(board) as target, pytest.raises(TargetError) as e:
        target.profile(slow, RunSettings(runs=10**9, warmup=0, timeout_s=3))
    assert "took longer than 3 s" in e.value.message
    assert time.monotonic() - t0 < 30
    time.sleep(0.5)
    assert not [p for p in descendants(board.proc.pid) if "slow-model.tflite" in cmdline(p)]
    assert run_dirs() == before


def test_core_mask_goes_through_taskset(board, model):
    with connect(board) as target:
        ok = target.profile(model, RunSettings(runs=3, warmup=0, core_mask="1"))
        assert ok.latency.count == 3
        with pytest.raises(TargetError) as e:  # CPU 40 does not exist here: taskset itself must refuse
            target.profile(model, RunSettings(runs=3, warmup=0, core_mask="10000000000"))
    assert "taskset" in f"{e.value.message} {e.value.hint}"


def test_missing_remote_python_is_named(board, model):
    with connect(board, python="/nonexistent/python3") as target, pytest.raises(TargetError) as e:
        target.profile(model, QUICK)
    assert "/nonexistent/python3 was not found" in e.value.message


def test_android_delegates_are_refused(board, model):
    with connect(board) as target, pytest.raises(TargetError, match="GPU and NNAPI"):
        target.profile(model, RunSettings(delegate="gpu"))


def test_wrong_key_and_closed_port_fail_fast(board, tmp_path):
    import paramiko

    stranger = tmp_path / "stranger_key"
    paramiko.ECDSAKey.generate().write_private_key_file(str(stranger))
    with pytest.raises(TargetError, match="authentication"):
        connect(board, identity=str(stranger)).device_info()
    closed = LoopbackSSHD(tmp_path / "closed")  # never started: nothing listens on its port
    t0 = time.monotonic()
    with pytest.raises(TargetError, match="cannot connect"):
        get_target(closed.uri, None, identity=str(board.user_key_path), known_hosts=str(board.known_hosts),
                   connect_timeout="5").device_info()
    assert time.monotonic() - t0 < 5


def _profile_in_thread(target, model, settings):
    outcome: dict = {}

    def work():
        try:
            outcome["result"] = target.profile(model, settings)
        except Exception as e:  # the test inspects whatever came out
            outcome["error"] = e

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread, outcome


def _wait_for_runner(sshd: LoopbackSSHD, name: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(name in cmdline(p) for p in descendants(sshd.proc.pid)):
            time.sleep(0.3)  # let it get into the timed loop
            return
        time.sleep(0.05)
    raise AssertionError("the runner never started on the board")


def test_connection_dropped_mid_run_is_a_clear_error_naming_the_remote_dir(model, tmp_path):
    victim = tmp_path / "victim.tflite"
    victim.write_bytes(model.read_bytes())
    with LoopbackSSHD(tmp_path / "sshd") as sshd:
        target = get_target(sshd.uri, None, identity=str(sshd.user_key_path), known_hosts=str(sshd.known_hosts),
                            python=sys.executable, connect_timeout=3)
        thread, outcome = _profile_in_thread(target, victim, RunSettings(runs=10**8, warmup=0, timeout_s=600))
        _wait_for_runner(sshd, "victim.tflite")
        killed = time.monotonic()
        sshd.kill_tree()
        thread.join(30)
        assert not thread.is_alive(), "profile() hung after the server died"
        assert time.monotonic() - killed < 15
    error = outcome.get("error")
    assert isinstance(error, TargetError), outcome
    assert "lost the SSH connection" in error.message
    remote_dir = error.hint.split("remote temp dir ")[1].split()[0]
    assert remote_dir.startswith("/tmp/kit-ssh.")
    # the server is gone, so the directory really is left behind, as the hint says
    assert os.path.isdir(remote_dir) and (Path(remote_dir) / "victim.tflite").exists()
    import shutil

    shutil.rmtree(remote_dir)


def test_frozen_board_is_detected_by_keepalive(model, tmp_path):
    frozen = tmp_path / "frozen.tflite"
    frozen.write_bytes(model.read_bytes())
    with LoopbackSSHD(tmp_path / "sshd") as sshd:
        target = get_target(sshd.uri, None, identity=str(sshd.user_key_path), known_hosts=str(sshd.known_hosts),
                            python=sys.executable, connect_timeout=2, alive_interval=1)
        thread, outcome = _profile_in_thread(target, frozen, RunSettings(runs=10**8, warmup=0, timeout_s=600))
        _wait_for_runner(sshd, "frozen.tflite")
        sshd.kill_tree(signal.SIGSTOP)
        try:
            thread.join(30)
            assert not thread.is_alive(), "profile() hung on a frozen board"
        finally:
            sshd.kill_tree(signal.SIGCONT)
        remote_dirs = [d for d in glob.glob("/tmp/kit-ssh.*") if (Path(d) / "frozen.tflite").exists()]
    error = outcome.get("error")
    assert isinstance(error, TargetError), outcome
    assert "no answer to a keepalive" in error.message
    import shutil

    for d in remote_dirs:
        shutil.rmtree(d, ignore_errors=True)


def test_kit_profile_cli_over_ssh(board, model, tmp_path, capsys):
    from kit.cli import main

    out_json = tmp_path / "result.json"
    code = main(["profile", str(model), "--target", board.uri, "--profile", "raspberry-pi-5", "--runs", "5",
                 "--warmup", "1", "--option", f"identity={board.user_key_path}",
                 "--option", f"known_hosts={board.known_hosts}", "--option", f"python={sys.executable}",
                 "--option", "connect_timeout=10", "--json", str(out_json)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "tiny.tflite" in printed and board.uri in printed
    [saved] = json.loads(out_json.read_text())
    assert saved["latency"]["count"] == 5
    assert saved["energy_uj_per_inference"] is None
    assert "vcgencmd" in saved["energy_note"]  # the loopback board is no Raspberry Pi 5
    assert load_profile("raspberry-pi-5").energy["method"] == "rpi5-pmic"


def test_input_batch_is_uploaded_and_used(board, model, tmp_path):
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    batch = np.linspace(-1, 1, 16, dtype=np.float32).reshape(1, 16)
    np.save(tmp_path / "batch.npy", batch)
    it = Interpreter(model_path=str(model))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], batch)
    it.invoke()
    expected = float(np.asarray(it.get_tensor(it.get_output_details()[0]["index"]), dtype=np.float64).sum())
    with connect(board) as target:
        result = target.profile(model, RunSettings(runs=2, warmup=0, input_path=str(tmp_path / "batch.npy")))
    assert json.loads(result.raw_output.splitlines()[0])["output_checksum"] == pytest.approx(expected, rel=1e-6)
