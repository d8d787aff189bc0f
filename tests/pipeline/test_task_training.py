"""Pruning and fine-tuning a model that is not a classifier trains it on its own loss: an autoencoder on the MSE of
its reconstruction against its inputs, a regression model on the MSE against its targets, and with distillation
also on the MSE against the original model's outputs; the run scores it by MSE, never by top-1."""
from __future__ import annotations

import json

import numpy as np
import pytest

import kit  # noqa: F401  (selects tf_keras before TensorFlow is imported)
from tests.support.models import fit_mse_and_save

PRUNE_FINETUNE = """
name = "ae-prune"
[prune]
final_sparsity = 0.5
[finetune]
epochs = 2
learning_rate = 0.02
batch_size = 64
validation_split = 0.0
[finetune.distill]
alpha = 0.5
[quantize]
mode = ["none"]
[convert]
targets = ["litert"]
sparse = "off"
max_accuracy_drop = 25.0
[metrics]
latency_runs = 0
"""


def _structured(rng, n: int, mix: np.ndarray) -> np.ndarray:
    """16 features driven by 4 latent factors, plus a little noise: an 8-unit bottleneck can reconstruct them."""
    z = rng.normal(size=(n, 4)).astype(np.float32)
    return (np.tanh(z @ mix) + 0.05 * rng.normal(size=(n, 16))).astype(np.float32)


@pytest.fixture(scope="module")
def autoencoder(tmp_path_factory):
    import tf_keras as keras

    folder = tmp_path_factory.mktemp("ae16")
    rng = np.random.default_rng(0)
    mix = rng.normal(size=(4, 16)).astype(np.float32)
    x_train, x_test = _structured(rng, 800, mix), _structured(rng, 200, mix)
    np.savez(folder / "ae.npz", x_train=x_train, y_train=np.zeros(800, np.int64), x_test=x_test,
             y_test=np.zeros(200, np.int64))
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.Input((16,)), keras.layers.Dense(8, activation="tanh"),
                              keras.layers.Dense(16)], name="ae16")
    return fit_mse_and_save(model, x_train, x_train, folder / "ae16.h5"), folder / "ae.npz", x_test


@pytest.mark.slow
def test_prune_and_finetune_an_autoencoder_on_its_reconstruction_error(autoencoder, tmp_path, capsys):
    import tf_keras as keras

    from kit.cli import main

    model, data, x_test = autoencoder
    recipe = tmp_path / "r.toml"
    recipe.write_text(PRUNE_FINETUNE)
    out = tmp_path / "out"
    assert main(["compress", str(model), "--recipe", str(recipe), "--data", str(data), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "mse" in printed and "top-1" not in printed

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["task"]["name"] == "autoencoder" and manifest["keras_accuracy"] == {}
    history = manifest["history"]
    assert history["sparsity"][-1] == pytest.approx(0.5, abs=0.01) and len(history["loss"]) == 2
    # the compressed Keras model's MSE against its inputs, computed here, is the one the run recorded
    compressed = keras.models.load_model(out / "ae16.compressed.h5", compile=False)
    mse = float(np.mean((compressed.predict(x_test, verbose=0) - x_test) ** 2))
    assert manifest["keras_scores"]["compressed"]["mse"] == pytest.approx(mse, rel=1e-4)
    assert manifest["layer_sparsity"]  # pruned: half of every kernel is zero
    assert all(abs(s["sparsity"] - 0.5) < 0.02 for s in manifest["layer_sparsity"].values())

    base = {c["runtime"]: c["mse"] for c in manifest["baseline"]["checks"]}
    (shipped,) = [a for a in manifest["artifacts"] if a["shipped"]]
    for c in shipped["checks"]:
        assert c["top1"] is None and c["mse"] > 0 and c["cosine"] > 0.999
        assert c["mse"] <= base[c["runtime"]] * 1.25  # within the gate: at most 25 per cent more MSE
    report = (out / "report.md").read_text()
    assert "| mse" in report and "Task: autoencoder" in report and "top-1" not in report


def test_finetune_trains_a_regression_model_towards_its_targets_and_the_teacher():
    import tf_keras as keras

    from kit.steps.finetune import Distill, FinetuneStep
    from kit.techniques.finetune import fit

    rng = np.random.default_rng(1)
    x = rng.normal(size=(256, 4)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5, 0.25], np.float32) + 3.0).astype(np.float32)  # far from a class index
    keras.utils.set_random_seed(0)
    student = keras.Sequential([keras.layers.Input((4,)), keras.layers.Dense(1)])
    teacher = keras.Sequential([keras.layers.Input((4,)), keras.layers.Dense(1)])
    teacher.set_weights([np.array([[1.0], [-2.0], [0.5], [0.25]], np.float32), np.array([3.0], np.float32)])

    def mse(m):
        return float(np.mean((m.predict(x, verbose=0)[:, 0] - y) ** 2))

    before = mse(student)
    step = FinetuneStep(epochs=5, learning_rate=0.3, batch_size=64, validation_split=0.0)
    history = fit(student, x, y, step, progress=False, task="regression")
    assert mse(student) < before / 10 and history.val_accuracy == [None] * 5
    # alpha = 0: only the teacher's outputs teach, here a model that predicts the targets exactly
    student = keras.Sequential([keras.layers.Input((4,)), keras.layers.Dense(1)])
    before = mse(student)
    step = FinetuneStep(epochs=5, learning_rate=0.3, batch_size=64, validation_split=0.0,
                        distill=Distill(alpha=0.0))
    fit(student, x, np.zeros_like(y), step, teacher=teacher, progress=False, task="regression")
    assert mse(student) < before / 10  # the zero labels were ignored: the teacher's outputs were the target


def test_pruning_methods_that_train_on_class_labels_stay_refused(autoencoder, tmp_path, capsys):
    from kit.cli import main

    model, data, _ = autoencoder
    recipe = tmp_path / "soft.toml"
    recipe.write_text(PRUNE_FINETUNE.replace("final_sparsity = 0.5", 'final_sparsity = 0.5\nmethod = "soft"'))
    assert main(["compress", str(model), "--recipe", str(recipe), "--data", str(data), "-o",
                 str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "trains the model ([prune.method soft])" in err and "an autoencoder model" in err
    assert not (tmp_path / "out" / "manifest.json").exists()
