"""A small pruned + clustered model, really trained with TF-MOT on scikit-learn digits and converted to
full int8, plus float, hybrid and sparse (DENSIFY) conversions of it for the bad-input tests.

The models are built once per test session, whichever module asks first.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass

import numpy as np
import pytest


@dataclass
class SmallModels:
    int8: bytes  # pruned to 75 %, 8 clusters per layer, full int8 with int8 I/O
    float32: bytes
    hybrid: bytes  # dynamic-range: int8 weights, float activations
    float_io: bytes  # int8 inside, float32 input and output
    sparse: bytes  # TFLite sparsity: DENSIFY op + sparse tensors
    x_test: np.ndarray  # int8 inputs quantized with the model's input scale
    y_test: np.ndarray


@pytest.fixture(scope="session")
def small_models() -> SmallModels:
    import kit  # noqa: F401  (environment before TensorFlow)
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32).reshape(-1, 8, 8, 1)
    y = digits.target.astype(np.int64)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.layers.Input((8, 8, 1)),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        keras.layers.DepthwiseConv2D(3, padding="same", activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(10),
    ])
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile("adam", loss)
    model.fit(x, y, epochs=3, batch_size=64, verbose=0)
    pruned = tfmot.sparsity.keras.prune_low_magnitude(
        model, pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(0.75, begin_step=0, frequency=10))
    pruned.compile("adam", loss)
    pruned.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    clustered = tfmot.clustering.keras.cluster_weights(
        stripped, number_of_clusters=8, preserve_sparsity=True,
        cluster_centroids_init=tfmot.clustering.keras.CentroidInitialization.KMEANS_PLUS_PLUS)
    clustered.compile("adam", loss)
    clustered.fit(x, y, epochs=1, batch_size=64, verbose=0)
    final = tfmot.clustering.keras.strip_clustering(clustered)

    def convert(**options) -> bytes:
        converter = tf.lite.TFLiteConverter.from_keras_model(final)
        for key, value in options.items():
            setattr(converter, key, value)
        return converter.convert()

    int8 = convert(optimizations=[tf.lite.Optimize.DEFAULT],
                   representative_dataset=lambda: ([x[i:i + 1]] for i in range(0, 400, 4)),
                   target_spec=_int8_spec(tf), inference_input_type=tf.int8, inference_output_type=tf.int8)
    from kit.core.tflite_file import read_tflite

    info = read_tflite(int8)
    q = info.tensor(info.inputs[0]).quantization
    x_q = np.clip(np.round(x[:64] / q.scale + q.zero_point), -128, 127).astype(np.int8)
    return SmallModels(
        int8=int8,
        float32=convert(),
        hybrid=convert(optimizations=[tf.lite.Optimize.DEFAULT]),
        float_io=convert(optimizations=[tf.lite.Optimize.DEFAULT],
                         representative_dataset=lambda: ([x[i:i + 1]] for i in range(0, 400, 4)),
                         target_spec=_int8_spec(tf)),
        sparse=convert(optimizations=[tf.lite.Optimize.EXPERIMENTAL_SPARSITY]),
        x_test=x_q,
        y_test=y[:64],
    )


def _int8_spec(tf):
    spec = tf.lite.TargetSpec()
    spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return spec


@pytest.fixture(scope="session")
def compiler() -> str:
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ is not installed (Debian package g++)")
    return gxx
