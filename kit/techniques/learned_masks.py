"""Learned masks: a trainable score per weight (or per filter / neuron) decides what is kept.

The kernel used in the forward pass is `w * gate(score)`:
  ste      gate = 1[score > 0] forward, identity gradient backward (straight-through estimator)
  sigmoid  gate = sigmoid(score / t); t = 1/3 during the ramp, then annealed to 0.02 so the gates end binary
Weights and scores train together on the task loss plus a sparsity penalty, sum over groups of
lambda_g * (density_g - target density_g)^2, density being the mean gate of the group. The target follows
a cubic ramp to the requested sparsity, so the penalty pulls the masks there from either side and the task
loss decides which weights are on near the boundary; lambda_g is scaled so that a 1% density error pulls as
hard as the median task gradient. Groups are the kernels (scope "layer": each reaches its own target) or all
kernels together (scope "global": one total target, the training decides how it splits over layers).

Scores start at |w| / mean |w| of their layer (the magnitude ranking);
unless given, the mask learning rate lets the score at the target quantile reach zero an eighth of the way
through the ramp (Adam rarely moves a score at full speed). While a group's sparsity lags its target, its lambda grows (an integral term). The final mask is score > 0, then ranked to exactly the target sparsity (the learned sparsity is
reported); output units are never masked as whole units.
"""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field

import numpy as np

from kit.core.errors import KitError
from kit.techniques.importance import select_sparsity
from kit.techniques.masking import Masks
from kit.techniques.prune import MASKABLE, output_layers

GATES = ("ste", "sigmoid")
GRANULARITIES = ("unstructured", "filter")
#: density error at which the penalty gradient equals the median task-loss gradient
BALANCE_ERROR = 0.01
#: lambda grows by exp(INTEGRAL_GAIN * (target - sparsity)) per step while the sparsity lags the target
INTEGRAL_GAIN = 2.0
#: scores stay within +-SCORE_LIMIT so that any weight can still change side
SCORE_LIMIT = 4.0
#: sigmoid temperature: constant while the target ramps (a mean-magnitude weight's gate is 0.95), then
#: annealed geometrically so the gates end binary
TEMPERATURE = (1 / 3, 0.02)


@dataclass
class LearnedReport:
    gate: str
    granularity: str
    scope: str
    epochs: int
    learned_sparsity: float  # fraction of scores <= 0 when training ended
    final_sparsity: float  # after ranking to exactly the target
    layer_learned_sparsity: dict[str, float]
    layer_sparsity: dict[str, float]
    lambdas: dict[str, float]
    timeline: list[dict] = field(default_factory=list)  # per epoch: target, sparsity, loss

    def to_dict(self) -> dict:
        return asdict(self)


def learn_masks(model, targets: dict[str, float], x: np.ndarray, y: np.ndarray, epochs: int = 4,
                learning_rate: float = 1e-3, mask_learning_rate: float | None = None, batch_size: int = 64,
                gate: str = "ste", granularity: str = "unstructured", scope: str = "layer",
                ramp: float = 0.5, seed: int = 0, pooled: set[str] | None = None, log=None):
    """Learn masks for the kernels in `targets` ("layer/kernel" -> sparsity) of `model`.

    Returns (model copy with trained weights and the hard masks applied, masks, report); `model` is not
    changed. Recover accuracy afterwards with `kit.techniques.masking.fit_masked` (fixed masks). Under scope "global"
    the kernels in `pooled` (default all) form one group; the others keep their own targets.
    """
    import tensorflow as tf
    import tf_keras as keras

    from kit.techniques.finetune import outputs_logits, recalibrate_batchnorm
    from kit.techniques.prune import private_copy

    if gate not in GATES:
        raise KitError(f"unknown mask gate {gate!r}", f"use {' | '.join(GATES)}")
    if granularity not in GRANULARITIES:
        raise KitError(f"learned-mask granularity {granularity!r} is not supported", f"use {' | '.join(GRANULARITIES)}")
    if scope not in ("layer", "global"):
        raise KitError(f"unknown scope {scope!r}", "use layer | global")
    if granularity == "filter" and scope == "global":
        raise KitError("filter-granularity masks are ranked within each layer",
                       "use scope = \"layer\" with granularity = \"filter\"")
    tf.keras.utils.set_random_seed(seed)
    work = private_copy(model)
    outputs = output_layers(work)
    by_layer: dict[str, list[str]] = {}
    for key in targets:
        by_layer.setdefault(key.split("/")[0], []).append(key.split("/")[1])
    temperature = tf.Variable(TEMPERATURE[0], trainable=False)
    gated: dict[str, _Gate] = {}

    def clone(layer):
        new = layer.__class__.from_config(layer.get_config())
        if layer.name in by_layer and type(layer).__name__ in MASKABLE:
            unit_wise = granularity == "filter" and layer.name not in outputs
            gated[layer.name] = _Gate(new, by_layer[layer.name], gate, unit_wise, temperature, name=f"gate_{layer.name}")
            return gated[layer.name]
        return new

    trainer = keras.models.clone_model(work, clone_function=clone)
    _copy_into_trainer(work, trainer, gated)
    keys = [f"{n}/{k}" for n, g in gated.items() for k in g.kernel_names]
    missing = set(targets) - set(keys)
    if missing:
        raise KitError(f"cannot learn masks for {', '.join(sorted(missing))}: not a Dense or convolution kernel")
    scores = {f"{n}/{k}": s for n, g in gated.items() for k, s in g.scores.items()}
    sizes = {k: int(np.prod(_kernel_shape(gated, k))) for k in keys}
    shared = [k for k in keys if pooled is None or k in pooled] if scope == "global" else []
    groups = {**({"all": shared} if shared else {}), **{k: [k] for k in keys if k not in shared}}
    group_target = {g: sum(targets[k] * sizes[k] for k in ks) / sum(sizes[k] for k in ks) for g, ks in groups.items()}
    group_names = list(groups)
    lambdas = tf.Variable(np.zeros(len(group_names), np.float32), trainable=False)
    n = len(x)
    steps_per_epoch = max(1, -(-n // batch_size))
    total_steps = epochs * steps_per_epoch
    ramp_steps = max(1, int(ramp * total_steps))
    final_targets = np.array([group_target[g] for g in group_names], np.float32)
    if mask_learning_rate is None:
        mask_learning_rate = _auto_mask_lr(scores, groups, group_names, final_targets, ramp_steps)
    weights = [v for v in trainer.trainable_variables if not any(v is s for s in scores.values())]
    score_vars = list(scores.values())
    opt_w = keras.optimizers.Adam(learning_rate)
    opt_s = keras.optimizers.Adam(mask_learning_rate, epsilon=1e-12)  # sigmoid-gate gradients are tiny
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=outputs_logits(model))
    member = [[gated[k.split("/")[0]].gate_value(k.split("/")[1]) for k in groups[g]] for g in group_names]

    def densities():
        out = []
        for g, fns in zip(group_names, member):
            total = sum(tf.reduce_sum(fn() * tf.ones(_kernel_shape(gated, k))) for fn, k in zip(fns, groups[g]))
            out.append(total / sum(sizes[k] for k in groups[g]))
        return tf.stack(out)

    def hard_sparsity():
        out = []
        for g in group_names:
            kept = sum(tf.reduce_sum(tf.cast(scores[k] > 0, tf.float32) * tf.ones(_kernel_shape(gated, k)))
                       for k in groups[g])
            out.append(1.0 - kept / sum(sizes[k] for k in groups[g]))
        return tf.stack(out)

    @tf.function
    def train_step(xb, yb, target):
        with tf.GradientTape(persistent=True) as tape:
            loss = loss_fn(yb, trainer(xb, training=True))
            total = loss + tf.reduce_sum(lambdas * tf.square(densities() - (1.0 - target)))
        gw = tape.gradient(loss, weights)
        gs = tape.gradient(total, score_vars)
        del tape
        opt_w.apply_gradients(zip(gw, weights))
        opt_s.apply_gradients(zip(gs, score_vars))
        for v in score_vars:
            v.assign(tf.clip_by_value(v, -SCORE_LIMIT, SCORE_LIMIT))
        sp = hard_sparsity()
        grown = lambdas * tf.exp(INTEGRAL_GAIN * (target - sp))
        lambdas.assign(tf.clip_by_value(grown, lambda_floor, 1e4 * lambda_floor))
        return loss, sp

    lambda_floor = tf.constant(_initial_lambdas(trainer, loss_fn, x[:256], y[:256], groups, group_names, scores,
                                                gated, sizes))
    lambdas.assign(lambda_floor)
    rng = np.random.default_rng(seed)
    timeline, step = [], 0
    for epoch in range(epochs):
        order = rng.permutation(n)
        losses = []
        for i in range(0, n, batch_size):
            p = min(1.0, step / ramp_steps)
            target = final_targets * (1.0 - (1.0 - p) ** 3)
            if gate == "sigmoid":  # soft while the target moves, then hardening
                t0, t1 = TEMPERATURE
                after = max(0.0, (step - ramp_steps) / max(1, total_steps - ramp_steps))
                temperature.assign(float(t0 * (t1 / t0) ** after))
            idx = order[i:i + batch_size]
            loss, sp = train_step(tf.constant(x[idx]), tf.constant(y[idx]), tf.constant(target))
            losses.append(float(loss))
            step += 1
        reached = [round(float(v), 4) for v in sp.numpy()]
        timeline.append({"epoch": epoch + 1, "target": float(np.mean(target)), "sparsity": reached,
                         "loss": float(np.mean(losses))})
        if log:
            log(f"  learned masks epoch {epoch + 1}/{epochs}: sparsity {', '.join(f'{v:.1%}' for v in reached)} "
                f"(target {float(np.mean(target)):.1%}), loss {np.mean(losses):.3f}")

    learned = {k: _expand(scores[k].numpy() > 0, _kernel_shape(gated, k)) for k in keys}
    masks = _exact(scores, targets, keys, scope, gated, set(shared))
    result = private_copy(work)
    _copy_from_trainer(trainer, result, gated, masks)
    # the moving statistics followed the gated kernels at momentum 0.99; the exact masks changed them again
    recalibrate_batchnorm(result, x)
    learned_total = 1 - sum(m.sum() for m in learned.values()) / sum(sizes.values())
    report = LearnedReport(
        gate, granularity, scope, epochs, float(learned_total),
        float(1 - sum(m.sum() for m in masks.values()) / sum(sizes.values())),
        {k: float(1 - m.mean()) for k, m in learned.items()}, {k: float(1 - m.mean()) for k, m in masks.items()},
        {g: float(v) for g, v in zip(group_names, lambdas.numpy())}, timeline)
    return result, masks, report


def _kernel_shape(gated: dict, key: str) -> tuple:
    layer, kernel = key.split("/")
    return tuple(getattr(gated[layer].layer, kernel).shape)


def _exact(scores: dict, targets: dict[str, float], keys: list[str], scope: str, gated: dict,
           pooled: set[str]) -> Masks:
    """Masks at exactly the target sparsity, keeping the highest scores (whole units for unit-wise scores)."""
    ranked = {k: scores[k].numpy().astype(np.float64) for k in keys}
    chosen = select_sparsity(ranked, {k: targets[k] for k in keys}, scope, pooled=pooled).masks
    return {k: _expand(chosen[k], _kernel_shape(gated, k)) for k in keys}


def _expand(mask: np.ndarray, shape: tuple) -> np.ndarray:
    return np.broadcast_to(mask.reshape((1,) * (len(shape) - mask.ndim) + mask.shape) if mask.ndim < len(shape)
                           else mask, shape).copy()


def _initial_lambdas(trainer, loss_fn, x, y, groups, group_names, scores, gated, sizes) -> np.ndarray:
    """Each lambda such that a BALANCE_ERROR density error pulls a score as hard as the median task gradient."""
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = loss_fn(y, trainer(x, training=False))
    grads = dict(zip(scores, tape.gradient(loss, list(scores.values()))))
    out = []
    for g in group_names:
        med = np.median(np.concatenate([np.abs(grads[k].numpy()).reshape(-1) for k in groups[g]]))
        per_score = sum(sizes[k] for k in groups[g]) / max(1, sum(int(np.prod(scores[k].shape)) for k in groups[g]))
        out.append(max(float(med), 1e-12) * sum(sizes[k] for k in groups[g]) / per_score / (2 * BALANCE_ERROR))
    return np.array(out, np.float32)


def _auto_mask_lr(scores: dict, groups: dict, group_names: list[str], targets: np.ndarray, ramp_steps: int) -> float:
    """A score learning rate that lets the score at the target quantile reach zero an eighth into the ramp."""
    reach = []
    for g, t in zip(group_names, targets):
        values = np.concatenate([scores[k].numpy().reshape(-1) for k in groups[g]])
        reach.append(float(np.quantile(values, t)))
    return max(8.0 * max(reach) / ramp_steps, 1e-3)


def _copy_into_trainer(work, trainer, gated: dict) -> None:
    for layer in work.layers:
        if layer.name in gated:
            g = gated[layer.name]
            g.layer.set_weights(layer.get_weights())
            g.init_scores()
        elif layer.weights:
            trainer.get_layer(layer.name).set_weights(layer.get_weights())


def _copy_from_trainer(trainer, result, gated: dict, masks: Masks) -> None:
    for layer in result.layers:
        if layer.name in gated:
            inner = gated[layer.name].layer
            layer.set_weights(inner.get_weights())
            for kname in gated[layer.name].kernel_names:
                var = getattr(layer, kname)
                var.assign(var.numpy() * masks[f"{layer.name}/{kname}"])
        elif layer.weights:
            layer.set_weights(trainer.get_layer(layer.name).get_weights())


@functools.lru_cache(maxsize=None)
def _gate_class():
    import tensorflow as tf
    import tf_keras as keras

    class Gate(keras.layers.Wrapper):
        """Runs the wrapped layer with its kernels multiplied by learned gates."""

        def __init__(self, layer, kernel_names, gate, unit_wise, temperature, **kwargs):
            super().__init__(layer, **kwargs)
            self.kernel_names = list(kernel_names)
            self.gate = gate
            self.unit_wise = unit_wise
            self.temperature = temperature
            self.scores = {}

        def build(self, input_shape):
            if not self.layer.built:
                self.layer.build(input_shape)
            for k in self.kernel_names:
                shape = getattr(self.layer, k).shape
                if self.unit_wise:
                    shape = shape[-2:] if k == "depthwise_kernel" else shape[-1:]
                self.scores[k] = self.add_weight(f"{k}_scores", shape=shape, initializer="ones", trainable=True)
            super().build(input_shape)

        def init_scores(self):
            for k, s in self.scores.items():
                w = np.abs(getattr(self.layer, k).numpy())
                if self.unit_wise:
                    axes = tuple(range(w.ndim - s.shape.rank))
                    w = np.sqrt(np.sum(w ** 2, axis=axes))
                s.assign(w / (w.mean() or 1.0))

        def gate_value(self, kernel_name):
            s = self.scores[kernel_name]

            def value():
                if self.gate == "ste":
                    hard = tf.cast(s > 0, s.dtype)
                    return hard + s - tf.stop_gradient(s)
                return tf.sigmoid(s / self.temperature)

            return value

        def call(self, inputs, training=None):
            originals = {k: getattr(self.layer, k) for k in self.kernel_names}
            for k, v in originals.items():
                object.__setattr__(self.layer, k, v * self.gate_value(k)())
            try:
                return self.layer.call(inputs)
            finally:
                for k, v in originals.items():
                    object.__setattr__(self.layer, k, v)

        def compute_output_shape(self, input_shape):
            return self.layer.compute_output_shape(input_shape)

    return Gate


def _Gate(layer, kernel_names, gate, unit_wise, temperature, name):  # noqa: N802 (a class factory)
    return _gate_class()(layer, kernel_names, gate, unit_wise, temperature, name=name)
