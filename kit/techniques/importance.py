"""Importance of every weight, and the masks that keep the important ones.

Scores (higher = keep), one array per kernel, same shape as the kernel, by a registered weight criterion
(kit.techniques.criteria; built in:
  magnitude  |w|
  gradient   mean over batches of |dL/dw|
  taylor     mean over batches of |w * dL/dw|: first-order estimate of the loss change when w is removed
  fisher     0.5 * F * w^2 with F the diagonal empirical Fisher (mean of per-sample squared gradients): the
             second-order (OBD) estimate of the loss change with the Fisher standing in for the Hessian)

Masks come from a target sparsity, ranked per layer or globally (one ranking over the raw scores of all
layers), or from a threshold: absolute (|w| < t), relative (|w| < t * RMS of the layer's weights, i.e. a
fraction of the layer's weight norm per weight, as in Han et al. 2015), or on the score itself (score < t).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kit.core.errors import DataError, KitError
from kit.techniques.criteria import criterion_class
from kit.techniques.masking import Masks

SCOPES = ("layer", "global")
THRESHOLD_KINDS = ("absolute", "relative", "score")
#: a global ranking never empties a layer: each keeps at least this fraction of its weights
MIN_KEEP = 0.01


def scores(model, kernels: dict, method: str = "magnitude", x: np.ndarray | None = None,
           y: np.ndarray | None = None, samples: int = 512, batch_size: int = 64) -> dict[str, np.ndarray]:
    """Importance of every weight of `kernels` ("layer/kernel" -> variable of `model`) by the registered weight
    criterion `method` (kit.techniques.criteria.WEIGHT_CRITERIA).

    Criteria that need data score the first `samples` inputs of `x`; without labels `y` the model's own top-1
    predictions stand in for them (the loss is then the model's confidence in its own answer).
    """
    cls = criterion_class("weight", method)
    if cls.needs_data:
        if x is None or len(x) == 0:
            raise DataError(f"importance method {method!r} needs input data", "pass a few hundred training inputs")
        x = x[:samples]
        if y is None and cls.uses_labels:
            y = model.predict(x, batch_size=512, verbose=0).argmax(axis=1)
        y = None if y is None else np.asarray(y)[:samples]
    return cls(batch_size)(model, kernels, x, y)


@dataclass
class Selection:
    """Masks and how they were chosen."""

    masks: Masks
    rule: str
    layer_sparsity: dict[str, float]
    total_sparsity: float


def select_sparsity(score: dict[str, np.ndarray], targets: dict[str, float], scope: str = "layer",
                    pooled: set[str] | None = None, previous: Masks | None = None) -> Selection:
    """Masks removing the lowest-scored weights: `targets[key]` of each kernel (scope "layer"), or, for the
    kernels in `pooled` (default: all) under scope "global", one threshold over all their raw scores reaching
    the size-weighted mean of their targets. Weights already masked in `previous` stay masked."""
    if scope not in SCOPES:
        raise KitError(f"unknown pruning scope {scope!r}", f"use one of {', '.join(SCOPES)}")
    score = _respect(score, previous)
    for k, t in targets.items():
        if not 0.0 <= t < 1.0:
            raise KitError(f"target sparsity of {k} is {t}, outside 0 <= x < 1")
    pooled = set(targets) if pooled is None else set(pooled) & set(targets)
    if scope == "layer":
        pooled = set()
    masks = {k: layer_mask(score[k], targets[k]) for k in targets if k not in pooled}
    if pooled:
        masks.update(_global_masks({k: score[k] for k in pooled}, {k: targets[k] for k in pooled}))
    masks = {k: masks[k] for k in targets}
    return _selection(masks, f"{scope} ranking to target sparsity")


def select_threshold(score: dict[str, np.ndarray], weights: dict[str, np.ndarray], threshold: float,
                     kind: str = "relative", previous: Masks | None = None) -> Selection:
    """Masks removing weights under a threshold: absolute |w| < t, relative |w| < t * RMS(layer), or score < t."""
    if kind not in THRESHOLD_KINDS:
        raise KitError(f"unknown threshold kind {kind!r}", f"use one of {', '.join(THRESHOLD_KINDS)}")
    if not (threshold >= 0 and math.isfinite(threshold)):
        raise KitError(f"threshold must be a finite number >= 0, got {threshold!r}")
    masks = {}
    for k, w in weights.items():
        if kind == "absolute":
            keep = np.abs(w) >= threshold
        elif kind == "relative":
            keep = np.abs(w) >= threshold * float(np.sqrt(np.mean(np.square(w))))
        else:
            keep = score[k] >= threshold
        if previous is not None and k in previous:
            keep &= previous[k]
        masks[k] = keep
    return _selection(masks, f"{kind} threshold {threshold:g}")


def _respect(score: dict[str, np.ndarray], previous: Masks | None) -> dict[str, np.ndarray]:
    if not previous:
        return score
    return {k: np.where(previous[k], s, -np.inf) if k in previous else s for k, s in score.items()}


def layer_mask(s: np.ndarray, target: float) -> np.ndarray:
    """Keep-mask of `s`'s shape that removes the `target` share of lowest scores."""
    n_prune = int(round(target * s.size))
    mask = np.ones(s.size, bool)
    if n_prune:
        mask[np.argsort(s, axis=None, kind="stable")[:n_prune]] = False
    return mask.reshape(s.shape)


def _global_masks(score: dict[str, np.ndarray], targets: dict[str, float]) -> Masks:
    keys = list(score)
    sizes = [score[k].size for k in keys]
    n_prune = int(round(sum(targets[k] * n for k, n in zip(keys, sizes))))
    flat = np.concatenate([score[k].reshape(-1) for k in keys])
    mask = np.ones(flat.size, bool)
    if n_prune:
        mask[np.argsort(flat, kind="stable")[:n_prune]] = False
    masks, start = {}, 0
    for k, n in zip(keys, sizes):
        m = mask[start:start + n]
        floor = max(1, math.ceil(MIN_KEEP * n))
        if m.sum() < floor:  # keep the layer alive: its best weights stay
            m = np.zeros(n, bool)
            m[np.argsort(-score[k].reshape(-1), kind="stable")[:floor]] = True
        masks[k] = m.reshape(score[k].shape)
        start += n
    return masks


def _selection(masks: Masks, rule: str) -> Selection:
    from kit.techniques.masking import layer_sparsity, sparsity

    return Selection(masks, rule, layer_sparsity(masks), sparsity(masks))
