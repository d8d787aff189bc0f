"""Fixtures every test folder may use, and the `slow` mark for tests that train a model.

Tests that need ../shared skip with a reason when it is absent. Fixtures used in one folder only live in
that folder's conftest.py; importable code the folders share lives in `tests.support`.
"""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import pytest

from tests.support.shared import SHARED

#: session fixtures that train a model: every test that uses one, directly or through another fixture, is slow
TRAINING_FIXTURES = frozenset({"digits_lenet", "held_out_lenet", "small_models"})


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by mark
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if TRAINING_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent: the shared models and reference outputs are not available")
    return SHARED


@pytest.fixture(scope="session")
def tiny_tflite(tmp_path_factory) -> Path:
    """A small float32 .tflite (16 -> 8 -> 4 dense) converted by the real TFLite converter."""
    import kit  # noqa: F401
    import numpy as np
    import tf_keras as keras

    from kit.convert.converter import ArtifactSpec, convert

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.InputLayer((16,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(4)])
    path = tmp_path_factory.mktemp("tiny") / "tiny.tflite"
    path.write_bytes(convert(model, ArtifactSpec("float32")))
    np.save(path.with_suffix(".npy"), np.ones((1, 16), np.float32))
    return path


@pytest.fixture(scope="session")
def digits():
    """scikit-learn digits as `kit` loads it (shuffled with seed 0)."""
    from kit.data import load_data

    return load_data("digits")


@pytest.fixture(scope="session")
def digits_lenet(digits):
    """LeNet-300-100 trained 15 epochs on digits, once per session; a test that may change it takes a
    `tests.support.models.copy_model` of it."""
    from tests.support.models import train_digits_lenet

    return train_digits_lenet(digits)
