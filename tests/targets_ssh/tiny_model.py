"""A tiny float tf_keras model converted with the real TFLite converter, built once per test process."""
from __future__ import annotations

import functools
from pathlib import Path


@functools.cache
def tiny_tflite_bytes() -> bytes:
    import kit  # noqa: F401  (selects tf_keras before TensorFlow is imported)
    import numpy as np
    import tensorflow as tf
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([
        tf_keras.layers.Input((16,)),
        tf_keras.layers.Dense(32, activation="relu"),
        tf_keras.layers.Dense(4),
    ])
    model(np.zeros((1, 16), np.float32))
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def write_tiny_model(path: Path) -> Path:
    path.write_bytes(tiny_tflite_bytes())
    return path
