"""Conversion and runtime helpers shared by the structured-pruning tests (real converter, LiteRT and TFLM)."""
from __future__ import annotations

import numpy as np

import kit  # noqa: F401  (environment before TensorFlow)


def to_tflite(model, calib: np.ndarray | None = None) -> bytes:
    """Float TFLite, or full-int8 (int8 inputs/outputs, built-in int8 ops only) when `calib` is given."""
    from kit.convert.converter import ArtifactSpec, convert

    return convert(model, ArtifactSpec("float32" if calib is None else "int8", io="int8"), calib)


def _params(detail: dict) -> tuple[float, int]:
    q = detail["quantization_parameters"]  # both LiteRT and TFLM report this form
    return float(q["scales"][0]), int(q["zero_points"][0])


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return x.astype(np.float32)
    scale, zero = _params(detail)
    return np.clip(np.round(x / scale + zero), -128, 127).astype(detail["dtype"])


def _dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return y
    scale, zero = _params(detail)
    return (y.astype(np.float32) - zero) * scale


def run_litert(flatbuffer: bytes, x: np.ndarray, raw: bool = False) -> np.ndarray:
    """Outputs for every sample of `x` on LiteRT (dequantized unless raw)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=flatbuffer, num_threads=1)
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    out = []
    for sample in x:
        it.set_tensor(i["index"], _quantize(sample[None], i))
        it.invoke()
        y = it.get_tensor(o["index"])
        out.append(y if raw else _dequantize(y, o))
    return np.concatenate(out)


def run_tflm(flatbuffer: bytes, x: np.ndarray, raw: bool = False) -> np.ndarray:
    """Outputs for every sample of `x` on the TensorFlow Lite Micro interpreter."""
    from tflite_micro.python.tflite_micro import runtime

    it = runtime.Interpreter.from_bytes(flatbuffer)
    i, o = it.get_input_details(0), it.get_output_details(0)
    out = []
    for sample in x:
        it.set_input(_quantize(sample[None], i), 0)
        it.invoke()
        y = it.get_output(0)
        out.append(y if raw else _dequantize(y, o))
    return np.concatenate(out)


def masked_original(model, result):
    """The original model with the *consumers'* weights for removed channels set to zero.

    Removed channels reach the output only through layers that mix channels
    (Conv, Dense, the pointwise half of SeparableConv), so this model computes
    exactly what the pruned model computes: an independent check of the surgery.
    """
    import tf_keras as keras

    masked = keras.models.clone_model(model)
    masked.set_weights(model.get_weights())
    for name, kept in result.kept_inputs.items():
        layer = masked.get_layer(name)
        w = layer.get_weights()
        if isinstance(layer, (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)):
            dm = int(layer.depth_multiplier)
            rows = np.setdiff1d(np.arange(w[1].shape[-2] // dm), kept)
            rows = (rows[:, None] * dm + np.arange(dm)).ravel()
            w[1][..., rows, :] = 0
        elif type(layer).__name__ in ("Conv1D", "Conv2D", "Conv3D", "Dense"):
            rows = np.setdiff1d(np.arange(w[0].shape[-2]), kept)
            w[0][..., rows, :] = 0
        else:
            continue
        layer.set_weights(w)
    return masked
