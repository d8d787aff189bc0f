"""How much each removable unit matters, by one of five criteria.

Every criterion produces per-channel *contributions* (filter norms of a layer,
|gamma| of a batch norm, activation statistics of a ReLU). Each contribution is
divided by its own mean, so layers of different scale rank against each other,
and a unit's score is the mean of the contributions that touch it (all layers
of a residual group vote). Units a criterion cannot see (no batch norm after
them, no ReLU) fall back to the L1 norm of their filters, with a note.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from kit.core.errors import DataError, KitError
from kit.techniques.structured.graph import ChannelGraph

CRITERIA = ("l1", "l2", "bn_scale", "taylor", "apoz")
_NEEDS_DATA = ("taylor", "apoz")

Contribution = tuple[np.ndarray, np.ndarray]  # (value per channel, atom per channel)


def unit_scores(graph: ChannelGraph, criterion: str, calib_data=None, calib_labels=None,
                batch_size: int = 64) -> tuple[np.ndarray, list[str]]:
    """Score (higher = keep) of every unit, indexed by its root atom; plus notes."""
    if criterion not in CRITERIA:
        raise KitError(f"unknown importance criterion {criterion!r}", f"use one of {', '.join(CRITERIA)}")
    if criterion in _NEEDS_DATA and calib_data is None:
        raise DataError(f"criterion {criterion!r} needs calibration data", "pass calib_data (a few hundred inputs)")
    if criterion in ("l1", "l2"):
        contributions = _norms(graph, criterion)
    elif criterion == "bn_scale":
        contributions = _bn_scales(graph)
    elif criterion == "taylor":
        contributions = _taylor(graph, calib_data, calib_labels, batch_size)
    else:
        contributions = _apoz(graph, calib_data, batch_size)
    scores, seen = _aggregate(graph, contributions)
    fallback, _ = _aggregate(graph, _norms(graph, "l1"))
    units = np.concatenate([g.units for g in graph.groups]) if graph.groups else np.zeros(0, np.int64)
    blind = units[~seen[units]]
    notes = []
    if len(blind):
        scores[blind] = fallback[blind]
        if criterion != "l1":
            notes.append(f"{len(blind)} of {len(units)} removable channels have no {criterion} signal "
                         f"({_why_blind(criterion)}); they are ranked by the L1 norm of their filters")
    return scores, notes


def _why_blind(criterion: str) -> str:
    return {"bn_scale": "no BatchNormalization after them", "apoz": "no ReLU after them",
            "taylor": "no gradient reaches them"}[criterion]


def _aggregate(graph: ChannelGraph, contributions: Sequence[Contribution]) -> tuple[np.ndarray, np.ndarray]:
    n = len(graph.root)
    sums, counts = np.zeros(n), np.zeros(n)
    for values, atoms in contributions:
        values = np.asarray(values, dtype=np.float64)
        mean = values.mean() if values.size else 0.0
        if mean > 0:
            values = values / mean
        roots = graph.root[atoms]
        np.add.at(sums, roots, values)
        np.add.at(counts, roots, 1.0)
    seen = counts > 0
    scores = np.zeros(n)
    scores[seen] = sums[seen] / counts[seen]
    return scores, seen


def _filters(layer) -> tuple[np.ndarray, np.ndarray | None]:
    """Output-channel-major weights (out, fan_in) and the bias of a source layer."""
    import tf_keras as keras

    if isinstance(layer, (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)):
        kernel = layer.pointwise_kernel.numpy()
    else:
        kernel = layer.kernel.numpy()
    bias = layer.bias.numpy() if getattr(layer, "use_bias", False) else None
    return kernel.reshape(-1, kernel.shape[-1]).T, bias


def _norms(graph: ChannelGraph, p: str) -> list[Contribution]:
    out = []
    for name, atoms in graph.sources.items():
        w, _ = _filters(graph.model.get_layer(name))
        values = np.abs(w).sum(axis=1) if p == "l1" else np.sqrt((w.astype(np.float64) ** 2).sum(axis=1))
        out.append((values, atoms))
    return out


def _bn_scales(graph: ChannelGraph) -> list[Contribution]:
    out = []
    for name, role in graph.roles.items():
        if role.kind != "channelwise":
            continue
        layer = graph.model.get_layer(name)
        if type(layer).__name__ == "BatchNormalization" and layer.scale:
            atoms = graph.input_map(name)
            if atoms is not None:
                out.append((np.abs(layer.gamma.numpy()), atoms))
    return out


def _batches(x, batch_size: int):
    xs = x if isinstance(x, (list, tuple)) else [x]
    n = len(xs[0])
    if n == 0:
        raise DataError("calibration data is empty")
    for start in range(0, n, batch_size):
        part = [np.asarray(a[start:start + batch_size], dtype=np.float32) for a in xs]
        yield start, part if isinstance(x, (list, tuple)) else part[0]


def _taylor(graph: ChannelGraph, x, y, batch_size: int) -> list[Contribution]:
    """First-order Taylor: sum over a filter's weights of |w * dL/dw|, averaged over batches."""
    import tensorflow as tf

    model = graph.model
    if len(model.outputs) != 1:
        raise KitError("the taylor criterion supports single-output models", "use l1, l2, bn_scale or apoz")
    names = list(graph.sources)
    variables = []
    for name in names:
        layer = model.get_layer(name)
        kernel = layer.pointwise_kernel if hasattr(layer, "pointwise_kernel") else layer.kernel
        variables.append([kernel] + ([layer.bias] if getattr(layer, "use_bias", False) else []))
    flat = [v for vs in variables for v in vs]
    totals = [np.zeros(int(vs[0].shape[-1])) for vs in variables]
    targets, loss_fn = _targets(model, x, y, batch_size)
    batches = 0
    for start, xb in _batches(x, batch_size):
        with tf.GradientTape() as tape:
            loss = loss_fn(targets[start:start + batch_size], model(xb, training=False))
        grads = iter(tape.gradient(loss, flat))
        for total, vs in zip(totals, variables):
            for v in vs:
                g = next(grads)
                if g is not None:
                    wg = np.abs(v.numpy() * g.numpy())
                    total += wg.reshape(-1, wg.shape[-1]).sum(axis=0)
        batches += 1
    return [(t / batches, graph.sources[n]) for t, n in zip(totals, names) if np.any(t > 0)]


def _targets(model, x, y, batch_size: int):
    """Class labels (given, or the model's own top class) with cross-entropy; regression targets with MSE."""
    import tensorflow as tf

    out = model.predict(x, batch_size=batch_size, verbose=0)
    n = len(out)
    if y is not None and len(y) != n:
        raise DataError(f"calib_labels has {len(y)} entries for {n} calibration inputs")
    if out.shape[-1] == 1 or out.ndim != 2:
        if y is None:
            raise DataError("the taylor criterion needs calib_labels for a model that is not a classifier")
        targets = np.asarray(y, dtype=np.float32).reshape(out.shape)
        return targets, lambda t, o: tf.reduce_mean(tf.square(o - t))
    if y is None:
        labels = out.argmax(axis=-1)
    else:
        y = np.asarray(y)
        labels = y.argmax(axis=-1) if y.ndim == 2 and y.shape[1] == out.shape[1] else y.reshape(n)
    probs = bool(np.all(out >= 0) and np.allclose(out.sum(axis=-1), 1.0, atol=1e-3))

    def cross_entropy(t, o):
        return tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(t, o, from_logits=not probs))

    return labels.astype(np.int64), cross_entropy


def _is_relu(layer) -> bool:
    import tf_keras as keras

    if isinstance(layer, keras.layers.ReLU):
        return float(getattr(layer, "negative_slope", 0.0) or 0.0) == 0.0
    fn = getattr(layer, "activation", None)
    return getattr(fn, "__name__", "") in ("relu", "relu6")


def _apoz(graph: ChannelGraph, x, batch_size: int) -> list[Contribution]:
    """Average percentage of zeros after each ReLU; a unit that is mostly zero matters little."""
    import tf_keras as keras

    model = graph.model
    probes = []
    for name, role in graph.roles.items():
        if role.kind not in ("source", "separable", "passthrough", "depthwise"):
            continue
        layer = model.get_layer(name)
        if _is_relu(layer) and graph.maps[role.outputs[0]] is not None:
            probes.append((name, layer.output))
    if not probes:
        return []
    probe = keras.Model(model.inputs, [t for _, t in probes])
    zeros = [np.zeros(int(t.shape[-1])) for _, t in probes]
    samples = 0
    for _, xb in _batches(x, batch_size):
        outs = probe(xb, training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        for z, o in zip(zeros, outs):
            o = o.numpy()
            z += (o.reshape(-1, o.shape[-1]) == 0).sum(axis=0)
        samples += int(outs[0].shape[0])
    out = []
    for (name, tensor), z in zip(probes, zeros):
        positions = samples * int(np.prod([int(d) for d in tensor.shape[1:-1]], dtype=np.int64))
        out.append((1.0 - z / positions, graph.output_map(name)))
    return out
