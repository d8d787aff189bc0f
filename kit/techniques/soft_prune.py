"""Soft pruning: masked weights keep receiving gradients and come back when they matter again.

Every training step runs forward and backward with the masked weights, but the update is applied to
all of them: the masked weights keep their values outside the model and move with their gradients
(dynamic network surgery, Guo et al. 2016; the mask unit can also be whole filters / neurons as in soft
filter pruning, He et al. 2018). At each mask update the lowest-magnitude weights of the dense values are
masked, so a masked weight that has grown past the threshold is kept again; like the two thresholds of
dynamic network surgery, a masked weight is ranked at 90% of its magnitude, so it returns only when
clearly larger than the weakest kept one (less churn, more stable training). Sparsity ramps from the
initial to the final target (cubic, like TF-MOT's PolynomialDecay) over the plan's window; at its end the
mask becomes hard: the masked values are dropped and the mask is applied after every step until the end.
Filter masks never remove the model's output units (their layers are masked weight by weight instead).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from kit.core.errors import KitError
from kit.techniques.importance import select_sparsity
from kit.techniques.masking import Masks, apply_masks, sparsity
from kit.techniques.prune import output_layers

GRANULARITIES = ("unstructured", "filter")
#: a masked weight is ranked at this fraction of its magnitude, so it returns only when clearly larger
RETURN_DISCOUNT = 0.9


@dataclass
class SoftReport:
    granularity: str
    updates: int
    ever_masked: int  # weights masked at one update or more
    revived: int  # of those, weights kept again at a later update
    revived_in_final: int  # masked at some update, yet kept by the final hard mask
    final_sparsity: float
    layer_sparsity: dict[str, float]
    timeline: list[dict] = field(default_factory=list)  # per update: step, target, sparsity, revived so far

    def to_dict(self) -> dict:
        return asdict(self)


def schedule(initial: float, final: float, step: int, begin: int, end: int) -> float:
    """Cubic ramp from `initial` at `begin` to `final` at `end`."""
    if step >= end:
        return final
    p = max(0.0, (step - begin) / max(1, end - begin))
    return final + (initial - final) * (1.0 - p) ** 3


def soft_prune(model, kernels: dict, targets: dict[str, tuple[float, float]], x: np.ndarray, y: np.ndarray,
               finetune_step, begin_step: int, end_step: int, frequency: int, granularity: str = "unstructured",
               scope: str = "layer", teacher=None, pooled: set[str] | None = None):
    """Train `model` in place with soft masks on `kernels`, then hard ones.

    `targets` maps kernel keys to (initial, final) sparsity (`kit.techniques.masking.kernel_targets`); under scope
    "global" the kernels in `pooled` (default all) share one ranking. Returns (final masks, report,
    fine-tune history)."""
    import tensorflow as tf
    import tf_keras as keras

    from kit.techniques.finetune import fit, recalibrate_batchnorm

    if granularity not in GRANULARITIES:
        raise KitError(f"soft pruning granularity {granularity!r} is not supported", f"use {' | '.join(GRANULARITIES)}")
    if granularity == "filter" and scope == "global":
        raise KitError("filter-granularity soft pruning ranks filters within each layer",
                       "use scope = \"layer\" with granularity = \"filter\"")
    keys = list(targets)
    unit_wise = {k: granularity == "filter" and k.split("/")[0] not in output_layers(model) for k in keys}
    variables = [kernels[k] for k in keys]
    mask_vars = [tf.Variable(tf.ones_like(v), trainable=False) for v in variables]
    held = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]  # masked weights' dense values

    @tf.function
    def restore():
        for w, r in zip(variables, held):
            w.assign_add(r)

    @tf.function
    def remask(hard: tf.Tensor):
        for w, r, m in zip(variables, held, mask_vars):
            r.assign(tf.where(hard, tf.zeros_like(w), w * (1.0 - m)))
            w.assign(w * m)

    ever = {k: np.zeros(kernels[k].shape, bool) for k in keys}
    revived = {k: np.zeros(kernels[k].shape, bool) for k in keys}
    timeline: list[dict] = []
    state = {"step": 0, "hard": False, "masks": None}

    def update(step: int, final: bool) -> None:
        target = {k: targets[k][1] if final else schedule(*targets[k], step, begin_step, end_step) for k in keys}
        dense = {k: np.abs(kernels[k].numpy()) for k in keys}
        if state["masks"] is not None:  # hysteresis: a masked weight must clearly beat the kept ones to return
            dense = {k: np.where(state["masks"][k], v, RETURN_DISCOUNT * v) for k, v in dense.items()}
        masks = _masks(dense, target, unit_wise, scope, pooled)
        for k, mv in zip(keys, mask_vars):
            revived[k] |= ever[k] & masks[k]
            ever[k] |= ~masks[k]
            mv.assign(masks[k].astype(np.float32))
        state["masks"] = masks
        timeline.append({"step": step, "target": float(np.mean(list(target.values()))), "sparsity": sparsity(masks),
                         "revived": int(sum(v.sum() for v in revived.values()))})

    def step_end() -> None:
        step = state["step"]
        restore()
        if not state["hard"] and step >= begin_step and ((step - begin_step) % frequency == 0 or step >= end_step):
            state["hard"] = step >= end_step
            update(step, state["hard"])
        remask(tf.constant(state["hard"]))

    class _Soft(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            step_end()

        def on_train_batch_end(self, batch, logs=None):
            state["step"] += 1
            step_end()

    history = fit(model, x, y, finetune_step, teacher=teacher, extra_callbacks=[_Soft()],
        sparsity_fn=lambda m: sparsity(state["masks"]) if state["masks"] else 0.0)
    if not state["hard"]:  # the fine-tune ended before end_step: the mask hardens now
        restore()
        update(state["step"], final=True)
        remask(tf.constant(True))
        recalibrate_batchnorm(model, x)  # the last epoch's statistics were of the softer mask
    final = state["masks"]
    apply_masks(kernels, final)
    report = SoftReport(
        granularity=granularity, updates=len(timeline), ever_masked=int(sum(v.sum() for v in ever.values())),
        revived=int(sum(v.sum() for v in revived.values())),
        revived_in_final=int(sum((ever[k] & final[k]).sum() for k in keys)), final_sparsity=sparsity(final),
        layer_sparsity={k: float(1 - final[k].mean()) for k in keys}, timeline=timeline)
    return final, report, history


def _masks(weights: dict[str, np.ndarray], targets: dict[str, float], unit_wise: dict[str, bool],
           scope: str, pooled: set[str] | None) -> Masks:
    per_weight = [k for k in weights if not unit_wise[k]]
    masks = select_sparsity({k: np.abs(weights[k]) for k in per_weight}, {k: targets[k] for k in per_weight},
                            scope, pooled=pooled).masks if per_weight else {}
    for k in weights:
        if unit_wise[k]:
            w = weights[k]
            units = w.shape[-1] * (w.shape[-2] if k.endswith("depthwise_kernel") else 1)
            norms = np.sqrt(np.sum(np.square(w.reshape(-1, units)), axis=0))
            keep = select_sparsity({k: norms}, {k: targets[k]}).masks[k]
            masks[k] = np.broadcast_to(keep, w.reshape(-1, units).shape).reshape(w.shape).copy()
    return {k: masks[k] for k in weights}
