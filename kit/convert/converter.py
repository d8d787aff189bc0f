"""Keras model -> TFLite flatbuffer, one function per artifact format.

Formats: float32, float16, dynamic (int8 weights, float activations), int8
(full integer with a representative data set), each optionally with TFLite's
sparse tensor encoding. QAT models convert through the int8 path.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kit.core.artifact import Format
from kit.core.errors import KitError
from kit.core.native import capture_native_output, runtime_messages
from kit.core.vocab import PRECISIONS


@dataclass(frozen=True)
class ArtifactSpec(Format):
    """What to build: a format (precision + encoding) and the I/O type of full-int8 models."""

    io: str = "int8"


def convert(model, spec: ArtifactSpec, calibration: np.ndarray | None = None) -> bytes:
    import tensorflow as tf

    if spec.precision not in PRECISIONS:
        raise KitError(f"the converter makes {', '.join(PRECISIONS)} models, not {spec.name}")
    c = tf.lite.TFLiteConverter.from_keras_model(model)
    opts = []
    if spec.precision in ("float16", "dynamic", "int8"):
        opts.append(tf.lite.Optimize.DEFAULT)
    if spec.sparse:
        opts.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    c.optimizations = opts
    if spec.precision == "float16":
        c.target_spec.supported_types = [tf.float16]
    if spec.precision == "int8":
        if calibration is None or len(calibration) == 0:
            raise KitError("full-int8 conversion needs a representative data set", "give data with x_calib or x_train")
        calib = calibration.astype(np.float32)

        def representative():
            for i in range(len(calib)):
                yield [calib[i:i + 1]]

        c.representative_dataset = representative
        c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if spec.io != "float32":
            io_type = {"int8": tf.int8, "uint8": tf.uint8}[spec.io]
            c.inference_input_type = io_type
            c.inference_output_type = io_type
    with capture_native_output() as log:
        try:
            return c.convert()
        except Exception as e:
            failure = e
    raise KitError(f"the TFLite converter failed for {spec.name}: {str(failure).splitlines()[0][:300]}",
                   runtime_messages(log.text) or None)
