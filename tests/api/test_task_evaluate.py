"""kit.evaluate and `kit eval` score what a model computes: an autoencoder by reconstruction MSE, ROC AUC of its
anomaly score and cosine similarity to the original, never by top-1; a task that contradicts the model is refused."""
from __future__ import annotations

import json

import numpy as np
import pytest

from kit.core.errors import DataError, KitError
from kit.core.metrics import resolve_task


@pytest.fixture(scope="module")
def ae(tmp_path_factory):
    from tests.support.autoencoder import make_autoencoder

    return make_autoencoder(tmp_path_factory.mktemp("ae"), epochs=10)


def _expected(ae):
    """The autoencoder's figures computed here from its Keras outputs, independently of kit.core.metrics."""
    import tf_keras as keras
    from sklearn.metrics import roc_auc_score

    with np.load(ae.data) as f:
        x, y = f["x_test"], f["y_test"]
    out = keras.models.load_model(ae.model, compile=False).predict(x, verbose=0)
    err = ((out - x) ** 2).mean(axis=1)
    return float(err.mean()), float(roc_auc_score(y, err))


@pytest.mark.slow
def test_evaluate_scores_an_autoencoder_by_reconstruction_not_top1(ae):
    import kit

    ev = kit.evaluate(ae.model, data=str(ae.data))
    assert ev.task.name == "autoencoder" and "shaped like the inputs" in ev.task.how
    (r,) = ev.results
    assert r.top1 is None and r.top5 is None and r.agreement is None
    mse, auc = _expected(ae)
    assert r.mse == pytest.approx(mse, rel=1e-4)
    assert r.auc == pytest.approx(auc, abs=1e-6) and 0.5 < r.auc <= 1.0
    assert ev.to_dict()["task"]["name"] == "autoencoder"


@pytest.mark.slow
def test_int8_autoencoder_on_every_runtime_with_fidelity_to_the_original(ae, tmp_path, capsys):
    import tf_keras as keras

    import kit
    from kit.cli import main
    from kit.convert.converter import ArtifactSpec, convert
    from kit.data import load_data

    model = keras.models.load_model(ae.model, compile=False)
    path = tmp_path / "ae_int8.tflite"
    path.write_bytes(convert(model, ArtifactSpec("int8"), load_data(str(ae.data)).x_calib))
    ev = kit.evaluate(path, data=str(ae.data), reference=ae.model)
    mse, auc = _expected(ae)
    assert [r.runtime for r in ev.results] == ["litert", "litert-builtin", "tflm", "litert-compiled"]
    for r in ev.results:
        assert r.loads and r.task == "autoencoder"
        assert r.top1 is None and r.agreement is None
        assert r.cosine is not None and 0.99 < r.cosine <= 1.0 + 1e-9
        assert r.mse == pytest.approx(mse, rel=0.05)  # int8 reconstructs about as well as float
        assert abs(r.auc - auc) < 0.03
        assert r.max_abs_error is not None and r.max_abs_error > 0  # int8 is not bit-exact: the figure is real

    assert main(["eval", str(path), "--data", str(ae.data), "--reference", str(ae.model), "--runtime", "litert",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["task"]["name"] == "autoencoder" and "ROC AUC" in out["task"]["metric"]
    (r,) = out["results"]
    assert r["top1"] is None and r["mse"] > 0 and r["auc"] > 0.5 and r["cosine"] > 0.99
    assert main(["eval", str(path), "--data", str(ae.data), "--runtime", "litert"]) == 0
    text = capsys.readouterr().out
    assert "task: autoencoder" in text and "roc auc" in text and "top-1" not in text
    assert "pass --reference" in text  # cosine needs the original model, and says so


def test_a_task_that_contradicts_the_model_is_refused(tiny_tflite, tmp_path, capfd):
    """tiny_tflite maps 16 inputs to 4 outputs: it cannot be an autoencoder, nor a regression of one target."""
    import kit
    from kit.cli import main

    rng = np.random.default_rng(0)
    data = tmp_path / "d.npz"
    np.savez(data, x_train=rng.random((20, 16), np.float32), y_train=np.arange(20) % 4,
             x_test=rng.random((10, 16), np.float32), y_test=np.arange(10) % 4)
    assert main(["eval", str(tiny_tflite), "--data", str(data), "--task", "autoencoder"]) == 2
    err = capfd.readouterr().err
    assert "an autoencoder's output has its input's shape" in err and "hint:" in err and "Traceback" not in err
    with pytest.raises(KitError, match="1 value\\(s\\) per sample but tiny.tflite has 4 outputs"):
        kit.evaluate(tiny_tflite, data=str(data), task="regression")
    ev = kit.evaluate(tiny_tflite, data=str(data))  # integer labels indexing the 4 outputs: a classifier
    assert ev.task.name == "classification" and ev.results[0].top1 is not None


def test_task_detection_and_refusals():
    ints = np.array([0, 1, 1, 0])
    assert resolve_task(None, (640,), (640,), ints).name == "autoencoder"  # ad01: 0/1 anomaly labels
    assert resolve_task("auto", (8, 8, 1), (64,), np.arange(4)).name == "autoencoder"  # same count of values
    assert resolve_task(None, (64,), (10,), np.arange(10)).name == "classification"
    assert resolve_task(None, (1,), (1,), np.array([0.5, -0.25])).name == "regression"  # hello_world's sine
    with pytest.raises(DataError, match="labels up to 9, but m has 3 outputs"):
        resolve_task(None, (64,), (10 // 3,), np.arange(10), "m")
    with pytest.raises(DataError, match="1 output,") as e:  # a sigmoid output: binary classifier or regression?
        resolve_task(None, (4,), (1,), ints, "m")
    assert "--task" in e.value.hint
    with pytest.raises(KitError, match="classifier needs one output per class"):
        resolve_task("classification", (4,), (1,), ints)
    with pytest.raises(KitError, match="not class indices"):
        resolve_task("classification", (64,), (3,), np.arange(10))
    with pytest.raises(KitError, match="unknown task 'segmentation'"):
        resolve_task("segmentation", (4,), (4,), ints)
    assert resolve_task("regression", (4,), (2,), None).how == "declared"
