"""Iterative prune-retrain cycles (Han et al. 2015): prune part of the way, retrain with the mask fixed, repeat.

Each cycle scores the surviving weights (magnitude, gradient, Taylor or Fisher; see kit.techniques.importance),
removes the lowest-scored ones and retrains with the mask applied after every step; pruned weights stay
pruned. The sparsity steps are geometric in the surviving fraction, so every cycle removes the same
share of what is left. One cycle is one-shot pruning; TF-MOT's polynomial schedule (kit.techniques.prune) is the
gradual alternative. With a threshold instead of a target, every cycle removes the weights under it
(Han et al. use a fraction of each layer's weight spread), and the sparsity is whatever that leaves.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from kit.core.errors import KitError
from kit.techniques.importance import THRESHOLD_KINDS, scores, select_sparsity, select_threshold
from kit.techniques.masking import Masks, fit_masked, sparsity


@dataclass
class IterativeReport:
    importance: str
    scope: str
    cycles: int
    epochs_per_cycle: list[int]
    rule: str
    final_sparsity: float
    layer_sparsity: dict[str, float]
    records: list[dict] = field(default_factory=list)  # per cycle: target, sparsity, validation accuracy

    def to_dict(self) -> dict:
        return asdict(self)


def cycle_targets(final: float, cycles: int, initial: float = 0.0) -> list[float]:
    """Sparsity after each cycle: the kept fraction shrinks by the same factor every cycle."""
    if cycles < 1:
        raise KitError(f"cycles must be >= 1, got {cycles}")
    keep0, keep1 = 1.0 - initial, 1.0 - final
    return [1.0 - keep0 * (keep1 / keep0) ** ((k + 1) / cycles) for k in range(cycles)]


def iterative_prune(model, kernels: dict, targets: dict[str, float], x: np.ndarray, y: np.ndarray,
                    finetune_step, cycles: int = 3, importance: str = "magnitude", scope: str = "layer",
                    threshold: float | None = None, threshold_kind: str = "relative", teacher=None,
                    score_samples: int = 512, pooled: set[str] | None = None, log=None):
    """Prune `kernels` of `model` in `cycles` prune-retrain rounds, training in place.

    `finetune_step.epochs` is the whole retraining budget, split as evenly as possible over the cycles
    (earlier cycles take the remainder; at least one epoch each), so one-shot and iterative runs train
    for the same number of epochs. Under scope
    "global" the kernels in `pooled` (default all) share one ranking. Returns (masks, report, history
    of all cycles).
    """
    from kit.techniques.finetune import History

    if threshold is not None and threshold_kind not in THRESHOLD_KINDS:
        raise KitError(f"unknown threshold kind {threshold_kind!r}", f"use one of {', '.join(THRESHOLD_KINDS)}")
    base, extra = divmod(finetune_step.epochs, cycles)
    epochs = [max(1, base + (c < extra)) for c in range(cycles)]
    steps = {k: cycle_targets(t, cycles) for k, t in targets.items()}
    masks: Masks | None = None
    records, rule, history = [], "", History()
    for c in range(cycles):
        score = scores(model, kernels, importance, x[:score_samples], y[:score_samples])
        if threshold is not None:
            chosen = select_threshold(score, {k: kernels[k].numpy() for k in targets}, threshold, threshold_kind,
                                      previous=masks)
        else:
            chosen = select_sparsity({k: score[k] for k in targets}, {k: s[c] for k, s in steps.items()}, scope,
                                     pooled=pooled, previous=masks)
        masks, rule = chosen.masks, chosen.rule
        h = fit_masked(model, {k: kernels[k] for k in masks}, masks, x, y, finetune_step, teacher=teacher,
                       epochs=epochs[c])
        history.epoch += [len(history.epoch) + e for e in h.epoch]
        history.sparsity += h.sparsity
        history.val_accuracy += h.val_accuracy
        history.loss += h.loss
        val = h.val_accuracy[-1] if h.val_accuracy else None
        records.append({"cycle": c + 1, "target": float(np.mean([s[c] for s in steps.values()])),
                        "sparsity": chosen.total_sparsity, "val_accuracy": val})
        if log:
            log(f"  cycle {c + 1}/{cycles}: sparsity {chosen.total_sparsity:.1%}, {epochs[c]} epochs retrained"
                + (f", validation accuracy {val:.2%}" if val is not None else ""))
    report = IterativeReport(importance, scope, cycles, epochs, rule, sparsity(masks),
                             {k: float(1 - m.mean()) for k, m in masks.items()}, records)
    return masks, report, history
