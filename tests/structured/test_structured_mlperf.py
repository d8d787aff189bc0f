"""Structured pruning of the real MLPerf Tiny models: consistent shapes, exact surgery, TFLite, LiteRT and TFLM."""
from __future__ import annotations

import numpy as np
import pytest
from tests.support.shared import shared_file
from .structured_helpers import masked_original, run_litert, run_tflm, to_tflite

import kit  # noqa: F401
from kit.techniques.structured import prune_channels

pytestmark = pytest.mark.slow  # real MLPerf Tiny models: conversions and runtimes take seconds each

MODELS = {"resnet8": "models/mlperf-tiny/pretrainedResnet.h5", "vww": "models/mlperf-tiny/vww_96.h5",
          "dscnn": "models/mlperf-tiny/kws_ref_model"}
_cache: dict = {}


def _model(key: str):
    if key not in _cache:
        import tf_keras as keras

        path = shared_file(MODELS[key])
        _cache[key] = keras.models.load_model(path, compile=False)
    return _cache[key]


def _pruned(key: str, **kwargs):
    cache_key = (key, tuple(sorted(kwargs.items())))
    if cache_key not in _cache:
        _cache[cache_key] = prune_channels(_model(key), **kwargs)
    return _cache[cache_key]


def _inputs(model, n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, *model.input_shape[1:]), dtype=np.float32)


@pytest.mark.parametrize("key", list(MODELS))
def test_half_the_channels_exact_surgery(key):
    """Pruned model == original with the removed channels' consumer weights zeroed, layer by layer shapes agree."""
    model = _model(key)
    result = _pruned(key, ratio=0.5, criterion="l1")
    new = result.model
    for name, kept in result.kept.items():
        w = new.get_layer(name).get_weights()
        kernel = w[1] if name.startswith("separable") else w[0]
        assert kernel.shape[-1] == len(kept)
        if name in result.kept_inputs:
            assert new.get_layer(name).input_shape[-1] == len(result.kept_inputs[name])
    assert new.output_shape == model.output_shape
    assert result.report.cost_after.macs < 0.75 * result.report.cost_before.macs
    removed = sum(g.before - g.after for g in result.report.groups)
    removable = sum(g.before for g in result.report.groups if g.ranking != "fixed")
    assert abs(removed - removable // 2) <= len(result.report.groups)
    x = _inputs(model, 8)
    expected = masked_original(model, result).predict(x, verbose=0)
    np.testing.assert_allclose(new.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-5)


def test_resnet8_residual_groups_are_coupled():
    result = _pruned("resnet8", ratio=0.5, criterion="l1")
    layers = {g.layers for g in result.report.groups}
    assert {("conv2d", "conv2d_2"), ("conv2d_4", "conv2d_5"), ("conv2d_7", "conv2d_8")} <= layers
    assert result.kept["conv2d"] == result.kept["conv2d_2"]
    assert result.kept["conv2d_4"] == result.kept["conv2d_5"]
    assert result.kept["dense"] == list(range(10))


def test_round_to_on_mobilenet():
    result = _pruned("vww", ratio=0.5, criterion="l2", round_to=8, scope="layer")
    for name, kept in result.kept.items():
        if name != "dense":
            assert len(kept) % 8 == 0 and len(kept) >= 8, name
    assert len(result.kept["conv2d"]) == 8  # 8 filters: rounding keeps all rather than 0
    assert len(result.kept["conv2d_13"]) == 128


def test_resnet8_pruned_runs_float_and_int8_on_litert_and_tflm():
    model = _model("resnet8")
    result = _pruned("resnet8", ratio=0.5, criterion="l1")
    x = _inputs(model, 4, seed=1)
    keras_out = result.model.predict(x, verbose=0)
    float_tfl = to_tflite(result.model)
    np.testing.assert_allclose(run_litert(float_tfl, x), keras_out, rtol=1e-4, atol=1e-5)
    int8_tfl = to_tflite(result.model, calib=_inputs(model, 32, seed=2))
    assert run_litert(int8_tfl, x, raw=True).dtype == np.int8
    lite, micro = run_litert(int8_tfl, x), run_tflm(int8_tfl, x)
    assert micro.shape == lite.shape == (4, 10)
    # int8 kernels round differently (XNNPACK vs TFLM reference), a few output steps of 1/256 apart
    assert np.abs(lite - micro).max() < 0.05
    assert np.abs(lite - keras_out).max() < 0.1


def test_dscnn_pruned_int8_runs_on_tflm():
    model = _model("dscnn")
    result = _pruned("dscnn", ratio=0.5, criterion="l1")
    x = _inputs(model, 3, seed=3) * 2 - 1
    int8_tfl = to_tflite(result.model, calib=_inputs(model, 32, seed=4) * 2 - 1)
    micro = run_tflm(int8_tfl, x)
    assert micro.shape == (3, 12)
    assert np.abs(micro - result.model.predict(x, verbose=0)).max() < 0.1


def test_vww_pruned_float_runs_on_litert():
    model = _model("vww")
    result = _pruned("vww", ratio=0.5, criterion="l1")
    x = _inputs(model, 2, seed=5)
    np.testing.assert_allclose(run_litert(to_tflite(result.model), x), result.model.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-5)
