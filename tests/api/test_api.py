"""The Python API (kit.api) and the commands built on it: typed results, strict --json, quiet logs."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import kit
from kit.cli import NOISE, main
from kit.core.tflite_file import TFLiteInfo
from tests.support.shared import shared_file

RESNET_INT8 = "models/mlperf-tiny/pretrainedResnet_quant.tflite"
RESNET_KERAS = "models/mlperf-tiny/pretrainedResnet.h5"
#: the lines TensorFlow, absl and CUDA probing print on import on this stack
TF_NOISE = ("absl::InitializeLog", "cudart_stub.cc", "cuda_platform.cc", "cpu_feature_guard.cc", "cuInit")


@pytest.fixture(scope="module")
def cifar_npz(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("data") / "cifar.npz"
    x = rng.random((40, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, 40)
    np.savez(path, x_train=x, y_train=y, x_test=x, y_test=y)
    return path


def test_the_api_is_exported_with_docstrings_that_say_why():
    for name in ("compress", "inspect", "evaluate", "profile", "firmware"):
        fn = getattr(kit, name)
        assert callable(fn) and fn.__module__ == "kit.api", name
        assert len((fn.__doc__ or "").split()) >= 12, f"kit.{name} needs a docstring"
    assert "profile" in dir(kit)


def test_inspect_returns_the_reader_dataclass_and_the_command_prints_the_same(capsys):
    path = shared_file(RESNET_INT8)
    info = kit.inspect(path)
    assert isinstance(info, TFLiteInfo) and info.size_bytes == path.stat().st_size
    assert main(["inspect", str(path), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["size_bytes"] == info.size_bytes and d["weight_bytes"] == info.weight_bytes
    assert len(d["ops"]) == len(info.ops)


def test_evaluate_returns_typed_results_and_eval_json_is_strict_and_equal(cifar_npz, capsys):
    path = shared_file(RESNET_INT8)
    ev = kit.evaluate(path, data=str(cifar_npz), runtimes=["litert"], samples=20)
    assert isinstance(ev, kit.Evaluation) and ev.samples == 20
    assert [r.runtime for r in ev.results] == ["litert"] and ev.results[0].loads and ev.results[0].samples == 20
    assert main(["eval", str(path), "--data", str(cifar_npz), "--runtime", "litert", "--samples", "20", "--json"]) == 0
    out = capsys.readouterr().out
    d = json.loads(out, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert d["samples"] == 20
    assert [r["top1"] for r in d["results"]] == [r.top1 for r in ev.results]
    with pytest.raises(kit.KitError, match="unknown runtime"):
        kit.evaluate(path, data=str(cifar_npz), runtimes=["tpu"])


@pytest.mark.slow  # a fresh process imports TensorFlow (10-30 s)
def test_a_command_that_loads_tensorflow_prints_no_log_noise_and_progress_lines_off_a_tty(cifar_npz, tmp_path):
    """A real `kit eval` of a Keras model in a subprocess whose stderr is a pipe, as in CI."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "ABSL_MIN_LOG_LEVEL")}
    cmd = [sys.executable, "-m", "kit", "eval", str(shared_file(RESNET_KERAS)), "--data", str(cifar_npz), "--json"]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["results"][0]["runtime"] == "keras"
    noise = [ln for ln in proc.stderr.splitlines() if any(n in ln for n in TF_NOISE)]
    assert noise == [], noise
    steps = [ln for ln in proc.stderr.splitlines() if ln.startswith("kit: ")]
    assert any("loading" in ln for ln in steps) and any("keras: running 40 samples" in ln for ln in steps), \
        proc.stderr
    assert not re.search(r"\x1b\[", proc.stderr)  # no terminal control codes in a log file


def test_the_noise_filter_keeps_the_kits_own_lines():
    for line in ("I0000 00:00:1796021689.728765    2860 cudart_stub.cc:31] Could not find cuda drivers",
                 "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
                 "INFO: [environment.cc:36] Creating LiteRT environment with options",
                 "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."):
        assert NOISE.match(line), line
    for line in ("error: model file x does not exist", "  hint: check the path", "kit: litert: running 40 samples",
                 "Traceback (most recent call last):", "WARNING: the board is hot"):
        assert not NOISE.match(line), line
