"""Pre-trained BatchNorm/Dropout networks keep their accuracy through pruning and a small-data fine-tune.

BatchNormalization's moving statistics follow the weights at momentum 0.99 per step: after the few dozen steps
of a fine-tune on a few hundred samples they still describe the dense model, and the pruned model collapses
when it runs in inference mode. The fine-tune re-estimates them from the training inputs every epoch.
"""
from __future__ import annotations

import json

import numpy as np
import pytest


def _dscnn(seed: int = 0):
    """A small depthwise-separable CNN like MLPerf Tiny's DS-CNN: BN after every conv, Dropout, softmax head."""
    import tf_keras as keras

    keras.utils.set_random_seed(seed)
    L = keras.layers
    inp = keras.Input((8, 8, 1))
    x = L.Conv2D(16, 3, padding="same", use_bias=False)(inp)
    x = L.ReLU()(L.BatchNormalization()(x))
    for _ in range(2):
        x = L.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
        x = L.ReLU()(L.BatchNormalization()(x))
        x = L.Conv2D(32, 1, use_bias=False)(x)
        x = L.ReLU()(L.BatchNormalization()(x))
    x = L.Dropout(0.3)(L.GlobalAveragePooling2D()(x))
    out = L.Dense(10, activation="softmax", name="dense")(x)
    return keras.Model(inp, out)


def test_recalibration_sets_moving_statistics_to_the_inputs_statistics():
    import tf_keras as keras

    from kit.techniques.finetune import recalibrate_batchnorm

    model = _dscnn()
    x = np.random.default_rng(0).normal(2.0, 3.0, (256, 8, 8, 1)).astype(np.float32)
    bn = next(layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
    feed = keras.Model(model.input, bn.input)(x).numpy()
    assert not np.allclose(bn.moving_mean.numpy(), feed.mean(axis=(0, 1, 2)), atol=1e-3)  # untrained: zeros
    recalibrate_batchnorm(model, x)
    np.testing.assert_allclose(bn.moving_mean.numpy(), feed.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bn.moving_variance.numpy(), feed.var(axis=(0, 1, 2)), rtol=1e-3, atol=1e-3)
    assert bn.momentum == 0.99 and bn.trainable  # restored
    before = model.predict(x[:16], verbose=0)
    np.testing.assert_allclose(model.predict(x[:16], verbose=0), before)  # Dropout stayed off, nothing else moved


@pytest.mark.slow
def test_pretrained_bn_dropout_network_survives_pruning_on_few_samples(digits, tmp_path):
    """Trained on all of digits, saved as a user would, then compressed with 400 samples at 50% sparsity."""
    import tf_keras as keras

    from kit.data import Dataset
    from kit.models import load_model
    from kit.pipeline.compress import compress
    from kit.recipe import load_recipe

    x_train, x_test = digits.x_train.reshape(-1, 8, 8, 1), digits.x_test.reshape(-1, 8, 8, 1)
    model = _dscnn()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, digits.y_train, epochs=40, batch_size=32, verbose=0)
    model.save(tmp_path / "dscnn.h5")
    few = Dataset("digits-few", x_train[:400], digits.y_train[:400], x_test, digits.y_test, x_train[:200],
                  "400 digits for training, the test split for testing")
    recipe = load_recipe("mcu")  # 90%: this network collapses on 400 samples, and nothing ships
    recipe.prune.back_off = [0.5]  # the recipe's own [0.75, 0.65, 0.55], shorter
    run = compress(load_model(tmp_path / "dscnn.h5"), recipe, few, tmp_path / "out", model_name="dscnn",
                   log=lambda *a: None)
    assert [t["final_sparsity"] for t in run.backed_off] == [0.9] and run.recipe.prune.final_sparsity == 0.5
    refused = run.backed_off[0]["not_shipped"]  # the gate refused the collapsed int8 model
    assert any("loses" in why or "wrong results" in why for why in refused.values()), refused
    original, compressed = run.keras_accuracy["original"], run.keras_accuracy["compressed"]
    assert original > 0.9
    assert compressed >= original - 0.05, (original, compressed, run.history.val_accuracy)  # 0.19 lost before
    assert min(v for v in run.history.val_accuracy if v is not None) > 0.6  # no epoch collapsed (0.22 before)
    for a in run.artifacts:  # whatever ships is within the recipe's budget of the original on its runtime
        if a.shipped:
            assert "loses" not in a.reason
    plan = json.loads(run.manifest_path.read_text())["prune_plan"]
    assert plan["outputs"] == ["dense"]  # [prune.output] found the head without its name
    # the head's own 70% scaled with the back-off: 0.7 x 0.5 / 0.9
    assert {p["layer"]: p["final_sparsity"] for p in plan["layers"]}["dense"] == pytest.approx(0.3889)
    manifest = json.loads(run.manifest_path.read_text())
    assert manifest["backed_off"][0]["final_sparsity"] == 0.9 and manifest["recipe"]["prune"]["back_off"] == []
    depthwise = [layer.name for layer in model.layers if isinstance(layer, keras.layers.DepthwiseConv2D)]
    assert sorted(plan["not_pruned"]) == sorted(depthwise) and len(depthwise) == 2  # TF-MOT leaves them dense
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Layers left dense" in report and "## Backed off" in report and "- 90%:" in report
