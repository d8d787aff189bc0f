"""A regression model (one float target per sample) is compressed like any other: its data loads with float
targets, the run scores it by MSE and fidelity to the original, and the gate holds MSE rise to the budget."""
from __future__ import annotations

import json

import numpy as np
import pytest

import kit  # noqa: F401  (selects tf_keras before TensorFlow is imported)
from kit.core.errors import DataError, KitError
from tests.support.models import fit_mse_and_save

POST_TRAINING = """
name = "post-training"
[quantize]
mode = ["int8"]
[convert]
targets = ["litert"]
max_accuracy_drop = 3.0
[metrics]
latency_runs = 0
"""


def _regression_npz(path, n_train: int = 500, n_test: int = 100, **change):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n_train + n_test, 8)).astype(np.float32)
    y = (np.tanh(x @ rng.normal(size=8)) + 0.1 * x[:, 0] ** 2).astype(np.float32)
    arrays = {"x_train": x[:n_train], "y_train": y[:n_train], "x_test": x[n_train:], "y_test": y[n_train:], **change}
    np.savez(path, **arrays)
    return path


@pytest.fixture(scope="module")
def regression(tmp_path_factory):
    import tf_keras as keras

    folder = tmp_path_factory.mktemp("reg")
    data = _regression_npz(folder / "reg.npz")
    with np.load(data) as f:
        x_train, y_train = f["x_train"], f["y_train"]
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.Input((8,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(1)], name="reg")
    return fit_mse_and_save(model, x_train, y_train, folder / "reg.h5"), data


def test_float_targets_load_as_regression_targets(tmp_path):
    from kit.data import load_data

    d = load_data(_regression_npz(tmp_path / "r.npz"))
    assert d.regression_targets and d.y_train.dtype == np.float32 and d.y_test.shape == (100,)
    with pytest.raises(DataError, match="regression targets, not class labels"):
        d.num_classes  # noqa: B018
    rows = load_data(_regression_npz(tmp_path / "rows.npz", y_train=np.full((500, 3), 0.25),
                                     y_test=np.full((100, 3), 0.5)))
    assert rows.y_test.shape == (100, 3) and rows.regression_targets  # several targets per sample stay rows
    classes = load_data(_regression_npz(tmp_path / "c.npz", y_train=np.arange(500) % 3 * 1.0,
                                        y_test=np.eye(3)[np.arange(100) % 3]))
    assert classes.y_test.dtype == np.int64 and classes.num_classes == 3  # whole numbers and one-hot: classes


@pytest.mark.parametrize("change, words", [
    ({"y_train": np.arange(500) % 3}, "y_test holds non-integer labels (regression targets) but y_train holds"),
    ({"y_test": np.full((100, 2), 0.3)}, "y_train holds targets of shape () per sample but y_test (2,)"),
    ({"y_test": np.full(100, np.inf)}, "y_test holds NaN or infinite labels"),
    ({"y_test": np.array(["1.5"] * 100)}, "y_test holds strings"),
    ({"y_train": np.tile([[0, 2]], (500, 1)), "y_test": np.tile([[0, 2]], (100, 1))},
     "y_train has rows of 2 whole numbers that are not one-hot"),
])
def test_garbage_targets_are_refused(tmp_path, change, words):
    from kit.data import load_data

    with pytest.raises(DataError) as e:
        load_data(_regression_npz(tmp_path / "bad.npz", **change))
    assert words in str(e.value) and e.value.hint


def test_a_built_in_classifier_is_not_trained_on_regression_targets(tmp_path):
    from kit.data import load_data
    from kit.models import resolve_model

    with pytest.raises(KitError, match="lenet-300-100 is a classifier"):
        resolve_model("lenet-300-100", load_data(_regression_npz(tmp_path / "r.npz")))


@pytest.mark.slow
def test_compressing_a_regression_model_scores_mse_and_gates_its_rise(regression, tmp_path, capsys):
    import tf_keras as keras

    from kit.cli import main

    model, data = regression
    recipe = tmp_path / "post.toml"
    recipe.write_text(POST_TRAINING)
    out = tmp_path / "out"
    code = main(["compress", str(model), "--recipe", str(recipe), "--data", str(data), "-o", str(out)])
    printed = capsys.readouterr().out
    assert "regression, detected: one non-integer target per output" in printed and "top-1" not in printed

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["task"]["name"] == "regression" and "MSE" in manifest["task"]["metric"]
    with np.load(data) as f:
        x, y = f["x_test"], f["y_test"]
    pred = keras.models.load_model(model, compile=False).predict(x, verbose=0)[:, 0]
    assert manifest["keras_scores"]["original"]["mse"] == pytest.approx(float(np.mean((pred - y) ** 2)), rel=1e-5)
    base = {c["runtime"]: c["mse"] for c in manifest["baseline"]["checks"]}
    (int8,) = manifest["artifacts"]
    (c,) = [c for c in int8["checks"] if c["runtime"] == "litert"]
    assert c["top1"] is None and c["mse"] > 0 and 0.99 < c["cosine"] <= 1.0 and c["max_abs_error"] > 0
    rise = 100.0 * (c["mse"] - base["litert"]) / base["litert"]
    assert int8["shipped"] == (rise <= 3.0) and code == (0 if int8["shipped"] else 1)
    if not int8["shipped"]:
        assert "per cent above" in int8["reason"]
    assert "| mse" in (out / "report.md").read_text()


def test_the_budget_search_refuses_a_regression_model(tmp_path, capsys):
    import tf_keras as keras

    from kit.cli import main

    data = _regression_npz(tmp_path / "r.npz")
    keras.Sequential([keras.layers.Input((8,)), keras.layers.Dense(1)]).save(tmp_path / "r.h5")
    assert main(["compress", str(tmp_path / "r.h5"), "--data", str(data), "--budget", "accuracy-drop=1",
                 "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "r.h5 is a regression model" in err and "the budget search chooses per-layer sparsity by top-1" in err
    assert not (tmp_path / "out" / "manifest.json").exists()
