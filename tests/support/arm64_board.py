"""The emulated aarch64 board for tests and benchmarks: where CI built it, and small shipped artifacts.

CI builds the board once (`kit board arm64 DIR` in .ci/run) and exports `KIT_ARM64_BOARD=DIR`; tests that
need it skip with the reason when the variable or the board is absent.
"""
from __future__ import annotations

import os
from pathlib import Path

ENV = "KIT_ARM64_BOARD"


def board_dir() -> tuple[Path | None, str]:
    """(the built board folder, "") or (None, why there is none): `$KIT_ARM64_BOARD` only, so a run without it
    never picks up a board by accident."""
    from kit.core.arm64_board import board_ready

    value = os.environ.get(ENV)
    if not value:
        return None, f"{ENV} is not set: build the board with `kit board arm64 DIR` and export {ENV}=DIR"
    if not board_ready(value):
        return None, f"{ENV}={value} holds no finished board: run `kit board arm64 {value}`"
    return Path(value), ""


def digits_artifacts(folder: Path, formats: tuple[str, ...] = ("float32", "int8", "int8-sparse"),
                     prune_ratio: float = 0.8, epochs: int = 15) -> tuple[dict[str, Path], dict[str, Path], object]:
    """Train a small MLP on `digits`, magnitude-prune it (so the sparse encoding applies) and convert it.

    Returns ({format: .tflite}, {format: input batch .npy in the artifact's input dtype}, the test split x).
    """
    import numpy as np
    import tf_keras as keras

    import kit  # noqa: F401  (selects tf_keras before TensorFlow loads)
    from kit.convert.converter import ArtifactSpec, convert
    from kit.data import load_data

    folder.mkdir(parents=True, exist_ok=True)
    data = load_data("digits")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.Input((64,)), keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(data.x_train, data.y_train, epochs=epochs, batch_size=64, verbose=0)
    for layer in model.layers:
        weights = layer.get_weights()
        kernel = weights[0]
        weights[0] = np.where(np.abs(kernel) < np.quantile(np.abs(kernel), prune_ratio), 0, kernel).astype(kernel.dtype)
        layer.set_weights(weights)
    batch = data.x_test[:1].astype(np.float32)
    artifacts, inputs = {}, {}
    for fmt in formats:
        path = folder / f"digits-{fmt}.tflite"
        path.write_bytes(convert(model, ArtifactSpec.parse(fmt), data.x_calib))
        artifacts[fmt] = path
        inputs[fmt] = folder / f"digits-{fmt}-input.npy"
        np.save(inputs[fmt], quantized_input(path, batch))
    return artifacts, inputs, data.x_test


def quantized_input(model: Path, batch):
    """`batch` in the model's input dtype (int8 models take the quantized values, as on a device)."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    detail = Interpreter(model_path=str(model)).get_input_details()[0]
    if detail["dtype"] == np.float32:
        return batch.astype(np.float32)
    scale, zero = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(batch / scale + zero), info.min, info.max).astype(detail["dtype"])
