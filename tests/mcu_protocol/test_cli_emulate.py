"""`kit emulate` in its own process, profiled with `kit profile --target serial://…`."""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time

import pytest

from tests.support.processes import ctrl_c_enabled
from tests.support.shared import shared_file
from kit.cli import main
from .mcu_boards import KWS, MLPERF


def _first_line(proc: subprocess.Popen, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            return proc.stdout.readline().strip()
        assert proc.poll() is None, proc.stderr.read()
    raise AssertionError("kit emulate printed no port")


def test_kit_emulate_then_kit_profile(tmp_path, capsys):
    model = shared_file(KWS)
    proc = subprocess.Popen([sys.executable, "-m", "kit", "emulate", str(model), "--pty",
                             "--modelled-latency-us", "1234"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONFAULTHANDLER": "1"},  # SIGABRT dumps every thread
                            preexec_fn=ctrl_c_enabled)
    try:
        url = _first_line(proc)
        assert url.startswith("serial:///dev/pts/")
        out = tmp_path / "r.json"
        assert main(["profile", str(model), "--target", url, "--runs", "4", "--warmup", "1",
                     "--json", str(out)]) == 0
        assert "tflite-micro" in capsys.readouterr().out
        (result,) = json.loads(out.read_text())
        assert result["latency"]["mean_us"] == 1234.0 and result["estimate"] is True
        assert result["device"]["name"] == "prunekit-emulator"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            _, err = proc.communicate(timeout=20)
            pytest.fail(f"kit emulate did not stop within 20 s of Ctrl-C; where its threads were:\n{err[-4000:]}")
        assert code == 0


def test_kit_emulate_refuses_a_model_that_does_not_fit(capsys):
    vww = shared_file(f"{MLPERF}/vww_96_int8.tflite")
    assert main(["emulate", str(vww), "--flash-bytes", "1000"]) == 2
    assert "flash holds 1000" in capsys.readouterr().err
