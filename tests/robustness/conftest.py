"""Small real .tflite models for the bad-input tests: a tiny Keras model (not trained; the reader and the
firmware generator do not care about accuracy) converted by the kit's own converter."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest


@dataclass
class TinyModels:
    float32: bytes
    int8: bytes  # full int8 with int8 I/O
    sparse: bytes  # TFLite sparse tensor encoding


@pytest.fixture(scope="session")
def tiny_models() -> TinyModels:
    import kit  # noqa: F401  (environment before TensorFlow)
    import tf_keras as keras

    from kit.convert.converter import ArtifactSpec, convert

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.layers.Input((8, 8, 1)),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(32, activation="relu", name="dense"),
        keras.layers.Dense(10, name="dense_1"),
    ], name="sequential")  # fixed names: tests find tensors by them, whatever ran before in the session
    dense = model.layers[2]
    w, b = dense.get_weights()
    w[np.abs(w) < np.quantile(np.abs(w), 0.9)] = 0.0  # 90 % zeros so the sparse encoding is chosen
    dense.set_weights([w, b])
    calib = np.random.default_rng(0).random((16, 8, 8, 1), dtype=np.float32)
    return TinyModels(
        float32=convert(model, ArtifactSpec("float32")),
        int8=convert(model, ArtifactSpec("int8"), calib),
        sparse=convert(model, ArtifactSpec("float32", "sparse")),
    )
