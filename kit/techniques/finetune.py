"""Fine-tuning, optionally with knowledge distillation from the unpruned model.

The loss follows what the model computes (kit.core.metrics): a classifier trains on cross-entropy against its
class labels; an autoencoder on the mean squared error of its reconstruction against its inputs, a regression
model on the MSE against its targets, and with distillation both also on the MSE against the original model's
outputs (a classifier on the KL divergence of its softened class scores).
The teacher's outputs are computed once and packed next to the labels, so the
student trains with plain `model.fit` and every TF-MOT callback keeps working.
Augmentation follows the same rule: shifted copies of the training images are
made up front (the held-out validation tail is never copied), and the teacher
labels every copy, so a small training set teaches more of the teacher's function.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from kit.core.errors import DataError

if TYPE_CHECKING:
    from kit.steps.finetune import Augment, Distill, FinetuneStep


@dataclass
class History:
    """Per-epoch figures for the report: accuracy against sparsity during the schedule."""

    epoch: list[int] = field(default_factory=list)
    sparsity: list[float | None] = field(default_factory=list)
    val_accuracy: list[float | None] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)


def outputs_logits(model) -> bool:
    """False when the model ends in a softmax (its outputs are probabilities)."""
    import tf_keras as keras

    last = model.layers[-1]
    last = getattr(last, "layer", last)  # through TF-MOT wrappers
    act = getattr(last, "activation", None)
    if isinstance(last, keras.layers.Softmax):
        return False
    return act is not keras.activations.softmax


def to_logits(outputs: np.ndarray, from_logits: bool) -> np.ndarray:
    return outputs if from_logits else np.log(np.clip(outputs, 1e-12, 1.0))


def compile_for_training(model, lr: float, from_logits: bool, distill: Distill | None,
                         task: str = "classification"):
    import tensorflow as tf
    import tf_keras as keras

    if task != "classification":
        _compile_reconstruction(model, lr, distill)
        return
    if distill is None:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
        model.compile(keras.optimizers.Adam(lr), loss, ["accuracy"])
        return
    T, alpha = float(distill.temperature), float(distill.alpha)

    def student_logits(s):
        return s if from_logits else tf.math.log(tf.clip_by_value(s, 1e-12, 1.0))

    def kd_loss(y, s):
        labels = tf.cast(y[:, 0], tf.int32)
        teacher = y[:, 1:]
        s = student_logits(s)
        hard = keras.losses.sparse_categorical_crossentropy(labels, s, from_logits=True)
        soft = keras.losses.kl_divergence(tf.nn.softmax(teacher / T), tf.nn.softmax(s / T)) * (T * T)
        return alpha * hard + (1.0 - alpha) * soft

    def accuracy(y, s):
        return tf.cast(tf.equal(tf.cast(y[:, 0], tf.int64), tf.argmax(s, axis=-1)), tf.float32)

    model.compile(keras.optimizers.Adam(lr), kd_loss, [accuracy])


def _compile_reconstruction(model, lr: float, distill: Distill | None) -> None:
    """MSE against the targets (an autoencoder's inputs, a regression model's values); with distillation
    `alpha` of it plus `1 - alpha` of the MSE against the teacher's outputs, packed after the targets
    (kit.techniques.finetune.reconstruction_targets). The temperature softens class scores only: unused here."""
    import tensorflow as tf
    import tf_keras as keras

    if distill is None:
        model.compile(keras.optimizers.Adam(lr), "mse")
        return
    alpha = float(distill.alpha)

    def distilled_mse(y, s):
        s = tf.reshape(s, [tf.shape(s)[0], -1])
        n = tf.shape(s)[1]
        hard = tf.reduce_mean(tf.square(y[:, :n] - s), axis=-1)
        soft = tf.reduce_mean(tf.square(y[:, n:] - s), axis=-1)
        return alpha * hard + (1.0 - alpha) * soft

    model.compile(keras.optimizers.Adam(lr), distilled_mse)


def targets(y: np.ndarray, teacher_logits: np.ndarray | None) -> np.ndarray:
    if teacher_logits is None:
        return y
    return np.concatenate([y.reshape(-1, 1).astype(np.float32), teacher_logits.astype(np.float32)], axis=1)


def reconstruction_targets(task: str, x: np.ndarray, y: np.ndarray, output_shape: tuple) -> np.ndarray:
    """What a non-classifier trains towards, in the model's output shape: an autoencoder its inputs, a regression
    model its target values."""
    source = (x if task == "autoencoder" else y).astype(np.float32)
    if any(d is None for d in output_shape):  # sized by the inputs (a fully convolutional autoencoder): as given
        return source
    return source.reshape((len(source), *(int(d) for d in output_shape)))


def fit(model, x: np.ndarray, y: np.ndarray, step: FinetuneStep, teacher=None, extra_callbacks=(),
        epochs: int | None = None, lr: float | None = None, sparsity_fn=None, progress: bool = True,
        task: str = "classification") -> History:
    """Train `model` in place with the loss of `task` (kit.core.metrics.TASKS). `teacher` (a Keras model)
    enables distillation when the recipe asks for it."""
    import tf_keras as keras

    from_logits = outputs_logits(model)
    distill = step.distill if teacher is not None else None
    n_val = int(len(x) * step.validation_split)
    x_fit, y_fit = x[:len(x) - n_val], y[:len(y) - n_val]
    if step.augment is not None:
        x_fit, y_fit = augmented(x_fit, y_fit, step.augment)

    def packed(xs, ys):
        if task != "classification":
            want = reconstruction_targets(task, xs, ys, tuple(model.output_shape[1:]))
            if distill is None:
                return want
            taught = teacher.predict(xs, batch_size=512, verbose=0).astype(np.float32)
            return np.concatenate([want.reshape(len(xs), -1), taught.reshape(len(xs), -1)], axis=1)
        if distill is None:
            return ys
        return targets(ys, to_logits(teacher.predict(xs, batch_size=512, verbose=0), outputs_logits(teacher)))

    validation = (x[len(x) - n_val:], packed(x[len(x) - n_val:], y[len(y) - n_val:])) if n_val else None
    compile_for_training(model, lr or step.learning_rate, from_logits, distill, task)
    history = History()

    class _Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            history.epoch.append(epoch + 1)
            history.sparsity.append(sparsity_fn(model) if sparsity_fn else None)
            history.val_accuracy.append(logs.get("val_accuracy"))
            history.loss.append(float(logs.get("loss", float("nan"))))

    steps = -(-len(x_fit) // step.batch_size)

    class _RecalibrateBN(keras.callbacks.Callback):
        # BatchNormalization's moving statistics move with momentum 0.99 per step: after the few dozen steps of a
        # small-data fine-tune they still describe the dense model, not the pruned one, and validation, the
        # next steps and the shipped model run on them. Re-estimate them from the training inputs at
        # the end of every epoch, before Keras validates.
        def on_train_batch_end(self, batch, logs=None):
            if batch + 1 == steps:
                recalibrate_batchnorm(model, x_fit)

    cbs = [*extra_callbacks, _RecalibrateBN(), _Record()]
    if progress:
        cbs.append(_progress_bar(epochs or step.epochs))
    model.fit(x_fit, packed(x_fit, y_fit), epochs=epochs or step.epochs, batch_size=step.batch_size,
              validation_data=validation, verbose=0, callbacks=cbs, shuffle=True)
    return history


def recalibrate_batchnorm(model, x: np.ndarray, max_samples: int = 2048) -> None:
    """Set every BatchNormalization's moving mean and variance to the statistics of its inputs over `x`.

    One inference-mode pass in which only the BN layers normalize with (and store) the batch statistics: Dropout
    stays off, and TF-MOT's pruning step and masks do not move (they only update with training=True).
    """
    import tf_keras as keras

    from kit.techniques.prune import _flat_layers

    bns = [layer for layer in _flat_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]
    if not bns or len(x) < 2:
        return
    saved = [(layer.momentum, layer.trainable) for layer in bns]
    for layer in bns:
        layer.momentum, layer.trainable = 0.0, True  # a frozen BN layer ignores training=True
        layer.call = _batch_statistics_call(type(layer).call.__get__(layer))
    try:
        model(x[:max_samples], training=False)
    finally:
        for layer, (momentum, trainable) in zip(bns, saved):
            layer.momentum, layer.trainable = momentum, trainable
            del layer.call


def _batch_statistics_call(call):
    def batch_statistics(inputs, training=None, **kwargs):
        return call(inputs, training=True)
    return batch_statistics


def augmented(x: np.ndarray, y: np.ndarray, augment: Augment, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The images followed by `copies` randomly shifted copies (zeros move in), shuffled together.

    Flat inputs whose length is a perfect square (MNIST's 784 = 28x28 for a fully connected network) are
    shifted as square one-channel images and flattened back."""
    side = round(float(np.sqrt(x.shape[1]))) if x.ndim == 2 else 0
    if side > 1 and side * side == x.shape[1]:
        xa, ya = augmented(x.reshape(len(x), side, side, 1), y, augment, seed)
        return xa.reshape(len(xa), -1), ya
    if x.ndim != 4:
        raise DataError(f"augment shifts images (samples, height, width, channels) or flat square images; "
                        f"these inputs are {x.shape[1:]}", "remove [finetune.augment] for non-image data")
    rng = np.random.default_rng(seed)
    s = augment.shift
    padded = np.pad(x, ((0, 0), (s, s), (s, s), (0, 0)))
    h, w = x.shape[1:3]
    xs, ys = [x], [y]
    for _ in range(augment.copies):
        dy, dx = rng.integers(-s, s + 1, size=(2, len(x)))
        copy = np.empty_like(x)
        for oy in range(-s, s + 1):
            for ox in range(-s, s + 1):
                idx = np.flatnonzero((dy == oy) & (dx == ox))
                copy[idx] = padded[idx, s - oy:s - oy + h, s - ox:s - ox + w]
        xs.append(copy)
        ys.append(y)
    order = rng.permutation(len(x) * (augment.copies + 1))
    return np.concatenate(xs)[order], np.concatenate(ys)[order]


def steps_per_epoch(n_samples: int, step: FinetuneStep) -> int:
    n_train = n_samples - int(n_samples * step.validation_split)
    if step.augment is not None:
        n_train *= step.augment.copies + 1
    return max(1, -(-n_train // step.batch_size))


def _progress_bar(epochs: int):
    import sys

    import tf_keras as keras
    from tqdm.auto import tqdm

    class _Bar(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.bar = tqdm(total=epochs, desc="  fine-tune", unit="epoch", leave=False, file=sys.stderr,
                            disable=not sys.stderr.isatty())

        def on_epoch_end(self, epoch, logs=None):
            self.bar.set_postfix(loss=f"{(logs or {}).get('loss', 0):.3f}")
            self.bar.update(1)

        def on_train_end(self, logs=None):
            self.bar.close()

    return _Bar()
