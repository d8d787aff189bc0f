"""Data that would give a meaningless score is refused with what is wrong, in eval and compress alike."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kit.cli import main
from kit.core.errors import DataError
from kit.data import check_labels_fit, check_samples, load_data


def _npz(tmp_path: Path, name: str = "d.npz", **change) -> Path:
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.random((20, 8, 8, 1), dtype=np.float32), "y_train": np.arange(20) % 10,
              "x_test": rng.random((10, 8, 8, 1), dtype=np.float32), "y_test": np.arange(10) % 10}
    for key, value in change.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def test_good_npz_loads(tmp_path):
    d = load_data(_npz(tmp_path))
    assert d.num_classes == 10 and d.x_test.shape == (10, 8, 8, 1)


def _x_with(value) -> np.ndarray:
    x = np.random.default_rng(1).random((10, 8, 8, 1), dtype=np.float32)
    x[3, 2, 2, 0] = value
    return x


@pytest.mark.parametrize("change, words", [
    ({"x_test": _x_with(np.nan)}, "x_test holds 1 NaN or infinite value(s), first at sample 3"),
    ({"x_train": np.full((20, 8, 8, 1), np.inf, np.float32)}, "x_train holds 1,280 NaN or infinite"),
    ({"y_test": np.array(["cat"] * 10)}, "y_test holds strings"),
    ({"y_test": np.arange(10) - 1}, "negative labels"),
    ({"y_test": np.arange(10) + 0.5}, "non-integer labels"),
    ({"y_test": np.full(10, np.nan)}, "NaN or infinite labels"),
    ({"y_test": np.arange(9)}, "x_test has 10 samples but y_test has 9"),
    ({"y_train": None}, "lacks array(s) y_train"),
    ({"x_test": np.float32(1.0)}, "single value"),
    ({"x_test": np.array([["a"] * 4] * 10)}, "x_test holds strings"),
])
def test_bad_npz_is_a_data_error(tmp_path, change, words):
    with pytest.raises(DataError) as e:
        load_data(_npz(tmp_path, **change))
    assert words in str(e.value)


def test_labels_must_fit_the_outputs():
    check_labels_fit(np.arange(10), 10)
    with pytest.raises(DataError, match="labels up to 9, but m.tflite has 3 outputs"):
        check_labels_fit(np.arange(10), 3, "m.tflite")
    with pytest.raises(DataError, match="1 output"):
        check_labels_fit(np.zeros(4, np.int64), 1)


@pytest.mark.parametrize("n", [0, -5])
def test_samples_must_be_positive(n):
    with pytest.raises(DataError, match="at least 1"):
        check_samples(n)
    check_samples(None)
    check_samples(1)


@pytest.fixture(scope="module")
def three_class_tflite(tmp_path_factory) -> Path:
    import kit  # noqa: F401
    import tf_keras as keras

    from kit.convert.converter import ArtifactSpec, convert

    model = keras.Sequential([keras.layers.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    path = tmp_path_factory.mktemp("m") / "three.tflite"
    path.write_bytes(convert(model, ArtifactSpec("float32")))
    return path


def test_eval_refuses_garbage_before_scoring(tmp_path, capfd, three_class_tflite):
    assert main(["eval", str(three_class_tflite), "--data", str(_npz(tmp_path))]) == 2
    err = capfd.readouterr().err
    assert "labels up to 9" in err and "3 outputs" in err and "Traceback" not in err
    bad = _npz(tmp_path, "nan.npz", x_test=_x_with(np.nan), y_test=np.arange(10) % 3, y_train=np.arange(20) % 3)
    assert main(["eval", str(three_class_tflite), "--data", str(bad)]) == 2
    assert "NaN" in capfd.readouterr().err
    assert main(["eval", str(three_class_tflite), "--data", "digits", "--samples", "-5"]) == 2
    assert "--samples must be at least 1" in capfd.readouterr().err
    strings = _npz(tmp_path, "s.npz", y_test=np.array(["cat"] * 10))
    assert main(["eval", str(three_class_tflite), "--data", str(strings)]) == 2
    assert "strings" in capfd.readouterr().err


def test_compress_refuses_the_same_data(tmp_path, capfd):
    bad = _npz(tmp_path, "nan.npz", x_test=_x_with(np.inf))
    assert main(["compress", "lenet5", "--data", str(bad), "-o", str(tmp_path / "o")]) == 2
    assert "NaN or infinite" in capfd.readouterr().err


@pytest.mark.parametrize("outputs, words", [(3, "labels up to 9, but tiny has 3 outputs"),
                                            (1, "tiny has 1 output, so top-1")])
def test_a_given_model_must_fit_the_labels_wherever_it_is_scored(tmp_path, outputs, words):
    # resolve_model is where compress, the budget search and sensitivity get their model
    import tf_keras as keras  # after kit (imported above by kit.cli), which sets TensorFlow's environment

    from kit.models import resolve_model

    model = keras.Sequential([keras.layers.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(outputs)],
                             name="tiny")
    data = load_data(_npz(tmp_path))
    with pytest.raises(DataError, match=words):
        resolve_model(model, data)
    path = tmp_path / "tiny.h5"
    model.save(path)
    with pytest.raises(DataError, match=words.replace("tiny", "tiny.h5")):
        resolve_model(str(path), data)
    fitting = keras.Sequential([keras.layers.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    assert resolve_model(fitting, data).model is fitting
