"""Rebuild a tf_keras model layer by layer, replacing some layers or routing around others.

Low-rank factorisation swaps one layer for two; layer pruning routes a block's output to its input (or
its shortcut). Both are the same operation: walk the model's graph from its outputs, re-create every
layer that is still reached (a fresh copy with the original weights), and let the caller decide what a
given layer becomes. The original model is never modified. Sequential models are walked as the chain
they are; layers called more than once (shared layers) are refused.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from kit.core.errors import ModelError


@dataclass
class Graph:
    """Which layers feed each layer: name -> [(layer, tensor index)] in call order."""

    inbound: dict[str, list[tuple[str, int]]]
    inputs: list[str]
    outputs: list[tuple[str, int]]
    order: list[str]  # topological

    def consumers(self, name: str) -> list[str]:
        return [n for n in self.order if any(src == name for src, _ in self.inbound[n])]


def graph(model) -> Graph:
    """The layer graph of a Sequential or Functional model (one call per layer)."""
    cfg = _config(functional(model))
    if "layers" not in cfg:
        raise ModelError(f"model {model.name!r} is not a Sequential or Functional tf_keras model",
                         "rebuild it with the Functional API")
    inbound, order = {}, []
    for entry in cfg["layers"]:
        nodes = entry["inbound_nodes"]
        if len(nodes) > 1:
            raise ModelError(f"layer {entry['name']!r} is called {len(nodes)} times (a shared layer)",
                             "the graph rewrite needs every layer called once")
        srcs = []
        for item in nodes[0] if nodes else []:
            if isinstance(item, dict) or len(item) < 3:
                raise ModelError(f"layer {entry['name']!r} has inbound nodes the rewrite does not understand")
            if item[1] != 0:
                raise ModelError(f"layer {entry['name']!r} uses a second call of {item[0]!r} (a shared layer)")
            srcs.append((item[0], int(item[2])))
        inbound[entry["name"]] = srcs
        order.append(entry["name"])
    return Graph(inbound, [i[0] for i in cfg["input_layers"]], [(o[0], int(o[2])) for o in cfg["output_layers"]],
                 order)


def functional(model):
    """The model itself, or for a Sequential model the same layers as a Functional model."""
    import tf_keras as keras

    return keras.Model(model.inputs, model.outputs) if isinstance(model, keras.Sequential) else model


def _config(model) -> dict:
    try:
        return model.get_config()
    except NotImplementedError:
        raise ModelError(f"model {model.name!r} is subclassed: its graph cannot be rewritten",
                         "rebuild it with the Functional API") from None


#: make(original layer, input tensors) -> output tensor, or None to copy the layer unchanged
Maker = Callable[[object, list], object]


def rebuild(model, make: Maker | None = None, bypass: dict[str, tuple[str, int]] | None = None,
            name: str | None = None):
    """A new model: every reached layer copied with its weights, except where `make` returns an output,
    and layers in `bypass` (name -> (layer, tensor index) whose output replaces theirs) routed around."""
    import tf_keras as keras

    g, source = graph(model), functional(model)
    bypass = bypass or {}
    made: dict[str, list] = {}

    def outputs_of(layer_name: str) -> list:
        if layer_name in made:
            return made[layer_name]
        if layer_name in bypass:
            src, idx = bypass[layer_name]
            made[layer_name] = [outputs_of(src)[idx]]
            return made[layer_name]
        layer = source.get_layer(layer_name)
        if layer_name in g.inputs:
            shape = layer.get_config()["batch_input_shape"]
            out = keras.Input(batch_shape=shape, dtype=layer.dtype, name=layer_name)
        else:
            ins = [outputs_of(src)[idx] for src, idx in g.inbound[layer_name]]
            out = make(layer, ins) if make is not None else None
            if out is None:
                copy = layer.__class__.from_config(layer.get_config())
                out = copy(ins[0] if len(ins) == 1 else ins)
                copy.set_weights(layer.get_weights())
        made[layer_name] = out if isinstance(out, (list, tuple)) else [out]
        return made[layer_name]

    outs = [outputs_of(n)[i] for n, i in g.outputs]
    ins = [outputs_of(n)[0] for n in g.inputs]
    return keras.Model(ins if len(ins) > 1 else ins[0], outs if len(outs) > 1 else outs[0],
                       name=name or model.name)
