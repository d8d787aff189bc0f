"""Layer pruning: remove whole residual blocks or repeated depthwise-separable blocks.

A residual block is the branch with more parameters of an `Add` of two branches from a common fork; removing it
leaves the shortcut (identity or projection), so every shape downstream stays the same. A separable
block is a chain DepthwiseConv2D [-> BN] [-> activation] -> 1x1 Conv2D [-> BN] [-> activation] (or a
SeparableConv2D with its BN / activation) whose output has its input's shape; removing it passes the
input through. Each candidate's cost is measured on held-out data with the block removed: the increase
of the cross-entropy when labels are given, else the mean squared change of the outputs relative to
their variance. Blocks are removed greedily, cheapest first, re-measuring after each removal.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from kit.core.errors import KitError, ModelError
from kit.models.rewire import Graph, functional, graph, rebuild

_PASS = ("BatchNormalization", "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Dropout")


@dataclass
class Block:
    kind: str  # residual | separable
    layers: list[str]  # removed with the block
    output: str  # the layer whose output the block produced
    replacement: tuple[str, int]  # the tensor that takes its place
    params: int

    def name(self) -> str:
        return f"{self.kind}:{self.layers[0]}..{self.layers[-1]}"


@dataclass
class LayerPruneReport:
    criterion: str
    candidates: list[dict] = field(default_factory=list)  # first ranking: block, params, cost, agreement
    removed: list[dict] = field(default_factory=list)  # in removal order, with the cost when removed
    params_before: int = 0
    params_after: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def find_blocks(model) -> list[Block]:
    """Every removable residual or separable block, in graph order."""
    g, source = graph(model), functional(model)
    blocks = [b for name in g.order if (b := _residual(g, source, name)) is not None]
    blocks += [b for name in g.order if (b := _separable(g, source, name)) is not None]
    covered: set[str] = set()
    unique = []
    for b in sorted(blocks, key=lambda b: g.order.index(b.output)):
        if not covered.intersection(b.layers):  # a separable chain inside a residual branch is listed once
            unique.append(b)
            covered.update(b.layers)
    return unique


def remove_blocks(model, blocks: list[Block]):
    """A new model without `blocks` (shapes unchanged downstream); `model` is not modified."""
    bypass = {b.output: b.replacement for b in blocks}
    return rebuild(model, bypass=bypass)


def removal_cost(model, reference: np.ndarray, x: np.ndarray, y: np.ndarray | None) -> tuple[float, float]:
    """(cost, top-1 agreement with `reference` outputs) of `model` on `x`."""
    out = model.predict(x, batch_size=256, verbose=0).reshape(len(x), -1)
    ref = reference.reshape(len(x), -1)
    agreement = float(np.mean(out.argmax(1) == ref.argmax(1)))
    if y is not None:
        return _xent(out, y) - _xent(ref, y), agreement
    return float(np.mean((out - ref) ** 2) / max(float(np.var(ref)), 1e-12)), agreement


def prune_blocks(model, x: np.ndarray, y: np.ndarray | None = None, count: int = 1,
                 max_cost: float | None = None, log=None):
    """Remove up to `count` blocks, cheapest first (stopping before one costs more than `max_cost`).

    Returns (new model, report). Without blocks to remove, a ModelError says so.
    """
    if count < 1:
        raise KitError(f"count must be >= 1, got {count}")
    if len(x) == 0:
        raise KitError("layer pruning needs held-out inputs to measure each block's cost")
    criterion = "cross-entropy increase" if y is not None else "output MSE / output variance"
    report = LayerPruneReport(criterion, params_before=int(model.count_params()))
    current = model
    reference = model.predict(x, batch_size=256, verbose=0)
    base = removal_cost(model, reference, x, y)[0] if y is not None else 0.0
    for round_ in range(count):
        blocks = find_blocks(current)
        if not blocks:
            if round_ == 0:
                raise ModelError(f"model {model.name!r} has no removable residual or separable block",
                                 "layer pruning removes Add-joined residual branches and shape-preserving "
                                 "depthwise-separable blocks")
            break
        ranked = []
        for b in blocks:
            cost, agreement = removal_cost(remove_blocks(current, [b]), reference, x, y)
            ranked.append((cost - base, agreement, b))
        ranked.sort(key=lambda t: t[0])
        if round_ == 0:
            report.candidates = [{"block": b.name(), "kind": b.kind, "layers": b.layers, "params": b.params,
                                  "cost": round(c, 6), "agreement": round(a, 4)} for c, a, b in ranked]
        cost, agreement, best = ranked[0]
        if max_cost is not None and cost > max_cost:
            break
        current = remove_blocks(current, [best])
        report.removed.append({"block": best.name(), "layers": best.layers, "params": best.params,
                               "cost": round(cost, 6), "agreement": round(agreement, 4)})
        if log:
            log(f"  removed {best.name()} ({best.params:,} params): cost {cost:.4f}, agreement {agreement:.1%}")
    report.params_after = int(current.count_params())
    return current, report


def _xent(out: np.ndarray, y: np.ndarray) -> float:
    z = out - out.max(axis=1, keepdims=True)
    probs_like = np.all((out >= 0) & (out <= 1)) and np.allclose(out.sum(axis=1), 1, atol=1e-3)
    logp = np.log(np.clip(out, 1e-12, 1)) if probs_like else z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-np.mean(logp[np.arange(len(y)), y]))


def _ancestors(g: Graph, name: str) -> set[str]:
    seen, stack = set(), [name]
    while stack:
        for src, _ in g.inbound[stack.pop()]:
            if src not in seen:
                seen.add(src)
                stack.append(src)
    return seen


def _params(source, names) -> int:
    return int(sum(source.get_layer(n).count_params() for n in names))


def _has_weights_layer(source, names) -> bool:
    return any(type(source.get_layer(n)).__name__ not in _PASS and source.get_layer(n).weights for n in names)


def _residual(g: Graph, source, name: str) -> Block | None:
    if type(source.get_layer(name)).__name__ != "Add" or len(g.inbound[name]) != 2:
        return None
    (a, ai), (b, bi) = g.inbound[name]
    up_a, up_b = _ancestors(g, a) | {a}, _ancestors(g, b) | {b}
    common = up_a & up_b
    if not common:
        return None
    fork = max(common, key=g.order.index)
    below_fork = _ancestors(g, fork) | {fork}
    branch_a, branch_b = sorted(up_a - below_fork, key=g.order.index), sorted(up_b - below_fork, key=g.order.index)
    if _params(source, branch_a) >= _params(source, branch_b):
        residual, shortcut = branch_a, ((b, bi) if branch_b else (fork, 0))
    else:
        residual, shortcut = branch_b, ((a, ai) if branch_a else (fork, 0))
    if not residual or not _has_weights_layer(source, residual):
        return None
    inside = set(residual) | {name}
    if any(set(g.consumers(n)) - inside for n in residual):
        return None  # a branch tensor is used elsewhere: the branch cannot go
    return Block("residual", [*residual, name], name, shortcut, _params(source, residual))


def _separable(g: Graph, source, name: str) -> Block | None:
    layer = source.get_layer(name)
    kind = type(layer).__name__
    if kind not in ("DepthwiseConv2D", "SeparableConv2D") or len(g.inbound[name]) != 1:
        return None
    chain, current = [name], name
    if kind == "DepthwiseConv2D":
        current = _follow(g, source, current, chain)
        nxt = _single_consumer(g, current)
        if nxt is None:
            return None
        pw = source.get_layer(nxt)
        if type(pw).__name__ != "Conv2D" or tuple(pw.kernel_size) != (1, 1):
            return None
        chain.append(nxt)
        current = nxt
    current = _follow(g, source, current, chain)
    src = g.inbound[name][0]
    if current in [o for o, _ in g.outputs] or _out_shape(source, src) != tuple(source.get_layer(current).output_shape):
        return None
    if any(len(g.consumers(n)) != 1 for n in chain[:-1]):
        return None
    return Block("separable", chain, current, src, _params(source, chain))


def _follow(g: Graph, source, current: str, chain: list[str]) -> str:
    """Extend the chain through batch norm and activation layers."""
    while (nxt := _single_consumer(g, current)) is not None and type(source.get_layer(nxt)).__name__ in _PASS:
        chain.append(nxt)
        current = nxt
    return current


def _single_consumer(g: Graph, name: str) -> str | None:
    users = g.consumers(name)
    return users[0] if len(users) == 1 else None


def _out_shape(source, src: tuple[str, int]) -> tuple:
    shape = source.get_layer(src[0]).output_shape
    if isinstance(shape, list):
        shape = shape[src[1]]
    return tuple(shape)
