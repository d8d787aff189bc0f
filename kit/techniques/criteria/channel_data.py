"""What the channel criteria read from a model and its calibration data: filters, batches, loss targets."""
from __future__ import annotations

import numpy as np

from kit.core.errors import DataError


def filters(layer) -> tuple[np.ndarray, np.ndarray | None]:
    """Output-channel-major weights (out, fan_in) and the bias of a source layer."""
    import tf_keras as keras

    if isinstance(layer, (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)):
        kernel = layer.pointwise_kernel.numpy()
    else:
        kernel = layer.kernel.numpy()
    bias = layer.bias.numpy() if getattr(layer, "use_bias", False) else None
    return kernel.reshape(-1, kernel.shape[-1]).T, bias


def batches(x, batch_size: int):
    """(start, batch) over calibration data: one array or a list of arrays (one per model input)."""
    xs = x if isinstance(x, (list, tuple)) else [x]
    n = len(xs[0])
    if n == 0:
        raise DataError("calibration data is empty")
    for start in range(0, n, batch_size):
        part = [np.asarray(a[start:start + batch_size], dtype=np.float32) for a in xs]
        yield start, part if isinstance(x, (list, tuple)) else part[0]


def loss_targets(model, x, y, batch_size: int):
    """Class labels (given, or the model's own top class) with cross-entropy; regression targets with MSE."""
    import tensorflow as tf

    out = model.predict(x, batch_size=batch_size, verbose=0)
    n = len(out)
    if y is not None and len(y) != n:
        raise DataError(f"calib_labels has {len(y)} entries for {n} calibration inputs")
    if out.shape[-1] == 1 or out.ndim != 2:
        if y is None:
            raise DataError("the taylor criterion needs calib_labels for a model that is not a classifier")
        targets = np.asarray(y, dtype=np.float32).reshape(out.shape)
        return targets, lambda t, o: tf.reduce_mean(tf.square(o - t))
    if y is None:
        labels = out.argmax(axis=-1)
    else:
        y = np.asarray(y)
        labels = y.argmax(axis=-1) if y.ndim == 2 and y.shape[1] == out.shape[1] else y.reshape(n)
    probs = bool(np.all(out >= 0) and np.allclose(out.sum(axis=-1), 1.0, atol=1e-3))

    def cross_entropy(t, o):
        return tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(t, o, from_logits=not probs))

    return labels.astype(np.int64), cross_entropy
