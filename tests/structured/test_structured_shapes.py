"""Kernel-ring and input-border pruning: exact rewrites when what they remove is zero, clear errors otherwise."""
from __future__ import annotations

import numpy as np
import pytest
from tests.support.recipes import assert_recipe_error
from .structured_helpers import run_litert, run_tflm, to_tflite

import kit  # noqa: F401
from kit.core.errors import KitError, ModelError
from kit.models import build
from kit.recipe import load_recipe, parse_recipe
from kit.techniques.structured.kernels import ring_shares, shrink_kernels
from kit.techniques.structured.spatial import border_shares, crop_input
from kit.steps.structured import surgery


def _zero_rings(model, names, rings: int = 1):
    for name in names:
        layer = model.get_layer(name)
        w = layer.get_weights()
        k = w[0]
        k[:rings], k[k.shape[0] - rings:], k[:, :rings], k[:, k.shape[1] - rings:] = 0, 0, 0, 0
        layer.set_weights([k, *w[1:]])


def _images(n: int, size: int = 28, border: int = 0, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).random((n, size, size, 1), dtype=np.float32)
    if border:
        x[:, :border], x[:, -border:], x[:, :, :border], x[:, :, -border:] = 0, 0, 0, 0
    return x


def test_zero_rings_shrink_exactly_same_and_valid_padding():
    import tf_keras as keras

    keras.utils.set_random_seed(0)  # the same weights every run
    model = build("lenet5")  # conv1 "same", conv2 "valid"
    _zero_rings(model, ["conv1", "conv2"])
    small, changes = shrink_kernels(model, {"conv1": 3, "conv2": 3})
    assert small.get_layer("conv1").kernel_size == (3, 3) and small.get_layer("conv2").kernel_size == (3, 3)
    assert [c.input_crop for c in changes] == [(0, 0), (1, 1)]  # "valid" needs its input cropped by the ring
    assert all(c.removed_share == 0 for c in changes)
    x = _images(8)
    np.testing.assert_allclose(small.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    assert small.count_params() == model.count_params() - 6 * 16 - 6 * 16 * 16


def test_nonzero_rings_change_outputs_and_report_their_share():
    model = build("lenet5")
    shares = ring_shares(model)
    assert set(shares) == {"conv1", "conv2"} and len(shares["conv1"]) == 2
    assert 0 < shares["conv1"][0] < shares["conv1"][1] <= 1
    small, changes = shrink_kernels(model, {"conv1": 3})
    assert changes[0].removed_share == pytest.approx(shares["conv1"][0])
    x = _images(4)
    assert np.abs(small.predict(x, verbose=0) - model.predict(x, verbose=0)).max() > 1e-4


def test_depthwise_and_residual_functional_model():
    import tf_keras as keras

    L = keras.layers
    inp = keras.Input((12, 12, 4))
    a = L.Conv2D(4, 5, padding="same", name="c5")(inp)
    b = L.DepthwiseConv2D((5, 3), padding="same", name="dw")(a)
    out = L.GlobalAveragePooling2D()(L.Add()([a, b]))
    model = keras.Model(inp, L.Dense(3, name="head")(out))
    _zero_rings(model, ["c5"])
    dw = model.get_layer("dw").get_weights()
    dw[0][[0, 4]] = 0
    model.get_layer("dw").set_weights(dw)
    small, _ = shrink_kernels(model, {"c5": 3, "dw": [3, 3]})
    assert small.get_layer("dw").kernel_size == (3, 3)
    x = np.random.default_rng(1).random((3, 12, 12, 4), dtype=np.float32)
    np.testing.assert_allclose(small.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("sizes, error, words", [
    ({"conv9": 3}, KitError, ["no layer 'conv9'", "conv1, conv2"]),
    ({"fc1": 3}, KitError, ["is a Dense"]),
    ({"conv1": 4}, KitError, ["cannot be cut from its centre", "5 -> 3"]),
    ({"conv1": 7}, KitError, ["cannot be cut"]),
])
def test_kernel_shrink_errors(sizes, error, words):
    with pytest.raises(error) as e:
        shrink_kernels(build("lenet5"), sizes)
    for w in words:
        assert w in str(e.value)


def test_strided_same_padding_is_refused():
    import tf_keras as keras

    model = keras.Sequential([keras.Input((9, 9, 1)), keras.layers.Conv2D(2, 5, strides=2, padding="same", name="s")])
    with pytest.raises(ModelError, match="shifts the window"):
        shrink_kernels(model, {"s": 3})


def test_border_crop_is_exact_when_border_inputs_and_rows_are_zero():
    model = build("lenet5")
    fc1 = model.get_layer("fc1")
    w, b = fc1.get_weights()
    grid = w.reshape(5, 5, 16, -1)
    grid[[0, 4]], grid[:, [0, 4]] = 0, 0  # positions whose receptive field is the 4-pixel border
    fc1.set_weights([grid.reshape(400, -1), b])
    cropped, report = crop_input(model, 4)
    assert cropped.input_shape == model.input_shape  # callers still feed 28x28
    assert report.input_after == (20, 20) and report.dense_rows == {"fc1": (400, 144)}
    assert report.exact_positions and not report.notes
    x = _images(8, border=4)
    np.testing.assert_allclose(cropped.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    # without the zero border the crop changes outputs: the test can fail
    x = _images(8)
    assert np.abs(cropped.predict(x, verbose=0) - model.predict(x, verbose=0)).max() > 1e-4


def test_misaligned_crop_says_so():
    _, report = crop_input(build("lenet5"), [2, 2, 2, 2])
    assert not report.exact_positions and report.dense_rows == {"fc1": (400, 256)}
    assert any("0.50 cell offset" in n for n in report.notes)


def test_border_shares_follow_the_saliency():
    model = build("lenet5")
    inside = border_shares(model, _images(16, border=3))
    assert inside[:3] == [0.0, 0.0, 0.0] and inside[3] > 0
    assert all(a <= b + 1e-12 for a, b in zip(inside, inside[1:]))
    assert border_shares(model, _images(16))[0] > 0


@pytest.mark.parametrize("border, words", [(14, ["leaves nothing"]), (-1, ["pixels >= 0"]), ([1, 2], ["[top, bottom"])])
def test_crop_errors(border, words):
    with pytest.raises(KitError) as e:
        crop_input(build("lenet5"), border)
    for w in words:
        assert w in str(e.value)


def test_crop_refuses_a_fixed_reshape_and_flat_inputs():
    import tf_keras as keras

    L = keras.layers
    model = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(2, 3, padding="same"), L.Reshape((128,)),
                              L.Dense(3)])
    with pytest.raises(ModelError, match="does not accept the cropped maps"):
        crop_input(model, 1)
    with pytest.raises(ModelError, match="one image input"):
        crop_input(build("lenet-300-100"), 1)


def test_recipe_step_converts_and_runs_on_litert_and_tflm():
    model = build("lenet5")
    recipe = load_recipe("lenet5-latency")
    x = _images(6, seed=3)
    small, report = surgery(model, recipe.structured, x, np.arange(6) % 10, log=lambda *_: None)
    assert small.input_shape == model.input_shape
    # conv1 12x12 (stride 2) x 3x3x1 x 3 + conv2 8x8 x 3x3x3 x 16 + fc1 256x60 + fc2 60x42 + logits 42x10
    assert report["macs"]["after"] == 12 * 12 * 9 * 3 + 8 * 8 * 27 * 16 + 256 * 60 + 60 * 42 + 42 * 10
    assert [k["after"] for k in report["kernels"]] == [[3, 3], [3, 3]]
    assert 0 <= report["input_border"]["saliency_share"] < 1
    keras_out = small.predict(x, verbose=0)
    np.testing.assert_allclose(run_litert(to_tflite(small), x), keras_out, rtol=1e-4, atol=1e-5)
    int8 = to_tflite(small, calib=_images(32, seed=4))
    assert np.abs(run_tflm(int8, x) - keras_out).max() < 0.1


@pytest.mark.parametrize("text, line, words", [
    ("[structured.kernels]\nconv1 = \"3\"\n", 2, ["structured.kernels.conv1", "odd size"]),
    ("[structured]\ninput_border = [1, 2]\n", 2, ["structured.input_border", "[top, bottom, left, right]"]),
    ("[structured]\ncriterion = \"taylr\"\n", 2, ["structured.criterion", "did you mean 'taylor'"]),
    ("[structured]\nround_to = 1\n", 1, ["removes nothing"]),
    ("[structured.layers]\nconv1 = 1.5\n", 2, ["structured.layers.conv1", "0 < x < 1"]),
])
def test_structured_recipe_errors(text, line, words):
    assert_recipe_error(text, line, words)


def test_structured_recipe_gets_a_recovery_finetune():
    r = parse_recipe("[structured]\nratio = 0.25\ninput_border = [0, 1, 0, 1]\n")
    assert r.structured.input_border == (0, 1, 0, 1) and r.finetune is not None


def test_structured_and_augment_recipes_write_back_as_toml():
    from kit.recipe import write_recipe as recipe_toml

    r = load_recipe("lenet5-latency")
    r.structured.layers = {"fc1": 0.25}
    r.structured.kernels["conv1"] = (3, 1)
    again = parse_recipe(recipe_toml(r), "again.toml")
    assert again.to_dict() == r.to_dict()
    assert again.structured.kernels == {"conv1": (3, 1), "conv2": (3, 3)} and again.finetune.augment.copies == 2
