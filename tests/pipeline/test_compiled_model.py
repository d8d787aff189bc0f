"""`litert-compiled`: LiteRT's CompiledModel API (CPU accelerator) as a check runtime beside the Interpreter API.

Every format the kit ships must compute on it what it computes on the Interpreter (`litert`); a recipe opts in
through [convert] targets; `kit eval` lists it; a LiteRT without the API reports so instead of failing.
"""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from kit.convert import check as checks
from kit.core.vocab import parse_format_name
from tests.support.shared import shared_file

#: every precision the converter makes, dense, and the sparse encoding of the float and int8 kernels (the model's
#: Dense kernels are 80 % zeros); left out for time: float16-sparse (identical outputs on both APIs when last
#: measured) and dynamic-sparse (refused by both, like int8-sparse)
FORMATS = ("float32", "float16", "dynamic", "int8", "float32-sparse", "int8-sparse")


def _pruned_copy(model):
    """The model with the smallest 80 % of every Dense kernel zeroed, so the sparse encodings are really sparse."""
    from tests.support.models import copy_model

    pruned = copy_model(model)
    for layer in pruned.layers:
        weights = layer.get_weights()
        if weights and weights[0].ndim == 2:
            kernel = weights[0]
            kernel[np.abs(kernel) < np.quantile(np.abs(kernel), 0.8)] = 0.0
            layer.set_weights([kernel, *weights[1:]])
    return pruned


def _outputs(data: bytes, runtime: str, x: np.ndarray, name: str) -> np.ndarray | str:
    """The runtime's outputs, or its error when it refuses the model."""
    from kit.core.errors import ModelError

    try:
        return checks.predict(data, runtime, x, name=name)
    except ModelError as e:
        return e.message


def test_every_format_computes_the_same_on_the_compiled_model_as_on_the_interpreter(digits, digits_lenet):
    """Top-1 agreement and output values of every format on both APIs. A format XNNPACK refuses (a sparse
    dynamic-range or int8 FullyConnected) must be refused by both, each with the runtime's own error."""
    from kit.convert.converter import ArtifactSpec, convert
    from kit.core.tflite_file import read_tflite
    from kit.core.vocab import MIN_AGREEMENT

    pruned = _pruned_copy(digits_lenet)
    x = digits.x_test
    reference = pruned.predict(x, batch_size=512, verbose=0).argmax(axis=1)
    refused = {}
    for name in FORMATS:
        precision, encoding = parse_format_name(name)
        data = convert(pruned, ArtifactSpec(precision, encoding), digits.x_calib)
        info = read_tflite(data)
        assert any(t.storage.startswith("sparse") for t in info.tensors) == (encoding == "sparse"), name
        a, b = _outputs(data, "litert", x, name), _outputs(data, "litert-compiled", x, name)
        if isinstance(a, str) or isinstance(b, str):
            refused[name] = (a if isinstance(a, str) else None, b if isinstance(b, str) else None)
            continue
        assert a.shape == b.shape == (len(x), 10)
        assert np.mean(b.argmax(axis=1) == reference) >= MIN_AGREEMENT[precision], name
        assert np.mean(a.argmax(axis=1) == b.argmax(axis=1)) >= 0.995, name
        # int8 outputs may differ by a quantization step or two; float ones by rounding
        out_q = info.tensor(info.outputs[0]).quantization
        tolerance = 2.5 * out_q.scale if precision == "int8" else 1e-3 * float(np.abs(a).max())
        assert float(np.abs(a - b).max()) <= tolerance, (name, float(np.abs(a - b).max()), tolerance)
    assert set(refused) <= {"dynamic-sparse", "int8-sparse"}, refused
    for name, (interpreter_error, compiled_error) in refused.items():
        assert interpreter_error and compiled_error, (name, interpreter_error, compiled_error)  # both, or neither
        assert "cannot load" in compiled_error and "FULLY_CONNECTED" in compiled_error, compiled_error
        assert "CompiledModel" in compiled_error and "CompiledModel" not in interpreter_error  # each API's own


def test_a_litert_without_the_compiled_model_api_is_reported_not_available(monkeypatch):
    """An older ai-edge-litert has no `ai_edge_litert.compiled_model`: the check says so, never crashes."""
    monkeypatch.setitem(sys.modules, "ai_edge_litert.compiled_model", None)  # what `import` meets on such a wheel
    model = shared_file("models/mlperf-tiny/ad01_int8.tflite").read_bytes()
    status, error, out, _ = checks._load_and_run(model, "litert-compiled", np.zeros((2, 640), np.float32))
    assert status == "load" and out is None
    assert error.startswith("not available on this LiteRT (ai-edge-litert ") and "compiled_model" in error, error


def test_kit_eval_lists_the_compiled_model_runtime_on_an_mlperf_model(tmp_path, capsys):
    from kit.cli import main

    model = shared_file("models/mlperf-tiny/kws_ref_model.tflite")
    rng = np.random.default_rng(0)
    data = tmp_path / "kws.npz"
    np.savez(data, x_train=rng.random((8, 49, 10, 1), dtype=np.float32), y_train=rng.integers(0, 12, 8),
             x_test=rng.random((24, 49, 10, 1), dtype=np.float32), y_test=rng.integers(0, 12, 24))
    assert main(["eval", str(model), "--data", str(data), "--json"]) == 0
    results = {r["runtime"]: r for r in json.loads(capsys.readouterr().out)["results"]}
    assert list(results) == ["litert", "litert-builtin", "tflm", "litert-compiled"]
    compiled, interpreter = results["litert-compiled"], results["litert"]
    assert compiled["loads"] and compiled["samples"] == 24 and compiled["error"] is None
    assert compiled["top1"] == interpreter["top1"]


@pytest.mark.slow
def test_a_recipe_that_targets_the_compiled_model_checks_and_ships_on_it(digits_lenet, tmp_path):
    from tests.support.recipes import compress_digits

    _, manifest = compress_digits(digits_lenet, tmp_path, 'name = "compiled"\n[quantize]\nmode = ["int8"]\n'
                                                          '[convert]\ntargets = ["litert", "litert-compiled"]\n')
    (int8,) = manifest["artifacts"]
    by_runtime = {c["runtime"]: c for c in int8["checks"]}
    assert list(by_runtime) == ["litert", "litert-builtin", "tflm", "litert-compiled"]
    assert by_runtime["litert-compiled"]["loads"] and by_runtime["litert-compiled"]["agreement"] >= 0.97
    assert int8["shipped"] and "litert-compiled" in int8["reason"]
