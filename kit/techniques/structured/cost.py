"""Multiply-accumulates and parameters per layer, to show what structured pruning removed.

MACs count the convolutions and fully connected layers (one MAC per weight use
per output position); batch norm folds into the preceding layer at conversion,
and pooling, activations and adds are not multiply-accumulates, so they count 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np



@dataclass
class LayerCost:
    name: str
    type: str
    macs: int
    params: int


@dataclass
class ModelCost:
    layers: list[LayerCost]

    @property
    def macs(self) -> int:
        return sum(c.macs for c in self.layers)

    @property
    def params(self) -> int:
        return sum(c.params for c in self.layers)

    def by_name(self) -> dict[str, LayerCost]:
        return {c.name: c for c in self.layers}


def model_cost(model) -> ModelCost:
    """Per-layer MACs (every call of a shared layer counts) and parameters of a built tf_keras model."""
    import tensorflow as tf

    calls: dict[str, int] = {layer.name: 0 for layer in model.layers}
    for nodes in getattr(model, "_nodes_by_depth", {}).values():
        for node in nodes:
            name = node.layer.name
            if name not in calls:
                continue
            ins = [tuple(t.shape) for t in tf.nest.flatten(node.keras_inputs)]
            outs = [tuple(t.shape) for t in tf.nest.flatten(node.outputs)]
            calls[name] += _macs(node.layer, ins[0] if ins else (), outs[0] if outs else ())
    return ModelCost([LayerCost(layer.name, type(layer).__name__, calls[layer.name], int(layer.count_params()))
                      for layer in model.layers])


def _prod(dims) -> int:
    return int(np.prod([int(d) for d in dims if d is not None], dtype=np.int64))


def _macs(layer, in_shape: tuple, out_shape: tuple) -> int:
    import tf_keras as keras

    L = keras.layers
    if not in_shape or not out_shape:
        return 0
    if isinstance(layer, (L.SeparableConv1D, L.SeparableConv2D)):
        mid = _prod(out_shape[1:-1]) * int(in_shape[-1]) * int(layer.depth_multiplier)
        return mid * _prod(layer.kernel_size) + mid * int(out_shape[-1])
    if isinstance(layer, (L.DepthwiseConv1D, L.DepthwiseConv2D)):
        return _prod(out_shape[1:]) * _prod(layer.kernel_size)
    if isinstance(layer, (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)):
        return _prod(in_shape[1:]) * _prod(layer.kernel_size) * int(out_shape[-1])
    if isinstance(layer, (L.Conv1D, L.Conv2D, L.Conv3D)):
        return _prod(out_shape[1:]) * _prod(layer.kernel_size) * int(in_shape[-1]) // int(layer.groups)
    if isinstance(layer, L.Dense):
        return _prod(out_shape[1:]) * int(in_shape[-1])
    return 0


def cost_table(before: ModelCost, after: ModelCost, markdown: bool = False) -> str:
    """Layers whose cost changed, then totals."""
    from kit.core.tables import format_table

    old = before.by_name()
    rows = []
    for c in after.layers:
        b = old.get(c.name)
        if b is not None and (b.macs, b.params) != (c.macs, c.params):
            rows.append([c.name, c.type, b.macs, c.macs, b.params, c.params])
    rows.append(["total", "", before.macs, after.macs, before.params, after.params])
    return format_table(["layer", "type", "MACs before", "MACs after", "params before", "params after"], rows,
                        markdown=markdown)
