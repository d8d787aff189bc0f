"""Models trained on scikit-learn digits, built once per test session by the root conftest's fixtures.

Training is seeded (initial weights and batches), so a model is the same whichever test asks first.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import kit  # noqa: F401  (selects tf_keras before TensorFlow is imported)

#: held-out share of the digits training data (288 samples: one sample is 0.35 points)
VAL_FRACTION = 0.2


class HeldOutLenet(NamedTuple):
    """LeNet-300-100 trained without the validation split, with the data and the split it was kept from."""

    data: Any  # kit.data.Dataset
    split: Any  # kit.search.sensitivity validation split
    model: Any  # tf_keras.Model


def train_digits_lenet(data, epochs: int = 15):
    """LeNet-300-100 (64 inputs) trained on `data`'s training images."""
    import tf_keras as keras

    from kit.models import build, train_baseline

    keras.utils.set_random_seed(0)  # the initial weights too; train_baseline seeds the batches
    return train_baseline(build("lenet-300-100", input_shape=(64,)), data, epochs=epochs)


def held_out_digits_lenet() -> HeldOutLenet:
    """Digits, its validation split, and LeNet-300-100 trained 15 epochs on the rest of the training data."""
    from kit.data import load_data
    from kit.search.sensitivity import split_validation

    data = load_data("digits")
    split = split_validation(data, VAL_FRACTION)
    return HeldOutLenet(data, split, train_digits_lenet(split.train))


def copy_model(model):
    """A compiled copy with its own weights, so a test that changes it leaves the session's model as it was."""
    import tf_keras as keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    copy.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                 ["accuracy"])
    return copy


def fit_mse_and_save(model, x, y, path) -> Any:
    """Train a small regression or autoencoder model on mean squared error (Adam 1e-2, 10 epochs) and save it as
    .h5, as a user would hand it to the kit; returns the path."""
    import tf_keras as keras

    model.compile(keras.optimizers.Adam(1e-2), "mse")
    model.fit(x, y, epochs=10, batch_size=64, verbose=0)
    model.save(path)
    return path
