"""`kit compress` on a model that is not a classifier: its checks, accuracy gate, report and manifest use the task's
figures (MSE, cosine similarity, ROC AUC), never top-1; recipes that would train it as a classifier are refused."""
from __future__ import annotations

import json

import pytest

from kit.convert.artifacts import AccuracyGate, Artifact, _problem
from kit.core.artifact import Format, RuntimeCheck
from kit.recipe import parse_recipe
from tests.support.recipes import assert_recipe_error

POST_TRAINING = """
name = "post-training"
[quantize]
mode = ["int8"]
[convert]
targets = ["litert", "tflm"]
"""


@pytest.fixture(scope="module")
def ae(tmp_path_factory):
    from tests.support.autoencoder import make_autoencoder

    return make_autoencoder(tmp_path_factory.mktemp("ae"), epochs=10)


@pytest.fixture(scope="module")
def untrained_ae(tmp_path_factory):
    """The autoencoder's shape without its training: enough for the refusals, which come before any work."""
    import numpy as np
    import tf_keras as keras

    folder = tmp_path_factory.mktemp("untrained")
    model = keras.Sequential([keras.layers.Input((64,)), keras.layers.Dense(8), keras.layers.Dense(64)])
    model.save(folder / "ae.h5")
    rng = np.random.default_rng(0)
    np.savez(folder / "d.npz", x_train=rng.random((20, 64), np.float32), y_train=np.zeros(20, np.int64),
             x_test=rng.random((10, 64), np.float32), y_test=np.arange(10) % 2)
    return folder / "ae.h5", folder / "d.npz"


@pytest.mark.slow
def test_compressing_an_autoencoder_reports_mse_cosine_and_auc_not_top1(ae, tmp_path, capsys):
    """One post-training run with a zero budget: every figure is the autoencoder's, and the gate holds the int8
    artifact to the original's ROC AUC on each target runtime (it ships only if it lost none)."""
    from kit.cli import main

    recipe = tmp_path / "post.toml"
    recipe.write_text(POST_TRAINING + "max_accuracy_drop = 0.0\n")
    out = tmp_path / "out"
    code = main(["compress", str(ae.model), "--recipe", str(recipe), "--data", str(ae.data), "-o", str(out)])
    printed = capsys.readouterr().out
    assert "roc auc" in printed and "cosine" in printed and "top-1" not in printed

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["task"]["name"] == "autoencoder" and "ROC AUC" in manifest["task"]["metric"]
    assert manifest["keras_accuracy"] == {}
    original = manifest["keras_scores"]["original"]
    assert original["mse"] > 0 and 0.5 < original["auc"] <= 1.0 and "top1" not in original
    assert "top1" not in manifest["metrics"] and "robustness" not in manifest["metrics"]
    assert manifest["metrics"]["task_scores"]["compressed"]["cosine"] > 0.999
    for entry in [manifest["baseline"], *manifest["artifacts"]]:
        for c in entry["checks"]:
            assert c["loads"] and c["task"] == "autoencoder"
            assert c["top1"] is None and c["top5"] is None and c["agreement"] is None
            assert c["mse"] > 0 and c["cosine"] > 0.98 and abs(c["auc"] - original["auc"]) < 0.03

    (int8,) = manifest["artifacts"]
    base_auc = {c["runtime"]: c["auc"] for c in manifest["baseline"]["checks"]}
    lost = max(base_auc[c["runtime"]] - c["auc"] for c in int8["checks"] if c["runtime"] in ("litert", "tflm"))
    assert int8["shipped"] == (lost <= 1e-11) and code == (0 if int8["shipped"] else 1)
    if not int8["shipped"]:
        assert "points of ROC AUC" in int8["reason"] and "top-1" not in int8["reason"]
        assert "nothing shipped" in printed and "ROC AUC" in printed

    report = (out / "report.md").read_text()
    assert "| mse" in report and "| cosine" in report and "| roc auc" in report
    assert "Task: autoencoder" in report and "top-1" not in report


def _artifact(checks: list[RuntimeCheck], precision: str = "int8") -> Artifact:
    return Artifact(path="", sha256="0" * 64, bytes=1000, name=precision, format=Format(precision), gzip_bytes=900,
                    shipped=True, reason="", checks=checks)


def _ae(runtime: str, mse: float, auc: float | None, cosine: float = 0.999) -> RuntimeCheck:
    return RuntimeCheck(runtime, loads=True, task="autoencoder", mse=mse, auc=auc, cosine=cosine, max_abs_error=0.1)


def test_gate_uses_roc_auc_points_with_anomaly_labels_else_mse_per_cent():
    baseline = _artifact([_ae("litert", 0.010, 0.90)], "float32")
    gate = AccuracyGate(baseline, original_keras=0.90, max_drop=1.0, task="autoencoder")
    assert gate.problem(_artifact([_ae("litert", 0.020, 0.895)]), ("litert",)) is None  # 0.5 points of AUC
    problem = gate.problem(_artifact([_ae("litert", 0.010, 0.87)]), ("litert",))
    assert problem is not None and "3.00 points of ROC AUC" in problem and "87.00% vs 90.00%" in problem

    no_labels = AccuracyGate(_artifact([_ae("litert", 0.010, None)], "float32"), 0.010, 1.0, "autoencoder")
    assert no_labels.problem(_artifact([_ae("litert", 0.0100999, None)]), ("litert",)) is None  # +0.99%
    problem = no_labels.problem(_artifact([_ae("litert", 0.0105, None)]), ("litert",))
    assert problem is not None and problem.startswith("loses") and "5.00 per cent above" in problem
    # where the baseline does not run, the original Keras model's MSE is the reference
    keras_only = AccuracyGate(_artifact([RuntimeCheck("tflm", loads=False, error="x")], "float32"), 0.010, 1.0,
                              "autoencoder")
    assert "the original Keras model" in keras_only.problem(_artifact([_ae("tflm", 0.011, None)]), ("tflm",))
    advice = no_labels.advice(parse_recipe(""), [_artifact([], "int8")])
    assert "no artifact runs correctly" in advice


def test_an_artifact_whose_outputs_diverge_from_its_keras_model_does_not_ship():
    assert _problem(_ae("litert", 0.01, None, cosine=0.995), "int8") is None
    problem = _problem(_ae("litert", 0.01, None, cosine=0.95), "int8")
    assert problem is not None and "cosine similarity" in problem and "0.9500 < 0.98" in problem
    assert "cosine" in _problem(_ae("litert", 0.01, None, cosine=0.998), "float32")


def test_recipes_that_train_a_non_classifier_are_refused_before_training(untrained_ae, tmp_path, capfd):
    from kit.cli import main

    model, data = untrained_ae
    assert main(["compress", str(model), "--recipe", "lenet5-latency", "--data", str(data), "-o",
                 str(tmp_path / "a")]) == 2
    err = capfd.readouterr().err
    assert "trains the model ([structured])" in err and "an autoencoder model" in err and "hint:" in err
    assert not (tmp_path / "a" / "baseline-float32.tflite").exists()

    recipe = tmp_path / "r.toml"
    recipe.write_text(POST_TRAINING + 'task = "autoencoder"\n')
    code = main(["compress", str(model), "--recipe", str(recipe), "--data", str(data), "--task", "classification",
                 "-o", str(tmp_path / "b")])
    assert code == 2 and "the task is declared twice" in capfd.readouterr().err
    assert main(["compress", str(model), "--recipe", str(recipe), "--data", str(data), "--task", "regression",
                 "--budget", "accuracy-drop=1", "-o", str(tmp_path / "c")]) == 2
    assert "--budget searches per-layer sparsity by top-1" in capfd.readouterr().err


def test_task_is_a_convert_key():
    assert parse_recipe('[convert]\ntask = "autoencoder"\n').convert.task == "autoencoder"
    assert parse_recipe("").convert.task == "auto"
    assert_recipe_error('[convert]\ntask = "segmentation"\n', 2, ["task", "autoencoder"])
