"""Magnitude pruning with TF-MOT: schedules, granularity and per-layer control.

The fine-tune length decides the schedule's steps; the mask-update frequency
is derived from it so that pruning really happens even in short fine-tunes
(TF-MOT's default of 100 steps silently prunes nothing below ~100 steps).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from kit.core.errors import ModelError

if TYPE_CHECKING:
    from kit.steps.prune import PruneStep

#: mask updates over the pruning window when the recipe does not set a frequency
UPDATES_PER_WINDOW = 20


@dataclass
class LayerPlan:
    layer: str
    kind: str
    granularity: str
    initial_sparsity: float
    final_sparsity: float
    block_size: tuple[int, int]  # in the Keras kernel layout passed to TF-MOT
    note: str = ""


@dataclass
class PrunePlan:
    begin_step: int
    end_step: int
    frequency: int
    steps_per_epoch: int
    layers: list[LayerPlan]
    skipped: dict[str, str]
    #: layers with kernels the recipe asked to prune that the method leaves dense (wholly or in part), and why
    not_pruned: dict[str, str] = field(default_factory=dict)
    #: the layers whose kernels compute the model's outputs ([prune.output] applies to them)
    outputs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def plan(model, step: PruneStep, steps_per_epoch: int, epochs: int) -> PrunePlan:
    """Decide, per layer, what will be pruned and how; nothing is changed yet."""
    total = steps_per_epoch * epochs
    begin = step.begin_step if step.begin_step is not None else round((step.begin_epoch or 0.0) * steps_per_epoch)
    if step.end_step is not None:
        end = step.end_step
    elif step.end_epoch is not None:
        end = round(step.end_epoch * steps_per_epoch)
    else:  # leave the last 30% of the fine-tune for recovery at the final sparsity
        end = max(begin + 1, math.floor(0.7 * total))
    end = min(end, total) if total > begin else end
    frequency = step.frequency or max(1, min(100, (end - begin) // UPDATES_PER_WINDOW))
    if end - begin >= frequency:  # the last mask update lands on end_step
        end = begin + (end - begin) // frequency * frequency
    layers, skipped, not_pruned = [], {}, {}
    outputs = output_layers(model)
    tfmot = step.method == "magnitude"
    for layer in _flat_layers(model):
        reason = _unprunable_reason(layer) if tfmot else _unmaskable_reason(layer)
        dense = _left_dense_by_tfmot(layer) if tfmot and reason in (None, "no weights") else None
        if reason == "no weights" and not dense:
            continue
        override = step.override_for(layer.name, output=layer.name in outputs)
        if step.skips(layer.name) or override.skip:
            skipped[layer.name] = "skipped by the recipe"
            continue
        if dense:
            not_pruned[layer.name] = dense
        if reason == "no weights":  # TF-MOT prunes none of its weights (DepthwiseConv2D)
            continue
        if reason:
            raise ModelError(
                f"layer {layer.name!r} ({type(layer).__name__}) has weights but TF-MOT cannot prune it: {reason}",
                f"add \"{layer.name}\" to prune.skip in the recipe, or make the layer implement "
                "tfmot.sparsity.keras.PrunableLayer",
            )
        granularity = override.granularity or step.granularity
        block = override.block or step.block
        initial = override.initial_sparsity if override.initial_sparsity is not None else step.initial_sparsity
        final = override.final_sparsity if override.final_sparsity is not None else step.final_sparsity
        if override is step.output:  # a protection: the output layer is never pruned more than the others
            final = min(final, step.final_sparsity)
        if step.schedule == "constant":
            initial = final
        initial = min(initial, final)  # a layer held below the recipe's initial sparsity never ramps down
        note = ""
        keras_block = (1, 1)
        if granularity == "block":
            if _kernel_rank(layer) == 2:
                keras_block = (block[1], block[0])  # runtime [out, in] -> Keras kernel [in, out]
            else:
                note = f"block pruning needs 2-D weights; {type(layer).__name__} pruned unstructured"
                granularity = "unstructured"
        if granularity == "2:4":
            initial = final = 0.5
        layers.append(LayerPlan(layer.name, type(layer).__name__, granularity, initial, final, keras_block, note))
    if not layers:
        raise ModelError("no layer of the model can be pruned (all skipped or without weights)",
                         "check prune.skip and prune.layers in the recipe")
    return PrunePlan(begin, end, frequency, steps_per_epoch, layers, skipped, not_pruned, sorted(outputs))


def output_layers(model) -> set[str]:
    """The layers whose kernels compute the model's outputs, whatever their names.

    Each output is followed back through layers without a kernel (Softmax, Activation, Flatten, Reshape, Dropout,
    BatchNormalization, ...) to the Dense or convolution that computes it: its units are the model's outputs
    (the classes of a classifier), small and sensitive, and never removed as whole units.
    """
    found: set[str] = set()
    for tensor in model.outputs:
        layer, node_index, _ = tensor._keras_history
        while layer is not None:
            if _is_model(layer):
                found |= output_layers(layer)
                break
            if any(_weight_name(w) in KERNEL_NAMES for w in layer.weights):
                found.add(layer.name)
                break
            inputs = layer._inbound_nodes[node_index].keras_inputs if layer._inbound_nodes else []
            if len(inputs) != 1:  # the model's input, or a merge (Add, Concatenate): no single layer computes it
                break
            layer, node_index, _ = inputs[0]._keras_history
    return found


def apply(model, prune_plan: PrunePlan, schedule: str):
    """Wrap the planned layers with TF-MOT's pruning wrapper; returns a new model.

    The wrappers hold layers of a private copy, so the caller's model (the
    distillation teacher and fidelity reference) is never modified.
    """
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    by_name = {p.layer: p for p in prune_plan.layers}
    sparsity = tfmot.sparsity.keras

    def wrap(layer):
        p = by_name.get(layer.name)
        if p is None:
            return layer
        if p.granularity == "2:4":
            sched = sparsity.ConstantSparsity(0.5, prune_plan.begin_step, frequency=prune_plan.frequency)
            return sparsity.prune_low_magnitude(layer, pruning_schedule=sched, sparsity_m_by_n=(2, 4))
        if schedule == "constant":
            sched = sparsity.ConstantSparsity(p.final_sparsity, prune_plan.begin_step, frequency=prune_plan.frequency)
        else:
            sched = sparsity.PolynomialDecay(p.initial_sparsity, p.final_sparsity, prune_plan.begin_step,
                                             prune_plan.end_step, frequency=prune_plan.frequency)
        return sparsity.prune_low_magnitude(layer, pruning_schedule=sched, block_size=p.block_size)

    return keras.models.clone_model(private_copy(model), clone_function=wrap)


def private_copy(model):
    """A copy with its own weights: wrapping its layers leaves `model` untouched."""
    import tf_keras as keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def callbacks(log_dir: str | None = None) -> list:
    """TF-MOT's callbacks: UpdatePruningStep is required, PruningSummaries writes TensorBoard logs."""
    import tensorflow_model_optimization as tfmot

    cbs = [tfmot.sparsity.keras.UpdatePruningStep()]
    if log_dir:
        cbs.append(tfmot.sparsity.keras.PruningSummaries(log_dir=log_dir))
    return cbs


def strip(model):
    import tensorflow_model_optimization as tfmot

    return tfmot.sparsity.keras.strip_pruning(model)


def mask_sparsity(model) -> float | None:
    """Fraction of masked-out weights over all pruned weights, from TF-MOT's masks."""
    zeros = total = 0
    for layer in _flat_layers(model):
        if isinstance(layer, _wrapper_class()):
            for _, mask, _ in layer.pruning_vars:
                m = mask.numpy()
                zeros += int(m.size - np.count_nonzero(m))
                total += m.size
    return zeros / total if total else None


def kernel_sparsity(model) -> dict[str, dict]:
    """Per layer with a kernel: zero fraction and size of the kernel (biases are never pruned)."""
    out = {}
    for layer in _flat_layers(model):
        for w in layer.weights:
            short = w.name.split("/")[-1].split(":")[0]
            if short in ("kernel", "depthwise_kernel", "pointwise_kernel"):
                v = w.numpy()
                out[f"{layer.name}/{short}"] = {"shape": list(v.shape), "params": int(v.size),
                                                "sparsity": float(np.mean(v == 0))}
    return out


#: weight names of the kernels pruning acts on (biases, BatchNormalization and embeddings are never pruned)
KERNEL_NAMES = ("kernel", "depthwise_kernel", "pointwise_kernel")
#: layer types whose kernels the kit's own maskers handle (kit.techniques.masking)
MASKABLE = ("Dense", "Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D")


def _weight_name(w) -> str:
    return w.name.split("/")[-1].split(":")[0]


def _is_model(layer) -> bool:
    return hasattr(layer, "layers") and not hasattr(layer, "layer") and layer.__class__.__name__ in (
        "Sequential", "Functional", "Model")


def _flat_layers(model) -> list:
    layers = []
    for layer in model.layers:
        if _is_model(layer):
            layers.extend(_flat_layers(layer))
        else:
            layers.append(layer)
    return layers


def _kernel_rank(layer) -> int:
    kernel = getattr(layer, "kernel", None)
    return len(kernel.shape) if kernel is not None else 0


def _unprunable_reason(layer) -> str | None:
    from tensorflow_model_optimization.python.core.sparsity.keras import (
        prunable_layer,
        prune_registry,
    )

    if not layer.weights:
        return "no weights"
    if isinstance(layer, prunable_layer.PrunableLayer):
        return None
    registry = prune_registry.PruneRegistry
    if registry.supports(layer):
        if layer.__class__ in registry._LAYERS_WEIGHTS_MAP and not registry._weight_names(layer):
            return "no weights"  # e.g. BatchNormalization: supported, nothing to prune
        return None
    return "it is neither a built-in prunable layer nor a PrunableLayer"


def _left_dense_by_tfmot(layer) -> str | None:
    """Why TF-MOT's magnitude pruning leaves kernels of this layer dense although the recipe prunes it (None when
    it prunes them all). Its registry names the weights it prunes per layer class: none of DepthwiseConv2D (so
    `_unprunable_reason` calls it weightless), only the pointwise kernel of the separable convolutions."""
    from tensorflow_model_optimization.python.core.sparsity.keras import (
        prunable_layer,
        prune_registry,
    )

    if isinstance(layer, prunable_layer.PrunableLayer):
        return None
    pruned = prune_registry.PruneRegistry._LAYERS_WEIGHTS_MAP.get(layer.__class__)
    kernels = [_weight_name(w) for w in layer.weights if _weight_name(w) in KERNEL_NAMES]
    dense = [k for k in kernels if pruned is not None and k not in pruned]
    if not dense:
        return None
    kind = type(layer).__name__
    what = (f"TF-MOT prunes no weight of {kind}: its kernel stays dense" if dense == kernels else
            f"TF-MOT prunes only {', '.join(pruned)} of {kind}: {' and '.join(dense)} stays dense")
    return f"{what} (prune.method soft, learned and iterative prune it)"


def _unmaskable_reason(layer) -> str | None:
    """The kit's own maskers (soft, learned, iterative) prune the kernels of the Dense and convolution layers,
    depthwise ones included; other layers with weights have no kernel to prune."""
    return None if type(layer).__name__ in MASKABLE else "no weights"


def _wrapper_class():
    from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import (
        PruneLowMagnitude,
    )

    return PruneLowMagnitude
