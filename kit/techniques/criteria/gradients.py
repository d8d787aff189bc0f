"""Gradient passes over a sample shared by the weight criteria that read dL/dw (gradient, taylor, fisher)."""
from __future__ import annotations

import numpy as np


def loss_fn(model):
    """Per-sample cross-entropy of `model`'s outputs (logits or probabilities, as the model produces them)."""
    import tensorflow as tf

    from kit.techniques.finetune import outputs_logits

    logits = outputs_logits(model)

    def per_sample(yb, out):
        out = tf.reshape(out, (tf.shape(out)[0], -1))
        return tf.keras.losses.sparse_categorical_crossentropy(yb, out, from_logits=logits)

    return per_sample


def batch_gradients(model, kernels: dict, x, y, batch_size: int) -> list[dict[str, np.ndarray]]:
    """dL/dw of every kernel, one dict per batch of the mean loss."""
    import tensorflow as tf

    per_sample = loss_fn(model)
    keys = list(kernels)
    variables = [kernels[k] for k in keys]

    @tf.function
    def grad(xb, yb):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(per_sample(yb, model(xb, training=False)))
        return tape.gradient(loss, variables)

    out = []
    for i in range(0, len(x), batch_size):
        g = grad(tf.constant(x[i:i + batch_size]), tf.constant(y[i:i + batch_size]))
        out.append({k: gi.numpy() for k, gi in zip(keys, g)})
    return out


def per_sample_squared_gradients(model, kernels: dict, x, y, batch_size: int) -> dict[str, np.ndarray]:
    """Mean over samples of (dL_i/dw)^2: the diagonal empirical Fisher."""
    import tensorflow as tf

    per_sample = loss_fn(model)
    keys = list(kernels)
    variables = [kernels[k] for k in keys]

    @tf.function
    def squared(xb, yb):
        with tf.GradientTape() as tape:
            losses = per_sample(yb, model(xb, training=False))
        jac = tape.jacobian(losses, variables)  # per sample: [batch, *kernel shape]
        return [tf.reduce_sum(tf.square(j), axis=0) for j in jac]

    total = {k: np.zeros(kernels[k].shape, np.float64) for k in keys}
    for i in range(0, len(x), batch_size):
        for k, s in zip(keys, squared(tf.constant(x[i:i + batch_size]), tf.constant(y[i:i + batch_size]))):
            total[k] += s.numpy()
    return {k: (v / len(x)).astype(np.float32) for k, v in total.items()}
