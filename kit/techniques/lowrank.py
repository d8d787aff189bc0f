"""Low-rank factorisation of Dense and 1x1 Conv kernels, and weight merging of similar neurons.

Factorisation: W [in, out] = U S V^T, truncated to rank r, becomes two layers, `name_u` (in -> r, linear,
no bias, carrying the stride of a 1x1 conv) and `name` (r -> out, with the original bias and activation);
each factor holds sqrt(S). The rank comes from a fixed `rank`, an `energy` (smallest r keeping that share
of sum S^2), or a `params_fraction` (largest r with r (in + out) <= fraction * in * out). With choose =
"auto" a layer is factorised only where the two factors take fewer bytes than the layer does now, dense
or, when pruning left zeros, in TFLite's sparse encoding (values + CSR indices, estimated); the report
gives both sizes and the multiply-accumulates per output position.

Weight merging (Srinivas & Babu 2015): a neuron whose incoming weights (and bias) are close to a positive
multiple a of another's computes about a times its output under ReLU, so it is removed and a times its
outgoing weights are added to the other's. Neurons are merged greedily in order of the output error they
cause, ||outgoing||^2 * ||incoming - a * other||^2.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

import numpy as np

from kit.core.errors import KitError, ModelError
from kit.techniques.prune import private_copy
from kit.models.rewire import functional, graph, rebuild

CHOICES = ("auto", "always")


@dataclass
class LayerChoice:
    layer: str
    type: str
    shape: list[int]  # [in, out]
    rank: int
    max_rank: int
    energy: float  # share of sum S^2 kept at this rank
    bytes_now: int  # dense, or the sparse-encoding estimate when the kernel has zeros
    bytes_lowrank: int
    macs_now: int  # per output position
    macs_lowrank: int
    factorized: bool
    reason: str


@dataclass
class LowRankReport:
    rule: str
    layers: list[LayerChoice] = field(default_factory=list)
    params_before: int = 0
    params_after: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def factorize(model, rank: int | None = None, energy: float | None = None, params_fraction: float | None = None,
              skip=(), choose: str = "auto", bytes_per_weight: int = 4):
    """Returns (new model, report). Give exactly one of rank, energy, params_fraction."""
    rules = {"rank": rank, "energy": energy, "params_fraction": params_fraction}
    given = {k: v for k, v in rules.items() if v is not None}
    if len(given) != 1:
        raise KitError("give exactly one of rank, energy, params_fraction for low-rank factorisation",
                       f"got {', '.join(given) or 'none'}")
    if choose not in CHOICES:
        raise KitError(f"unknown low-rank choice {choose!r}", f"use {' | '.join(CHOICES)}")
    (rule, value), = given.items()
    if rule == "rank" and (int(value) != value or value < 1):
        raise KitError(f"rank must be a positive integer, got {value!r}")
    if rule != "rank" and not 0 < value <= 1:
        raise KitError(f"{rule} must be in (0, 1], got {value!r}")
    report = LowRankReport(f"{rule} = {value}", params_before=int(model.count_params()))
    plans: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for layer in functional(model).layers:
        if any(re.fullmatch(p, layer.name) for p in skip) or not _candidate(layer):
            continue
        w = layer.kernel.numpy()
        w2 = w.reshape(-1, w.shape[-1])
        u, s, vt = np.linalg.svd(w2.astype(np.float64), full_matrices=False)
        r = _rank(s, rule, value, *w2.shape)
        n_in, n_out = w2.shape
        nnz = int(np.count_nonzero(w2))
        now = n_in * n_out * bytes_per_weight if nnz == w2.size else min(
            n_in * n_out * bytes_per_weight, sparse_bytes(nnz, n_out, n_in, bytes_per_weight))
        low = r * (n_in + n_out) * bytes_per_weight
        kept = float(np.sum(s[:r] ** 2) / max(np.sum(s ** 2), 1e-30))
        factor = choose == "always" or low < now
        reason = ("factorised" if choose == "always" else f"factors {low:,} B < {now:,} B now") if factor else \
            f"factors {low:,} B >= {now:,} B now"
        report.layers.append(LayerChoice(layer.name, type(layer).__name__, [n_in, n_out], r, len(s), round(kept, 6),
                                         now, low, n_in * n_out, r * (n_in + n_out), factor, reason))
        if factor:
            root = np.sqrt(s[:r])
            plans[layer.name] = ((u[:, :r] * root).astype(np.float32), (root[:, None] * vt[:r]).astype(np.float32))
    new = rebuild(model, _factor_maker(plans)) if plans else private_copy(model)
    report.params_after = int(new.count_params())
    return new, report


def sparse_bytes(nnz: int, rows: int, cols: int, bytes_per_value: int) -> int:
    """Estimated TFLite sparse-encoded size of a [rows, cols] weight: values, CSR segments and column indices,
    each index array in the smallest unsigned type that holds it."""
    def width(max_value: int) -> int:
        return 1 if max_value < 256 else 2 if max_value < 65536 else 4

    return nnz * bytes_per_value + (rows + 1) * width(nnz) + nnz * width(cols)


def _candidate(layer) -> bool:
    kind = type(layer).__name__
    if kind == "Dense":
        return True
    if kind == "Conv2D":
        return (tuple(layer.kernel_size) == (1, 1) and layer.groups == 1 and tuple(layer.dilation_rate) == (1, 1)
                and layer.data_format == "channels_last")
    return False


def _rank(s: np.ndarray, rule: str, value: float, n_in: int, n_out: int) -> int:
    if rule == "rank":
        return int(min(value, len(s)))
    if rule == "energy":
        share = np.cumsum(s ** 2) / max(np.sum(s ** 2), 1e-30)
        return int(min(len(s), np.searchsorted(share, value - 1e-12) + 1))
    return int(max(1, min(len(s), np.floor(value * n_in * n_out / (n_in + n_out)))))


def _factor_maker(plans: dict):
    import tf_keras as keras

    def make(layer, ins):
        if layer.name not in plans:
            return None
        a, b = plans[layer.name]
        cfg = layer.get_config()
        if type(layer).__name__ == "Dense":
            first = keras.layers.Dense(a.shape[1], use_bias=False, name=f"{layer.name}_u")
            second = keras.layers.Dense(cfg["units"], activation=cfg["activation"], use_bias=cfg["use_bias"],
                                        name=layer.name)
        else:
            first = keras.layers.Conv2D(a.shape[1], 1, strides=cfg["strides"], padding=cfg["padding"],
                                        use_bias=False, name=f"{layer.name}_u")
            second = keras.layers.Conv2D(cfg["filters"], 1, activation=cfg["activation"], use_bias=cfg["use_bias"],
                                         name=layer.name)
            a, b = a.reshape(1, 1, *a.shape), b.reshape(1, 1, *b.shape)
        out = second(first(ins[0]))
        first.set_weights([a])
        second.set_weights([b, layer.bias.numpy()] if cfg["use_bias"] else [b])
        return out

    return make


@dataclass
class MergeReport:
    layer: str
    next_layer: str
    units_before: int
    units_after: int
    merges: list[dict] = field(default_factory=list)  # removed, into, scale, cost

    def to_dict(self) -> dict:
        return asdict(self)


_ELEMENTWISE = ("Activation", "ReLU", "Dropout", "GaussianNoise", "GaussianDropout")
_HOMOGENEOUS = ("relu", "linear")


def merge_neurons(model, layer_name: str, remove: float):
    """Fold `remove` (a fraction) of Dense layer `layer_name`'s neurons into their most similar kept
    neurons; returns (smaller model, report). The next Dense layer absorbs the outgoing weights."""
    if not 0 < remove < 1:
        raise KitError(f"the fraction of neurons to merge must be in (0, 1), got {remove!r}")
    g, source = graph(model), functional(model)
    layer = _layer(source, layer_name)
    if type(layer).__name__ != "Dense" or _activation(layer) not in _HOMOGENEOUS:
        raise ModelError(f"layer {layer_name!r} is not a Dense layer with ReLU or linear activation",
                         "weight merging needs a positively homogeneous activation (ReLU) so a scaled neuron "
                         "computes a scaled output")
    nxt = _next_dense(g, source, layer_name)
    w, b = layer.kernel.numpy(), (layer.bias.numpy() if layer.use_bias else np.zeros(layer.units, np.float32))
    w_out = nxt.kernel.numpy().copy()
    incoming = np.concatenate([w, b[None]], axis=0).T  # [units, in + 1]
    n_remove = int(round(remove * layer.units))
    if n_remove >= layer.units:
        raise KitError(f"merging {remove:.0%} of {layer_name!r} would leave no neuron")
    kept = np.ones(layer.units, bool)
    report = MergeReport(layer_name, nxt.name, layer.units, layer.units - n_remove)
    dots = incoming.astype(np.float64) @ incoming.T.astype(np.float64)
    norms2 = np.maximum(np.diag(dots), 1e-30)
    scale = dots / norms2[None, :]  # scale[j, k]: projection of neuron j's incoming weights onto k's
    resid = np.maximum(norms2[:, None] - dots * scale, 0.0)  # ||in_j - scale * in_k||^2
    resid[(scale <= 0) | np.eye(layer.units, dtype=bool)] = np.inf
    for _ in range(n_remove):
        j, k, cost = _best_merge(resid, w_out, kept)
        if np.isfinite(resid[j, k]):  # else j has no outgoing weights: removing it changes nothing
            w_out[k] += scale[j, k] * w_out[j]
        kept[j] = False
        report.merges.append({"removed": int(j), "into": int(k), "scale": round(float(scale[j, k]), 6),
                              "cost": float(cost)})
    idx = np.flatnonzero(kept)
    new = rebuild(model, _merge_maker(layer_name, nxt.name, idx, w_out))
    return new, report


def _best_merge(resid: np.ndarray, w_out: np.ndarray, kept: np.ndarray):
    """(removed j, kept k, cost) with the smallest ||out_j||^2 * ||in_j - a in_k||^2 over live pairs, a > 0."""
    live = np.flatnonzero(kept)
    out2 = np.sum(w_out[live].astype(np.float64) ** 2, axis=1)[:, None]
    sub = resid[np.ix_(live, live)]
    cost = np.where(out2 == 0, 0.0, out2 * np.where(np.isinf(sub), np.inf, sub))
    np.fill_diagonal(cost, np.inf)
    j, k = np.unravel_index(np.argmin(cost), cost.shape)
    if not np.isfinite(cost[j, k]):
        raise KitError("no two neurons have positively aligned incoming weights: nothing can be merged")
    return live[j], live[k], cost[j, k]


def _merge_maker(layer_name: str, next_name: str, idx: np.ndarray, w_out: np.ndarray):
    def make(layer, ins):
        if layer.name == layer_name:
            cfg = dict(layer.get_config(), units=len(idx))
            new = layer.__class__.from_config(cfg)
            out = new(ins[0])
            weights = [layer.kernel.numpy()[:, idx]] + ([layer.bias.numpy()[idx]] if layer.use_bias else [])
            new.set_weights(weights)
            return out
        if layer.name == next_name:
            new = layer.__class__.from_config(layer.get_config())
            out = new(ins[0])
            new.set_weights([w_out[idx]] + ([layer.bias.numpy()] if layer.use_bias else []))
            return out
        return None

    return make


def _layer(model, name: str):
    try:
        return model.get_layer(name)
    except ValueError:
        raise ModelError(f"the model has no layer {name!r}",
                         f"layers: {', '.join(l.name for l in model.layers)}") from None


def _activation(layer) -> str:
    act = layer.get_config().get("activation")
    return act if isinstance(act, str) else getattr(act, "__name__", str(act))


def _next_dense(g, model, name: str):
    """The Dense layer fed by `name` through element-wise layers only."""
    current = name
    while True:
        users = g.consumers(current)
        if len(users) != 1:
            raise ModelError(f"the output of {current!r} feeds {len(users)} layers",
                             "weight merging needs a chain layer -> (activation/dropout) -> Dense")
        nxt = model.get_layer(users[0])
        kind = type(nxt).__name__
        if kind == "Dense":
            return nxt
        if kind not in _ELEMENTWISE or (kind == "Activation" and _activation(nxt) not in _HOMOGENEOUS):
            raise ModelError(f"{name!r} feeds {users[0]!r} ({kind}) before any Dense layer",
                             "weight merging needs a chain layer -> (activation/dropout) -> Dense")
        current = users[0]
