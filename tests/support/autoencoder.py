"""A small anomaly-detection autoencoder on scikit-learn digits, like MLPerf Tiny's ad01 in miniature.

It is trained on digit images only (the normal data); its test split holds held-out digits (label 0) and
held-out digits with Gaussian noise (label 1, the anomalies), so the ROC AUC of its reconstruction error is
measured on anomalies that are not trivially apart.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

import kit  # noqa: F401  (selects tf_keras before TensorFlow is imported)


class AutoencoderFiles(NamedTuple):
    model: Path  # .h5, 64 -> 16 -> 64
    data: Path  # .npz: x_train digits with y_train 0, x_test digits and noisy digits, 0/1 anomaly labels


def make_autoencoder(folder: Path, epochs: int = 30) -> AutoencoderFiles:
    import tf_keras as keras

    from kit.data import load_data

    digits = load_data("digits")
    rng = np.random.default_rng(0)
    normal = digits.x_test[:200]
    noise = np.clip(digits.x_test[200:300] + rng.normal(0, 0.15, (100, 64)), 0, 1).astype(np.float32)
    x_test = np.concatenate([normal, noise])
    y_test = np.concatenate([np.zeros(len(normal), np.int64), np.ones(len(noise), np.int64)])
    data = folder / "digits_anomaly.npz"
    np.savez(data, x_train=digits.x_train, y_train=np.zeros(len(digits.x_train), np.int64), x_test=x_test,
             y_test=y_test)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.Input((64,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(64, activation="sigmoid")], name="digits_ae")
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    model.fit(digits.x_train, digits.x_train, epochs=epochs, batch_size=64, verbose=0)
    path = folder / "digits_ae.h5"
    model.save(path)
    return AutoencoderFiles(path, data)
