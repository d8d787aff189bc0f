"""Kernel-shape pruning: remove the outer rings of convolution kernels (filter-shape sparsity, as in SSL).

A 5x5 kernel whose outer ring is zero computes exactly what a 3x3 kernel does, so the ring is cut from
every filter of the layer and the layer rebuilt with the smaller kernel. With "same" padding and stride 1
nothing else changes; with "valid" padding the input is cropped by the ring width first, which keeps the
output shape. The result is exact when the removed taps are zero, and a starting point for fine-tuning
otherwise. Filter-count pruning leaves a convolution's cost almost unchanged on runtimes that pad output
channels to their vector width (XNNPACK's 1-channel first convolution is the common case); the kernel
area is what its cost follows.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kit.core.errors import KitError, ModelError

_KINDS = ("Conv2D", "DepthwiseConv2D")


@dataclass
class KernelChange:
    layer: str
    before: tuple[int, int]
    after: tuple[int, int]
    removed_share: float  # share of the kernel's squared weights in the removed taps
    input_crop: tuple[int, int]  # rows, columns cropped off each side of the input ("valid" padding)

    def to_dict(self) -> dict:
        return {"layer": self.layer, "before": list(self.before), "after": list(self.after),
                "removed_share": round(self.removed_share, 6), "input_crop": list(self.input_crop)}


def ring_shares(model) -> dict[str, list[float]]:
    """For every shrinkable layer, the share of squared kernel weights outside each centred smaller kernel.

    Index r is the cost of cutting r rings (a 5x5 kernel has entries for 3x3 and 1x1). A low share means
    the layer learned a smaller kernel than it was given.
    """
    out = {}
    for layer in model.layers:
        if type(layer).__name__ in _KINDS and _dilation(layer) == (1, 1):
            kernel = layer.get_weights()[0]
            kh, kw = kernel.shape[:2]
            out[layer.name] = [_removed_share(kernel, (kh - 2 * r, kw - 2 * r)) for r in range(1, min(kh, kw) // 2 + 1)]
    return out


def shrink_kernels(model, sizes: dict[str, int | tuple[int, int]]):
    """A copy of `model` whose named convolutions have centred kernels of the given sizes (odd steps only).

    Returns (model, [KernelChange]). Raises KitError for unknown layers or sizes that cannot be centred,
    and ModelError where the layer's padding makes the cut inexact (stride > 1 with "same" padding).
    """
    import tf_keras as keras

    from kit.models.rewire import rebuild

    plans = {name: _plan(model, name, size) for name, size in sizes.items()}

    def make(layer, ins):
        change = plans.get(layer.name)
        if change is None:
            return None
        (rh, rw) = ((change.before[0] - change.after[0]) // 2, (change.before[1] - change.after[1]) // 2)
        x = ins[0]
        if any(change.input_crop):
            x = keras.layers.Cropping2D(((rh, rh), (rw, rw)), name=f"{layer.name}_crop")(x)
        cfg = layer.get_config()
        cfg["kernel_size"] = change.after
        new = layer.__class__.from_config(cfg)
        out = new(x)
        weights = layer.get_weights()
        kh, kw = change.before
        new.set_weights([weights[0][rh:kh - rh, rw:kw - rw]] + weights[1:])
        return out

    return rebuild(model, make), list(plans.values())


def find_convolution(model, name: str, what: str):
    """The Conv2D or DepthwiseConv2D layer `name`; a KitError naming `what` would be done to it otherwise."""
    try:
        layer = model.get_layer(name)
    except ValueError:
        convs = [x.name for x in model.layers if type(x).__name__ in _KINDS]
        raise KitError(f"{what}: no layer {name!r} in the model",
                       f"convolutions: {', '.join(convs) or 'none'}") from None
    kind = type(layer).__name__
    if kind not in _KINDS:
        raise KitError(f"{what}: layer {name!r} is a {kind}", "only Conv2D and DepthwiseConv2D layers qualify")
    return layer


def _plan(model, name: str, size) -> KernelChange:
    layer = find_convolution(model, name, "kernel shrink")
    if _dilation(layer) != (1, 1):
        raise ModelError(f"kernel shrink: layer {name!r} is dilated", "shrink only undilated convolutions")
    before = tuple(int(k) for k in layer.kernel_size)
    after = (size, size) if isinstance(size, (int, np.integer)) else tuple(int(k) for k in size)
    if len(after) != 2 or any(isinstance(k, bool) for k in after):
        raise KitError(f"kernel shrink: size for {name!r} must be an integer or [height, width], got {size!r}")
    for b, a in zip(before, after):
        if not 1 <= a <= b or (b - a) % 2:
            raise KitError(f"kernel shrink: {name!r} has a {before[0]}x{before[1]} kernel; "
                           f"{after[0]}x{after[1]} cannot be cut from its centre",
                           "give a smaller size that differs by an even number (5 -> 3 or 1)")
    padding = layer.get_config()["padding"]
    strides = tuple(int(s) for s in layer.strides)
    crop = (0, 0)
    if padding == "valid":
        crop = ((before[0] - after[0]) // 2, (before[1] - after[1]) // 2)
    elif strides != (1, 1):
        raise ModelError(f"kernel shrink: {name!r} has stride {strides} with \"same\" padding, where a smaller "
                         "kernel shifts the window", "shrink stride-1 or \"valid\" convolutions")
    return KernelChange(name, before, after, _removed_share(layer.get_weights()[0], after), crop)


def _removed_share(kernel: np.ndarray, after: tuple[int, int]) -> float:
    kh, kw = kernel.shape[:2]
    rh, rw = (kh - after[0]) // 2, (kw - after[1]) // 2
    total = float(np.sum(np.square(kernel, dtype=np.float64)))
    kept = float(np.sum(np.square(kernel[rh:kh - rh, rw:kw - rw], dtype=np.float64)))
    return 0.0 if total == 0 else max(0.0, (total - kept) / total)


def _dilation(layer) -> tuple[int, int]:
    return tuple(int(d) for d in layer.dilation_rate)
