"""Perforation: compute a convolution only at the positions its pooling keeps a window of, and drop the pooling.

A stride-1 convolution followed by 2x2 pooling computes four outputs for every one that survives. Giving the
convolution the pooling's stride and removing the pooling computes one (the top-left of each window) instead:
the same output grid, a quarter of the MACs, and one op fewer (as in PerforatedCNNs, Figurnov et al. 2016,
with a regular perforation mask). The kernel is kept; the output differs from the pooled one, so the model is a
starting point for fine-tuning. On runtimes that pad a convolution's few input channels to their vector width
(XNNPACK's int8 kernels pad to 8), a first convolution's cost follows its output positions, which this cuts.
"""
from __future__ import annotations

from dataclasses import dataclass

from kit.core.errors import KitError, ModelError

_POOLS = ("MaxPooling2D", "AveragePooling2D")
#: per-position layers a pooling may sit behind: they commute with taking every s-th position
_ELEMENTWISE = ("Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "BatchNormalization", "Dropout",
                "SpatialDropout2D")


@dataclass
class Perforation:
    layer: str
    stride: tuple[int, int]
    pooling: str  # the pooling layer removed
    positions_before: int  # output positions the convolution computed
    positions_after: int

    def to_dict(self) -> dict:
        return {"layer": self.layer, "stride": list(self.stride), "pooling": self.pooling,
                "positions_before": self.positions_before, "positions_after": self.positions_after}


def perforate(model, strides: dict[str, int | tuple[int, int]]):
    """A copy of `model` whose named convolutions take the stride of the pooling after them, without it.

    Returns (model, [Perforation]). Raises KitError for unknown or unsuitable layers and ModelError where the
    strided convolution would not give the pooling's output grid.
    """
    from kit.models.rewire import graph, rebuild

    g = graph(model)
    plans = [_plan(model, g, name, stride) for name, stride in strides.items()]
    by_conv = {p.layer: p for p in plans}

    def make(layer, ins):
        plan = by_conv.get(layer.name)
        if plan is None:
            return None
        cfg = layer.get_config()
        cfg["strides"] = plan.stride
        new = layer.__class__.from_config(cfg)
        out = new(ins[0])
        new.set_weights(layer.get_weights())
        return out

    bypass = {p.pooling: (g.inbound[p.pooling][0][0], g.inbound[p.pooling][0][1]) for p in plans}
    return rebuild(model, make, bypass=bypass), plans


def _plan(model, g, name: str, stride) -> Perforation:
    from kit.techniques.structured.kernels import find_convolution

    layer = find_convolution(model, name, "perforation")
    s = (stride, stride) if isinstance(stride, int) else tuple(int(v) for v in stride)
    if len(s) != 2 or any(isinstance(v, bool) or v < 1 for v in s) or max(s) < 2:
        raise KitError(f"perforation: the stride for {name!r} must be an integer >= 2 or [rows, columns] "
                       f"(one of them >= 2), got {stride!r}")
    if tuple(layer.strides) != (1, 1) or tuple(layer.dilation_rate) != (1, 1):
        raise ModelError(f"perforation: {name!r} already has stride {tuple(layer.strides)} or dilation "
                         f"{tuple(layer.dilation_rate)}", "perforate stride-1, undilated convolutions")
    pool = _pooling_after(model, g, name)
    cfg = pool.get_config()
    if tuple(cfg["pool_size"]) != s or tuple(cfg["strides"]) != s:
        raise KitError(f"perforation: {pool.name!r} after {name!r} pools {tuple(cfg['pool_size'])} with stride "
                       f"{tuple(cfg['strides'])}, not {s}", f"give {name!r} the pooling's stride")
    h, w = (int(d) for d in layer.output_shape[1:3])
    pooled = tuple(int(d) for d in pool.output_shape[1:3])
    strided = tuple(_strided(n, k, st, layer.get_config()["padding"])
                    for n, k, st in zip(layer.input_shape[1:3], layer.kernel_size, s))
    if strided != pooled:
        raise ModelError(f"perforation: {name!r} with stride {s} gives a {strided[0]}x{strided[1]} grid, "
                         f"{pool.name!r} gave {pooled[0]}x{pooled[1]}",
                         "crop its input (input_border) to a size the stride divides")
    return Perforation(name, s, pool.name, h * w, strided[0] * strided[1])


def _pooling_after(model, g, name: str):
    """The pooling layer reached from `name` through per-position layers only, each with a single consumer."""
    current = name
    while True:
        consumers = g.consumers(current)
        if len(consumers) != 1:
            raise ModelError(f"perforation: {current!r} feeds {len(consumers)} layers; "
                             "a convolution is perforated only when its one path leads to a pooling")
        layer = model.get_layer(consumers[0])
        kind = type(layer).__name__
        if kind in _POOLS:
            return layer
        if kind not in _ELEMENTWISE:
            raise KitError(f"perforation: {name!r} is followed by {layer.name!r} ({kind}), not a pooling",
                           "perforate a convolution whose output goes to a MaxPooling2D or AveragePooling2D")
        current = layer.name


def _strided(n: int, k: int, s: int, padding: str) -> int:
    return -(-n // s) if padding == "same" else (n - k) // s + 1
