"""[prune] method = "reconstruct": magnitude masks, then each layer's kept weights re-solved by least squares
against the model pruning started from (real Keras models, real converter and runtimes in the pipeline test)."""
from __future__ import annotations

import json

import numpy as np
import pytest


def _cnn(seed: int = 0):
    """A small pre-trained-style CNN: Conv2D with stride and bias, BN, a depthwise layer, Dense head."""
    import tf_keras as keras

    keras.utils.set_random_seed(seed)
    L = keras.layers
    inp = keras.Input((8, 8, 1))
    x = L.ReLU()(L.BatchNormalization(name="bn1")(L.Conv2D(16, 3, strides=2, padding="same", name="conv1")(inp)))
    x = L.ReLU()(L.DepthwiseConv2D(3, padding="same", name="dw")(x))
    x = L.ReLU()(L.Conv2D(24, 1, use_bias=False, name="pw")(x))
    x = L.Dropout(0.2)(L.GlobalAveragePooling2D()(x))
    return keras.Model(inp, L.Dense(10, activation="softmax", name="head")(x))


def test_a_linear_layer_is_solved_exactly_on_its_kept_weights():
    """One Dense layer: the re-solved kept weights equal numpy's least squares on the same rows."""
    import tf_keras as keras

    from kit.techniques.masking import prunable_kernels
    from kit.techniques.prune import private_copy
    from kit.techniques.reconstruct import reconstruct_prune

    keras.utils.set_random_seed(1)
    original = keras.Sequential([keras.layers.InputLayer((12,)), keras.layers.Dense(5, name="fc")])
    x = np.random.default_rng(0).normal(size=(300, 12)).astype(np.float32)
    model = private_copy(original)
    kernels = prunable_kernels(model)
    masks, report = reconstruct_prune(model, original, kernels, {"fc/kernel": 0.5}, x)
    keep = masks["fc/kernel"]
    assert keep.sum() == 30  # exactly half of 60 kept
    w0, b0 = (v.numpy() for v in original.get_layer("fc").weights)
    w, b = (v.numpy() for v in model.get_layer("fc").weights)
    assert np.all(w[~keep] == 0)
    target = x @ w0 + b0
    for j in range(5):
        cols = np.flatnonzero(keep[:, j])
        design = np.concatenate([x[:, cols], np.ones((len(x), 1))], axis=1).astype(np.float64)
        expect, *_ = np.linalg.lstsq(design, target[:, j], rcond=None)
        np.testing.assert_allclose(w[cols, j], expect[:-1], atol=2e-3)
        assert b[j] == pytest.approx(expect[-1], abs=2e-3)
    fc = report.layers["fc"]
    assert fc["error_after"] < fc["error_before"] and fc["rows"] == 300


def test_reconstruction_recovers_what_magnitude_masks_lose(digits):

    from kit.techniques.masking import prunable_kernels
    from kit.techniques.prune import private_copy
    from kit.techniques.metrics import topk
    from kit.techniques.reconstruct import reconstruct_prune

    x = digits.x_train.reshape(-1, 8, 8, 1)
    original = _cnn()
    original.compile("adam", "sparse_categorical_crossentropy")
    original.fit(x, digits.y_train, epochs=15, batch_size=32, verbose=0)
    kernels = prunable_kernels(private_copy(original))
    targets = {k: 0.7 for k in kernels}
    plain = private_copy(original)  # magnitude masks alone, as a reference
    plain_kernels = prunable_kernels(plain)
    for k in ("conv1/kernel", "pw/kernel", "head/kernel"):
        w = plain_kernels[k].numpy()
        plain_kernels[k].assign(np.where(np.abs(w) >= np.quantile(np.abs(w), 0.7), w, 0))
    model = private_copy(original)
    masks, report = reconstruct_prune(model, original, prunable_kernels(model), targets, x[:300], seed=0)
    assert set(masks) == {"conv1/kernel", "pw/kernel", "head/kernel"}
    assert "dw" in report.skipped and "left dense" in report.skipped["dw"]
    assert np.count_nonzero(model.get_layer("dw").depthwise_kernel.numpy()) == \
        np.count_nonzero(original.get_layer("dw").depthwise_kernel.numpy())
    for k, m in masks.items():
        layer = model.get_layer(k.split("/")[0])
        assert 1 - m.mean() == pytest.approx(0.7, abs=0.01)
        assert np.all(layer.kernel.numpy()[~m] == 0)
        assert report.layers[layer.name]["error_after"] < report.layers[layer.name]["error_before"]
    held = digits.x_test.reshape(-1, 8, 8, 1)
    reference = original.predict(held, verbose=0).argmax(1)

    def fidelity(m):  # top-1 agreement with the original
        return topk(m.predict(held, verbose=0), reference)

    assert fidelity(model) > fidelity(plain) + 0.05
    assert fidelity(model) > 0.6


@pytest.mark.slow
def test_recipe_method_reconstruct_runs_in_the_pipeline(digits, tmp_path):
    """Through kit.compress: the fine-tune after it is kept only if it agrees better; the report says which."""
    from kit.data import Dataset
    from kit.pipeline.compress import compress
    from kit.recipe import parse_recipe

    x_train, x_test = digits.x_train.reshape(-1, 8, 8, 1), digits.x_test.reshape(-1, 8, 8, 1)
    original = _cnn()
    original.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    original.fit(x_train, digits.y_train, epochs=15, batch_size=32, verbose=0)
    few = Dataset("digits-300", x_train[:300], digits.y_train[:300], x_test, digits.y_test, x_train[:100],
                  "300 digits for training")
    recipe = parse_recipe('[prune]\nmethod = "reconstruct"\nfinal_sparsity = 0.5\n[finetune]\nepochs = 2\n'
                          '[convert]\nmax_accuracy_drop = 100\n', "r.toml")
    run = compress(original, recipe, few, tmp_path / "out", model_name="cnn", log=lambda *a: None)
    manifest = json.loads(run.manifest_path.read_text())
    t = manifest["techniques"]["reconstruct"]
    assert set(t["layers"]) == {"conv1", "pw", "head"} and t["samples"] == 300
    assert "held-out inputs" in t["finetune"] and ("fine-tuned weights are kept" in t["finetune"]
                                                  or "reconstructed weights are kept" in t["finetune"])
    assert manifest["layer_sparsity"]["pw/kernel"]["sparsity"] == pytest.approx(0.5, abs=0.01)
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Layer-wise reconstruction" in report and "| pw " in report
    assert run.keras_accuracy["compressed"] > run.keras_accuracy["original"] - 0.1
