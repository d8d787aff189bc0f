"""Rebuild a smaller model: same layers and topology, fewer channels, surviving weights copied.

The result is an ordinary tf_keras model made of the original layer classes
(no masks, no wrappers), so conversion, quantization and further pruning apply
to it unchanged.
"""
from __future__ import annotations

import numpy as np

from kit.techniques.structured.graph import ChannelGraph

_CHANNEL_COUNT_KEY = {"Dense": "units"}  # every other source layer calls it "filters"


def rebuild(graph: ChannelGraph, keep: np.ndarray) -> tuple[object, dict[str, list[int]], dict[str, list[int]]]:
    """The pruned model, kept output channels per source layer, kept input channels per changed consumer."""
    import tf_keras as keras

    model = graph.model
    kept_out: dict[str, np.ndarray] = {}
    kept_in: dict[str, np.ndarray] = {}
    for name, role in graph.roles.items():
        if role.kind in ("source", "separable"):
            kept_out[name] = graph.kept(graph.sources[name], keep)
        if role.kind in ("source", "separable", "depthwise", "channelwise"):
            idx = graph.kept(graph.input_map(name), keep)
            if idx is not None:
                kept_in[name] = idx
    configs = {}
    for name, idx in kept_out.items():
        layer = model.get_layer(name)
        cfg = layer.get_config()
        cfg[_CHANNEL_COUNT_KEY.get(type(layer).__name__, "filters")] = int(len(idx))
        configs[name] = cfg
    for name, role in graph.roles.items():
        if role.kind == "reshape":
            cfg = model.get_layer(name).get_config()
            target = list(cfg["target_shape"])
            if target[-1] != -1:
                target[-1] = int(len(graph.kept(graph.maps[role.outputs[0]], keep)))
            cfg["target_shape"] = tuple(target)
            configs[name] = cfg

    def clone(layer):
        cfg = configs.get(layer.name)
        return layer.__class__.from_config(cfg if cfg is not None else layer.get_config())

    new = keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        if not layer.weights:
            continue
        role = graph.roles.get(layer.name)
        kind = role.kind if role else "barrier"
        weights = _sliced(layer, kind, kept_in.get(layer.name), kept_out.get(layer.name))
        target = new.get_layer(layer.name)
        expected = [tuple(w.shape) for w in target.get_weights()]
        if [w.shape for w in weights] != expected:
            raise RuntimeError(f"internal error: {layer.name} weights {[w.shape for w in weights]} do not fit the "
                               f"rebuilt layer {expected}")
        target.set_weights(weights)
    changed_in = {n: i for n, i in kept_in.items() if len(i) != len(graph.input_map(n))}
    return new, {n: i.tolist() for n, i in kept_out.items()}, {n: i.tolist() for n, i in changed_in.items()}


def _sliced(layer, kind: str, in_idx: np.ndarray | None, out_idx: np.ndarray | None) -> list[np.ndarray]:
    w = layer.get_weights()
    every = slice(None)
    rows = every if in_idx is None else in_idx
    if kind == "source":
        kernel = w[0][..., rows, :][..., out_idx]
        return [kernel] + [b[out_idx] for b in w[1:]]
    if kind == "separable":
        dm = int(layer.depth_multiplier)
        depthwise = w[0][..., rows, :]
        pointwise = w[1][..., _expanded(in_idx, dm, w[1].shape[-2]), :][..., out_idx]
        return [depthwise, pointwise] + [b[out_idx] for b in w[2:]]
    if kind == "depthwise":
        dm = int(layer.depth_multiplier)
        return [w[0][..., rows, :]] + [b[_expanded(in_idx, dm, b.shape[-1])] for b in w[1:]]
    if kind == "channelwise" and in_idx is not None:
        channels = int(layer.input_shape[-1])
        return [a[..., in_idx] if a.shape[-1] == channels else a for a in w]
    return w


def _expanded(in_idx: np.ndarray | None, dm: int, size: int) -> np.ndarray:
    """Channels of a depthwise output (input channel c -> c*dm .. c*dm+dm-1) for the kept input channels."""
    if in_idx is None:
        return np.arange(size)
    return (np.asarray(in_idx)[:, None] * dm + np.arange(dm)[None, :]).ravel()
