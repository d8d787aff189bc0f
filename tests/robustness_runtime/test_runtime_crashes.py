"""Real one-byte corruptions of the MLPerf Tiny KWS model that crash TFLite Micro: the kit reports them, and lives.

The mutations were found by flipping single bytes of kws_ref_model.tflite and loading each mutant in a
forked child; they are kept as (offset, byte) so the tests are deterministic.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np

from kit.convert import check as checks
from tests.support.shared import shared_file

KWS = "models/mlperf-tiny/kws_ref_model.tflite"
#: passes the .tflite reader; TFLM divides by zero (SIGFPE) while preparing it, LiteRT runs it
FPE = (27716, 16)
#: an operator input index out of range; TFLM dereferences it (SIGSEGV) while loading
SEGV = (25880, 164)


def _mutant(tmp_path, mutation: tuple[int, int], name: str):
    data = bytearray(shared_file(KWS).read_bytes())
    offset, byte = mutation
    assert data[offset] != byte
    data[offset] = byte
    path = tmp_path / name
    path.write_bytes(bytes(data))
    return path


def test_load_error_names_the_signal_instead_of_crashing(tmp_path):
    model = _mutant(tmp_path, SEGV, "kws-segv.tflite").read_bytes()
    error = checks.load_error(model, "tflm", name="kws-segv.tflite")
    assert error is not None and error.startswith("tflm crashed (SIGSEGV) loading kws-segv.tflite"), error


def test_check_records_the_crash_and_still_checks_the_other_runtimes(tmp_path):
    model = _mutant(tmp_path, FPE, "kws-fpe.tflite").read_bytes()
    x = np.random.default_rng(0).random((6, 49, 10, 1), dtype=np.float32)
    results = {r.runtime: r for r in checks.check(model, x, None, None, name="kws-fpe.tflite")}
    assert set(results) == {"litert", "litert-builtin", "tflm"}
    tflm = results["tflm"]
    assert not tflm.loads and tflm.error.startswith("tflm crashed (SIGFPE)") and "kws-fpe.tflite" in tflm.error
    assert results["litert"].loads and results["litert"].samples == 6


def test_check_of_the_intact_model_is_unchanged():
    model = shared_file(KWS).read_bytes()
    x = np.random.default_rng(1).random((4, 49, 10, 1), dtype=np.float32)
    (tflm,) = checks.check(model, x, None, None, runtimes=("tflm",))
    assert tflm.loads and tflm.samples == 4 and tflm.seconds is not None and tflm.seconds > 0
    out = checks.predict(model, "litert", x)
    assert out.shape == (4, 12) and np.allclose(out.sum(axis=1), 1, atol=0.02)  # softmax outputs


def _kws_npz(tmp_path):
    rng = np.random.default_rng(2)
    path = tmp_path / "kws.npz"
    np.savez(path, x_train=rng.random((16, 49, 10, 1), dtype=np.float32), y_train=rng.integers(0, 12, 16),
             x_test=rng.random((6, 49, 10, 1), dtype=np.float32), y_test=rng.integers(0, 12, 6))
    return path


def test_kit_eval_survives_a_model_that_crashes_tflm(tmp_path):
    model = _mutant(tmp_path, FPE, "kws-fpe.tflite")
    proc = subprocess.run([sys.executable, "-m", "kit", "eval", str(model), "--data", str(_kws_npz(tmp_path)),
                           "--runtime", "tflm", "--runtime", "litert"], capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 1, 2), proc.returncode  # never a signal
    text = proc.stdout + proc.stderr
    assert "tflm crashed (SIGFPE) running kws-fpe.tflite" in text, text
    assert "Traceback" not in text


def test_kit_eval_exits_non_zero_when_no_runtime_survives(tmp_path):
    model = _mutant(tmp_path, FPE, "kws-fpe.tflite")
    proc = subprocess.run([sys.executable, "-m", "kit", "eval", str(model), "--data", str(_kws_npz(tmp_path)),
                           "--runtime", "tflm"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert "tflm crashed (SIGFPE)" in proc.stdout


def test_kit_emulate_refuses_a_model_that_crashes_tflm(tmp_path):
    model = _mutant(tmp_path, FPE, "kws-fpe.tflite")
    proc = subprocess.run([sys.executable, "-m", "kit", "emulate", str(model), "--pty"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "tflm crashed (SIGFPE) loading kws-fpe.tflite" in proc.stderr
    assert "hint:" in proc.stderr and "serial://" not in proc.stdout
