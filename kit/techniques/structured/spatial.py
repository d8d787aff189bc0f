"""Input-border pruning: cut the input pixels a model does not use, and everything that only they feed.

MNIST digits sit in a 20x20 box; the outer pixels carry almost no ink, yet every convolution computes them
and the first Dense after `Flatten` holds weights for them. `crop_input` puts a `Cropping2D` right after
the model input (the model still takes the original shape, so callers and converters see no change),
re-creates the layers on the smaller maps and keeps, of each Dense after `Flatten`, the rows of the
positions that survive: a position is matched to the original one with the same receptive-field centre.
The result is exact when the removed pixels are zero, every survivor maps onto an original position and
the dropped Dense rows are zero; otherwise fine-tune it. `border_shares` measures what a border costs
(gradient x input saliency on data) before cutting it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kit.core.errors import KitError, ModelError

#: layers whose output grid is their input grid
_SAME_GRID = ("BatchNormalization", "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax", "Dropout",
              "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "LayerNormalization", "Add", "Subtract",
              "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Rescaling", "Normalization")
_WINDOWED = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "MaxPooling2D", "AveragePooling2D")


@dataclass
class CropReport:
    border: tuple[int, int, int, int]  # top, bottom, left, right
    input_before: tuple[int, int]
    input_after: tuple[int, int]
    dense_rows: dict[str, tuple[int, int]] = field(default_factory=dict)  # layer -> (rows before, rows after)
    exact_positions: bool = True  # every surviving position has an original with the same centre
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"border": list(self.border), "input_before": list(self.input_before),
                "input_after": list(self.input_after),
                "dense_rows": {k: list(v) for k, v in self.dense_rows.items()},
                "exact_positions": self.exact_positions, "notes": list(self.notes)}


def saliency_map(model, x: np.ndarray, y: np.ndarray | None = None, batch_size: int = 256) -> np.ndarray:
    """Per-pixel input saliency: |x * dL/dx| summed over samples and channels, as a (height, width) map.

    The loss is cross-entropy against `y`, or against the model's own predictions when no labels are given:
    the first-order estimate of what zeroing each pixel costs.
    """
    import tensorflow as tf
    import tf_keras as keras

    from kit.techniques.finetune import outputs_logits
    from kit.models.rewire import graph as layer_graph

    _image_input(model, layer_graph(model))
    logits_out = outputs_logits(model)
    total = None
    for start in range(0, len(x), batch_size):
        xb = tf.convert_to_tensor(x[start:start + batch_size], tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(xb)
            out = model(xb, training=False)
            labels = tf.argmax(out, -1) if y is None else tf.convert_to_tensor(y[start:start + batch_size])
            loss = tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(labels, out, from_logits=logits_out))
        s = tf.reduce_sum(tf.abs(xb * tape.gradient(loss, xb)), axis=(0, 3)).numpy().astype(np.float64)
        total = s if total is None else total + s
    return total


def border_share(saliency: np.ndarray, border) -> float:
    """Share of a saliency map in `border` (pixels on every side, or top, bottom, left, right)."""
    top, bottom, left, right = _border(border)
    h, w = saliency.shape
    whole = float(saliency.sum())
    return 0.0 if whole == 0 else (whole - float(saliency[top:h - bottom, left:w - right].sum())) / whole


def border_shares(model, x: np.ndarray, y: np.ndarray | None = None) -> list[float]:
    """Share of the input saliency in an equal border of b pixels on every side (entry b - 1)."""
    sal = saliency_map(model, x, y)
    return [border_share(sal, b) for b in range(1, (min(sal.shape) + 1) // 2)]


def crop_input(model, border: int | tuple[int, int, int, int] | list[int]):
    """A copy of `model` that crops `border` pixels (all sides, or top, bottom, left, right) off its input.

    Returns (model, CropReport). Raises KitError for a border that leaves nothing, and ModelError for a
    model whose grid cannot be followed from the input to its Dense layers (reshapes, upsampling,
    several image inputs).
    """
    import tf_keras as keras

    from kit.models.rewire import graph as layer_graph
    from kit.models.rewire import rebuild

    top, bottom, left, right = _border(border)
    g = layer_graph(model)
    input_name, (h, w) = _image_input(model, g)
    if top + bottom >= h or left + right >= w:
        raise KitError(f"input border {top, bottom, left, right} leaves nothing of the {h}x{w} input",
                       "crop fewer pixels")
    report = CropReport((top, bottom, left, right), (h, w), (h - top - bottom, w - left - right))
    if not any((top, bottom, left, right)):
        return rebuild(model), report
    cropped = {}
    fresh: set[str] = set()

    def make(layer, ins):
        srcs = [src for src, _ in g.inbound[layer.name]]
        if input_name in srcs:
            if input_name not in cropped:
                cropped[input_name] = keras.layers.Cropping2D(((top, bottom), (left, right)),
                                                              name=f"{input_name}_border_crop")(ins[srcs.index(input_name)])
            ins = [cropped[input_name] if s == input_name else t for s, t in zip(srcs, ins)]
        copy = layer.__class__.from_config(layer.get_config())
        try:
            out = copy(ins[0] if len(ins) == 1 else ins)
        except (ValueError, TypeError) as e:
            raise ModelError(f"input crop: layer {layer.name!r} ({type(layer).__name__}) does not accept the "
                             f"cropped maps: {str(e).splitlines()[0]}", "crop fewer pixels, or none") from None
        if [tuple(v.shape) for v in copy.weights] == [tuple(v.shape) for v in layer.weights]:
            copy.set_weights(layer.get_weights())
        elif type(layer).__name__ == "Dense":
            fresh.add(layer.name)
        else:
            raise ModelError(f"input crop: layer {layer.name!r} ({type(layer).__name__}) changes its weights "
                             "with the input size", "crop only models whose grid ends in Flatten/pooling + Dense")
        return out

    new = rebuild(model, make)
    for name in sorted(fresh):
        report.dense_rows[name] = _transplant_rows(model, new, g, name, report)
    return new, report


def _transplant_rows(old, new, g, name: str, report: CropReport) -> tuple[int, int]:
    """Copy into `new`'s Dense `name` the rows of the positions that survive, matched by receptive-field centre."""
    flatten = g.inbound[name][0][0]
    if type(old.get_layer(flatten)).__name__ != "Flatten":
        raise ModelError(f"input crop: Dense {name!r} reads a {type(old.get_layer(flatten)).__name__}, "
                         "not a Flatten, and its input size changed", "crop only models with Flatten + Dense heads")
    grid = g.inbound[flatten][0][0]
    (oh, ow, c), o_geo = _shape(old, grid), _geometry(old, g, grid, (0, 0))
    (nh, nw, nc), n_geo = _shape(new, grid), _geometry(new, g, grid, (report.border[0], report.border[2]))
    index = []
    for axis, (n_size, o_size) in enumerate(((nh, oh), (nw, ow))):
        (ns, no), (os_, oo) = n_geo[axis], o_geo[axis]
        pos = (ns * np.arange(n_size) + no - oo) / os_
        nearest = np.clip(np.floor(pos + 0.5), 0, o_size - 1).astype(int)
        if not np.allclose(pos, nearest):
            report.exact_positions = False
            shift = float(np.max(np.abs(pos - nearest)))
            report.notes.append(f"{name}: {'rows' if axis == 0 else 'columns'} of {grid!r} map onto the original "
                                f"grid with up to {shift:.2f} cell offset (nearest taken); fine-tune the result")
        index.append(nearest)
    kernel, *rest = old.get_layer(name).get_weights()
    units = kernel.shape[-1]
    rows = kernel.reshape(oh, ow, c, units)[index[0]][:, index[1]].reshape(nh * nw * nc, units)
    new.get_layer(name).set_weights([rows, *rest])
    return oh * ow * c, nh * nw * nc


def _geometry(model, g, name: str, crop: tuple[int, int]) -> list[tuple[float, float]]:
    """(step, offset) per axis: position j of `name`'s output is centred on input pixel step * j + offset."""
    if name in g.inputs:
        return [(1.0, float(crop[0])), (1.0, float(crop[1]))]
    layer = model.get_layer(name)
    kind = type(layer).__name__
    geo = _geometry(model, g, g.inbound[name][0][0], crop)
    if kind in _SAME_GRID:
        return geo
    cfg = layer.get_config()
    if kind == "Cropping2D":
        (t, _), (lf, _) = cfg["cropping"]
        return [(geo[0][0], geo[0][1] + geo[0][0] * t), (geo[1][0], geo[1][1] + geo[1][0] * lf)]
    if kind == "ZeroPadding2D":
        (t, _), (lf, _) = cfg["padding"]
        return [(geo[0][0], geo[0][1] - geo[0][0] * t), (geo[1][0], geo[1][1] - geo[1][0] * lf)]
    if kind in _WINDOWED:
        size = cfg["kernel_size"] if "kernel_size" in cfg else cfg["pool_size"]
        strides = cfg["strides"] or size
        dilation = cfg.get("dilation_rate", (1, 1))
        in_shape = _shape_of(layer.input_shape)
        out = []
        for axis in range(2):
            k = (size[axis] - 1) * dilation[axis] + 1
            s, n_in = strides[axis], in_shape[axis]
            pad = 0
            if cfg["padding"] == "same":
                n_out = -(-n_in // s)
                pad = max((n_out - 1) * s + k - n_in, 0) // 2
            step, offset = geo[axis]
            out.append((step * s, offset + step * (-pad + (k - 1) / 2)))
        return out
    raise ModelError(f"input crop: cannot follow the grid through layer {name!r} ({kind})",
                     "crop only models built from convolutions, pooling, normalization and activations")


def _shape(model, name: str) -> tuple[int, int, int]:
    return _shape_of(model.get_layer(name).output_shape)


def _shape_of(shape) -> tuple:
    shape = shape[0] if isinstance(shape, list) else shape
    return tuple(int(d) for d in shape[1:])


def _image_input(model, g) -> tuple[str, tuple[int, int]]:
    inputs = g.inputs
    shape = _shape_of(model.input_shape)
    if len(inputs) != 1 or len(shape) != 3:
        raise ModelError(f"input crop needs one image input (height, width, channels); the model takes "
                         f"{model.input_shape}", "crop only single-input image models")
    return inputs[0], shape[:2]


def _border(border) -> tuple[int, int, int, int]:
    def pixels(v) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0

    values = [border] * 4 if pixels(border) else list(border) if isinstance(border, (list, tuple)) else []
    if len(values) != 4 or not all(pixels(v) for v in values):
        raise KitError(f"input border must be pixels >= 0: one integer or [top, bottom, left, right], got {border!r}")
    return tuple(int(v) for v in values)
