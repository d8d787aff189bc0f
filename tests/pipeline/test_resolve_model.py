"""MODEL resolves the same way everywhere: a built-in name is trained on the data, a path is loaded, a model is kept."""
from __future__ import annotations

import numpy as np
import pytest

import kit  # noqa: F401
from kit.core.errors import DataError, KitError
from kit.models import ZOO, ResolvedModel, resolve_model


def _images(n: int = 40):
    """A tiny 28x28 data set (flat samples, like mnist5k) with all ten classes."""
    from kit.data import Dataset

    rng = np.random.default_rng(0)
    x = rng.random((n, 784), dtype=np.float32)
    y = np.arange(n) % 10
    return Dataset("images", x, y, x[:10], y[:10], x[:10], "random 28x28 images")


def test_flat_input_is_a_property_of_the_zoo_entry():
    assert ZOO["lenet-300-100"].flat_input and not ZOO["lenet5"].flat_input
    assert ZOO["lenet-300-100"].input_shape_for((64,)) == (64,)
    assert ZOO["lenet5"].input_shape_for((64,)) == (28, 28, 1)


@pytest.mark.slow
def test_flat_zoo_model_is_built_for_the_data_and_trained(digits):
    lines = []
    r = resolve_model("lenet-300-100", digits, seed=0, epochs=3, log=lines.append)
    assert isinstance(r, ResolvedModel)
    assert r.name == "lenet-300-100" and r.model.input_shape == (None, 64)
    assert r.trained_seconds is not None and r.trained_seconds > 0
    n = len(digits.x_train)
    assert lines == [f"training the built-in lenet-300-100 baseline on {n} samples of digits (3 epochs)"]
    accuracy = np.mean(r.model.predict(digits.x_test, verbose=0).argmax(axis=1) == digits.y_test)
    assert accuracy > 0.8  # trained, not just built (chance is 0.1)


@pytest.mark.slow
def test_train_split_chooses_the_training_samples(digits):
    lines = []
    r = resolve_model("lenet-300-100", digits, epochs=1, name="base", log=lines.append,
                      train_split=lambda d: d.__class__(d.name, d.x_train[:100], d.y_train[:100], d.x_test,
                                                        d.y_test, d.x_calib, d.description))
    assert r.name == "base"
    assert "on 100 samples of digits" in lines[0]


@pytest.mark.slow
def test_image_zoo_model_keeps_its_image_input():
    r = resolve_model("lenet5", _images(), epochs=1, log=lambda _: None)
    assert r.model.input_shape == (None, 28, 28, 1)
    assert r.model.output_shape == (None, 10) and r.trained_seconds is not None


def test_image_zoo_model_refuses_data_of_another_size(digits):
    with pytest.raises(DataError, match="expects"):
        resolve_model("lenet5", digits, epochs=1, log=lambda _: None)


def test_path_is_loaded(tmp_path, digits):
    import tf_keras as keras

    model = keras.Sequential([keras.layers.InputLayer((64,)), keras.layers.Dense(10, name="logits")])
    path = tmp_path / "mine.h5"
    model.save(path)
    for given in (path, str(path)):
        r = resolve_model(given, digits, log=pytest.fail)  # nothing trained, nothing logged
        assert r.name == "mine" and r.trained_seconds is None
        assert r.model is not model
        np.testing.assert_array_equal(r.model.get_layer("logits").get_weights()[0],
                                      model.get_layer("logits").get_weights()[0])
    assert resolve_model(path, digits, name="other").name == "other"


def test_model_object_passes_through(digits):
    import tf_keras as keras

    model = keras.Sequential([keras.layers.InputLayer((64,)), keras.layers.Dense(10)], name="given")
    r = resolve_model(model, digits, log=pytest.fail)
    assert r.model is model and r.name == "given" and r.trained_seconds is None
    assert resolve_model(model, digits, name="renamed").name == "renamed"


def test_unknown_name_lists_the_zoo(digits):
    with pytest.raises(KitError) as e:
        resolve_model("lenet7", digits)
    text = str(e.value)
    assert "lenet7" in text and "does not exist" in text
    assert all(name in text for name in ZOO)
