"""Firmware built for real: the `kit firmware` project's Makefile against the pinned TFLM tree, for the host
and for a Cortex-M4F board run in QEMU. TFLM objects are cached across runs (`~/.cache/prunekit/tflm`),
so only the first session on a machine compiles TFLM (a few minutes); later ones link in seconds.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.support.shared import SHARED

BOARD = "mps2-an386"
KERNELS = "cmsis_nn"


def tflm_tree() -> Path:
    from firmware_tools.build import default_tree

    tree = default_tree()
    if tree is None:
        pytest.skip(f"no TFLM tree: {SHARED}/third_party/tflite-micro is absent and KIT_TFLM_ROOT is not set")
    return tree


def need_tools(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (Debian: gcc-arm-none-eabi libnewlib-arm-none-eabi "
                    "libstdc++-arm-none-eabi-newlib qemu-system-arm)")


@dataclass
class Firmware:
    name: str
    model: bytes  # what the firmware runs (compressed when the project compressed it)
    source: Path
    project: Path
    image: Path


def build_firmware(model_path: Path, root: Path, target: str, kernels: str, compress: bool = False) -> Firmware:
    from firmware_tools.build import build
    from firmware_tools.compress import METHODS
    from firmware_tools.project import generate_project

    project = generate_project(model_path, root / f"{model_path.stem}-{target}", methods=METHODS if compress else (),
                               tflm=tflm_tree())
    built = build(project.out_dir, target, kernels)
    model = project.compression.model if project.compression else model_path.read_bytes()
    return Firmware(model_path.stem, model, model_path, project.out_dir, built.image)


def lenet_300_100_pruned(path: Path) -> Path:
    """LeNet-300-100 trained briefly on digits (upsampled to 28x28), 90 % of each layer's weights zeroed by
    magnitude, full int8: a pruned model whose firmware stores sparse tensors compressed."""
    import tensorflow as tf
    import tf_keras as keras
    from sklearn.datasets import load_digits

    import kit  # noqa: F401  (environment before TensorFlow)

    digits = load_digits()
    x = np.kron(digits.images / 16.0, np.ones((4, 4)))[:, 2:30, 2:30].astype(np.float32)[..., None]
    y = digits.target
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.Input((28, 28, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(300, activation="relu"), keras.layers.Dense(100, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, batch_size=64, verbose=0)
    for layer in model.layers[1:]:
        w, b = layer.get_weights()
        w[np.abs(w) < np.quantile(np.abs(w), 0.9)] = 0.0
        layer.set_weights([w, b])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[i:i + 1]] for i in range(100))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    path.write_bytes(converter.convert())
    return path


@pytest.fixture(scope="session")
def firmware_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("firmware")


@pytest.fixture(scope="session")
def lenet_pruned(tmp_path_factory) -> Path:
    return lenet_300_100_pruned(tmp_path_factory.mktemp("lenet") / "lenet_300_100_pruned_int8.tflite")
