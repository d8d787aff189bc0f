"""Binary weight masks on ordinary tf_keras models: find the prunable kernels, apply masks, keep them applied.

The pruning techniques that do not use TF-MOT's wrappers (soft, learned,
iterative, importance-threshold pruning) hold their masks here, keyed like
`prune.kernel_sparsity` ("layer/kernel"), and train the plain model with a
callback that re-applies the masks after every optimizer step. The model
therefore stays an ordinary model: no wrappers to strip before conversion.
"""
from __future__ import annotations

import re
from typing import Iterable

import numpy as np

from kit.core.errors import ModelError
from kit.techniques.prune import KERNEL_NAMES, MASKABLE

Masks = dict[str, np.ndarray]


def prunable_kernels(model, skip: Iterable[str] = ()) -> dict:
    """"layer/kernel" -> tf.Variable for every maskable layer not matched by a `skip` regex."""
    skip = list(skip)
    out = {}
    for layer in flat_layers(model):
        if any(re.fullmatch(p, layer.name) for p in skip):
            continue
        if type(layer).__name__ not in MASKABLE:
            continue
        for w in layer.weights:
            short = w.name.split("/")[-1].split(":")[0]
            if short in KERNEL_NAMES:
                out[f"{layer.name}/{short}"] = w
    if not out:
        raise ModelError("the model has no Dense or convolution kernel to prune",
                         "check prune.skip, or prune a model with Dense/Conv layers")
    return out


def flat_layers(model) -> list:
    """Layers of the model with nested Sequential/Functional sub-models expanded."""
    layers = []
    for layer in model.layers:
        if hasattr(layer, "layers") and type(layer).__name__ in ("Sequential", "Functional", "Model"):
            layers.extend(flat_layers(layer))
        else:
            layers.append(layer)
    return layers


def apply_masks(kernels: dict, masks: Masks) -> None:
    """Zero the masked-out weights in place."""
    for key, mask in masks.items():
        var = kernels[key]
        var.assign(var.numpy() * mask.astype(var.dtype.as_numpy_dtype))


def sparsity(masks: Masks) -> float:
    """Fraction of masked-out weights over all masked kernels."""
    total = sum(m.size for m in masks.values())
    return float(sum(m.size - np.count_nonzero(m) for m in masks.values()) / total) if total else 0.0


def layer_sparsity(masks: Masks) -> dict[str, float]:
    return {k: float(1.0 - np.count_nonzero(m) / m.size) for k, m in masks.items()}


def masked_training_callback(kernels: dict, masks: Masks):
    """A Keras callback that keeps masked weights at zero after every optimizer step."""
    import tensorflow as tf
    import tf_keras as keras

    pairs = [(kernels[k], tf.constant(m.astype(kernels[k].dtype.as_numpy_dtype))) for k, m in masks.items()]

    @tf.function
    def enforce():
        for var, mask in pairs:
            var.assign(var * mask)

    class _Masked(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            enforce()

        def on_train_batch_end(self, batch, logs=None):
            enforce()

    return _Masked()


def fit_masked(model, kernels: dict, masks: Masks, x, y, step, teacher=None, epochs: int | None = None,
               lr: float | None = None, extra_callbacks=()):
    """Train with fixed masks (the recovery phase of every mask-based technique)."""
    from kit.techniques.finetune import fit

    apply_masks(kernels, masks)
    history = fit(model, x, y, step, teacher=teacher, epochs=epochs, lr=lr,
                  extra_callbacks=[*extra_callbacks, masked_training_callback(kernels, masks)],
                  sparsity_fn=lambda m: sparsity(masks))
    apply_masks(kernels, masks)
    return history


def current_masks(kernels: dict) -> Masks:
    """Masks read off the weights themselves (nonzero = kept)."""
    return {k: v.numpy() != 0 for k, v in kernels.items()}


def kernel_targets(kernels: dict, prune_plan) -> dict[str, tuple[float, float]]:
    """(initial, final) sparsity of every kernel whose layer a `kit.techniques.prune.PrunePlan` prunes."""
    by_layer = {p.layer: (p.initial_sparsity, p.final_sparsity) for p in prune_plan.layers}
    return {k: by_layer[k.split("/")[0]] for k in kernels if k.split("/")[0] in by_layer}
