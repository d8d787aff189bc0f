"""Regularisation-driven sparsity: train with a penalty that pushes weights (or whole units) towards zero.

Kinds, with Keras' regularizer semantics (the penalty is added to the loss as a sum over the kernels):
  l1           l1 * sum |w|
  l2           l2 * sum w^2
  elasticnet   l1 * sum |w| + l2 * sum w^2
  group_lasso  group * sum over output units u of sqrt(n_u) * ||w_u||_2 (whole neurons / filters go to zero;
               the per-unit norms it leaves are what the structured pruner's l2 criterion ranks)
No mask is applied here: the report shows how far the weights moved towards zero (fraction under a
threshold, histograms before and after), and pruning afterwards removes them with little loss.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from kit.core.errors import KitError
from kit.techniques.masking import prunable_kernels

KINDS = ("l1", "l2", "elasticnet", "group_lasso")
HISTOGRAM_BINS = 81


@dataclass
class RegularizeReport:
    kind: str
    strengths: dict[str, float]
    epochs: int
    threshold: float
    near_zero_before: float  # fraction of kernel weights with |w| < threshold, before
    near_zero_after: float
    #: per kernel: near-zero fraction before/after, units, and dead units (unit L2 norm under the threshold)
    layers: dict[str, dict] = field(default_factory=dict)
    histogram: dict[str, list] = field(default_factory=dict)  # bin edges, counts before and after
    unit_norms: dict[str, list[float]] = field(default_factory=dict)  # per output unit L2 norm, after

    def to_dict(self) -> dict:
        return asdict(self)


def penalty_fn(kernels: dict, kind: str, l1: float = 0.0, l2: float = 0.0, group: float = 0.0):
    """A zero-argument callable returning the penalty over `kernels` (for `model.add_loss`)."""
    import tensorflow as tf

    if kind not in KINDS:
        raise KitError(f"unknown regularisation kind {kind!r}", f"use one of {', '.join(KINDS)}")
    variables = list(kernels.items())

    def penalty():
        total = tf.constant(0.0)
        for key, w in variables:
            if kind in ("l1", "elasticnet") and l1:
                total += l1 * tf.reduce_sum(tf.abs(w))
            if kind in ("l2", "elasticnet") and l2:
                total += l2 * tf.reduce_sum(tf.square(w))
            if kind == "group_lasso" and group:
                units = tf.reshape(w, (-1, _units(w.shape, key)))
                size = float(units.shape[0])
                total += group * np.sqrt(size) * tf.reduce_sum(tf.sqrt(tf.reduce_sum(tf.square(units), 0) + 1e-12))
        return total

    return penalty


def regularize(model, kind: str, x: np.ndarray, y: np.ndarray, finetune_step, l1: float = 0.0, l2: float = 0.0,
               group: float = 0.0, epochs: int = 4, learning_rate: float | None = None, threshold: float = 1e-3,
               skip=(), teacher=None):
    """Train a copy of `model` with the penalty; returns (regularised model, report). `model` is not changed.

    `finetune_step` (a recipe FinetuneStep) supplies batch size, validation split and distillation.
    """
    from kit.techniques.finetune import fit
    from kit.techniques.prune import private_copy

    work = private_copy(model)
    kernels = prunable_kernels(work, skip)
    before = {k: v.numpy().copy() for k, v in kernels.items()}
    work.add_loss(penalty_fn(kernels, kind, l1, l2, group))
    fit(work, x, y, finetune_step, teacher=teacher, epochs=epochs, lr=learning_rate)
    result = private_copy(work)  # the same weights without the penalty attached
    after = {k: v.numpy() for k, v in prunable_kernels(result, skip).items()}
    strengths = {"l1": {"l1": l1}, "l2": {"l2": l2}, "elasticnet": {"l1": l1, "l2": l2},
                 "group_lasso": {"group": group}}[kind]
    report = RegularizeReport(kind, strengths, epochs, threshold, near_zero_fraction(before, threshold),
                              near_zero_fraction(after, threshold), histogram=weight_histogram(before, after),
                              unit_norms={k: unit_norms(w, k).round(6).tolist() for k, w in after.items()})
    for k in after:
        norms = unit_norms(after[k], k)
        report.layers[k] = {"near_zero_before": near_zero_fraction({k: before[k]}, threshold),
                            "near_zero_after": near_zero_fraction({k: after[k]}, threshold),
                            "units": int(norms.size), "dead_units": int(np.sum(norms < threshold))}
    return result, report


def near_zero_fraction(weights: dict[str, np.ndarray], threshold: float) -> float:
    """Fraction of all weights with |w| < threshold: the sparsity a threshold would reach before any mask."""
    total = sum(w.size for w in weights.values())
    return float(sum(np.count_nonzero(np.abs(w) < threshold) for w in weights.values()) / total) if total else 0.0


def unit_norms(kernel: np.ndarray, key: str = "kernel") -> np.ndarray:
    """L2 norm of each output unit's weights: last axis of a Dense or Conv kernel, channel x multiplier of a
    depthwise kernel (`key` ends in "depthwise_kernel")."""
    return np.sqrt(np.sum(np.square(kernel.reshape(-1, _units(kernel.shape, key))), axis=0))


def weight_histogram(before: dict[str, np.ndarray], after: dict[str, np.ndarray]) -> dict[str, list]:
    """Counts of all kernel weights over one set of symmetric bins, before and after."""
    b = np.concatenate([w.reshape(-1) for w in before.values()])
    a = np.concatenate([w.reshape(-1) for w in after.values()])
    limit = float(np.quantile(np.abs(np.concatenate([a, b])), 0.999)) or 1.0
    edges = np.linspace(-limit, limit, HISTOGRAM_BINS + 1)
    return {"edges": edges.round(6).tolist(), "before": np.histogram(np.clip(b, -limit, limit), edges)[0].tolist(),
            "after": np.histogram(np.clip(a, -limit, limit), edges)[0].tolist()}


def _units(shape, key: str) -> int:
    return int(shape[-1]) * (int(shape[-2]) if key.endswith("depthwise_kernel") else 1)
