"""Perforation: a convolution takes its pooling's stride and the pooling goes; the strided outputs are the
stride-1 outputs at the positions the stride keeps, and what cannot be perforated is refused."""
from __future__ import annotations

import numpy as np
import pytest
from tests.support.recipes import assert_recipe_error
from .structured_helpers import run_litert, run_tflm, to_tflite

import kit  # noqa: F401
from kit.core.errors import KitError, ModelError
from kit.models import build
from kit.recipe import load_recipe, parse_recipe, write_recipe
from kit.steps.structured import surgery
from kit.techniques.structured.perforation import perforate


def _conv_out(model, name: str, x: np.ndarray) -> np.ndarray:
    import tf_keras as keras

    return keras.Model(model.input, model.get_layer(name).output)(x).numpy()


def test_strided_outputs_are_the_kept_positions_and_the_pooling_is_gone():
    x = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    model = build("lenet5")  # conv1 "same" -> pool1, conv2 "valid" -> pool2
    small, holes = perforate(model, {"conv1": 2, "conv2": [2, 2]})
    names = [layer.name for layer in small.layers]
    assert "pool1" not in names and "pool2" not in names
    assert small.get_layer("conv1").strides == (2, 2) and small.output_shape == model.output_shape
    assert [(h.layer, h.pooling, h.positions_before, h.positions_after) for h in holes] == [
        ("conv1", "pool1", 28 * 28, 14 * 14), ("conv2", "pool2", 10 * 10, 5 * 5)]
    full, strided = _conv_out(model, "conv1", x), _conv_out(small, "conv1", x)
    # "same" with stride 2 on an even size pads only after: window i starts at 2i, the stride-1 output 2i+1
    np.testing.assert_allclose(strided, full[:, 1::2, 1::2], rtol=1e-5, atol=1e-6)
    # conv2 now reads conv1's strided map; "valid" with stride 2: window i is the stride-1 output 2i
    import tf_keras as keras

    probe = keras.Sequential([keras.Input((14, 14, 6)), small.get_layer("conv2")])
    dense2 = keras.Sequential([keras.Input((14, 14, 6)), model.get_layer("conv2")])
    maps = np.random.default_rng(1).random((2, 14, 14, 6), dtype=np.float32)
    np.testing.assert_allclose(probe(maps).numpy(), dense2(maps).numpy()[:, ::2, ::2], rtol=1e-5, atol=1e-6)
    for a, b in zip(small.get_layer("fc1").get_weights(), model.get_layer("fc1").get_weights()):
        np.testing.assert_array_equal(a, b)  # everything else keeps its weights


def test_through_an_activation_and_batchnorm_in_a_functional_model():
    import tf_keras as keras

    L = keras.layers
    inp = keras.Input((16, 16, 3))
    x = L.Conv2D(8, 3, padding="same", name="c")(inp)
    x = L.AveragePooling2D(2, name="avg")(L.ReLU()(L.BatchNormalization()(x)))
    model = keras.Model(inp, L.Dense(2)(L.GlobalAveragePooling2D()(x)))
    small, holes = perforate(model, {"c": 2})
    assert holes[0].pooling == "avg" and small.get_layer("c").output_shape == (None, 8, 8, 8)
    assert not any(isinstance(layer, L.AveragePooling2D) for layer in small.layers)


@pytest.mark.parametrize("strides, error, words", [
    ({"nope": 2}, KitError, "no layer 'nope'"),
    ({"fc1": 2}, KitError, "is a Dense"),
    ({"conv1": 3}, KitError, "pools (2, 2)"),
    ({"conv1": 1}, KitError, "integer >= 2"),
])
def test_errors_name_the_layer(strides, error, words):
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        perforate(build("lenet5"), strides)


def test_a_convolution_without_a_pooling_or_with_a_grid_the_stride_misses_is_refused():
    import tf_keras as keras

    L = keras.layers
    flat = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(2, 3, name="c"), L.Flatten(), L.Dense(2)])
    with pytest.raises(KitError, match="not a pooling"):
        perforate(flat, {"c": 2})
    odd = keras.Sequential([keras.Input((10, 10, 1)), L.Conv2D(2, 2, name="c"), L.MaxPooling2D(2), L.Flatten()])
    with pytest.raises(ModelError, match="5x5 grid"):  # 9x9 pooled to 4x4; stride 2 on 10x10 with 2x2: 5x5
        perforate(odd, {"c": 2})


def test_recipe_key_runs_in_the_surgery_and_converts_for_litert_and_tflm():
    recipe = parse_recipe('[structured]\ninput_border = 2\nkernels = { conv1 = 3 }\nstrides = { conv1 = 2 }\n')
    assert recipe.structured.strides == {"conv1": (2, 2)}
    assert parse_recipe(write_recipe(recipe)).structured.strides == {"conv1": (2, 2)}
    x = np.random.default_rng(3).random((6, 28, 28, 1), dtype=np.float32)
    model = build("lenet5")
    small, report = surgery(model, recipe.structured, x, np.arange(6) % 10, log=lambda *_: None)
    assert report["strides"][0]["positions_after"] == 12 * 12  # after the 2-pixel border: 24x24 -> 12x12
    # conv1 12x12 x 3x3x1 x 6 + conv2 8x8 x 5x5x6 x 16 + fc1 256x120 + fc2 120x84 + logits 84x10
    assert report["macs"]["after"] == 12 * 12 * 9 * 6 + 8 * 8 * 150 * 16 + 256 * 120 + 120 * 84 + 84 * 10
    keras_out = small.predict(x, verbose=0)
    np.testing.assert_allclose(run_litert(to_tflite(small), x), keras_out, rtol=1e-4, atol=1e-5)
    int8 = to_tflite(small, calib=np.random.default_rng(4).random((32, 28, 28, 1), dtype=np.float32))
    assert np.abs(run_tflm(int8, x) - keras_out).max() < 0.1


@pytest.mark.parametrize("text, words", [
    ("[structured.strides]\nconv1 = 1\n", ["structured.strides.conv1", "not a stride"]),
    ("[structured.strides]\nconv1 = \"2x\"\n", ["structured.strides.conv1", "[rows, columns]"]),
])
def test_recipe_errors(text, words):
    assert_recipe_error(text, 2, words)


def test_the_latency_recipes_perforate_conv1():
    assert load_recipe("lenet5-latency").structured.strides == {"conv1": (2, 2)}
