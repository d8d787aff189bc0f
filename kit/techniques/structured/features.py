"""Input-feature removal: drop the inputs of a model's first Dense that carry least, and the rows they hold.

A fully connected network on MNIST stores 784 rows in its first layer, though many pixels are blank in
every image and many more carry almost nothing. `select_inputs` scores every input feature of the first
Dense by the weight it holds and how much the data uses it (mean |activation| x L1 norm of its row),
keeps the best, and rebuilds the model as input -> (the same layers up to that Dense) -> SelectFeatures
(a TFLite GATHER) -> the Dense with only the kept rows -> the rest unchanged. The model still takes the
original input, so callers, converters and firmware see no change. The rewrite is exact when the dropped
features are zero in the data or their rows are zero; otherwise fine-tune it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kit.core.errors import KitError

#: layers that may stand between the input and the first Dense (they keep the values of every feature)
_PASS = ("InputLayer", "Flatten", "Reshape", "Dropout", "GaussianNoise", "GaussianDropout", "Rescaling")


@dataclass
class FeatureReport:
    layer: str  # the Dense whose rows were cut
    before: int
    after: int
    removed_share: float  # of the summed feature scores
    unused: int  # features zero in every calibration sample (None-equivalent 0 without data)
    scored_on: int  # calibration samples behind the scores (0: weights only)

    def to_dict(self) -> dict:
        return {"layer": self.layer, "before": self.before, "after": self.after,
                "removed_share": round(self.removed_share, 6), "unused": self.unused, "scored_on": self.scored_on}


def first_dense(model):
    """The Dense the input flows into along one chain of shape-only layers."""
    from kit.models.rewire import graph

    g = graph(model)
    if len(g.inputs) != 1 or len(g.outputs) != 1:
        raise KitError(f"input-feature removal needs a model with one input and one output; {model.name} has "
                       f"{len(g.inputs)} and {len(g.outputs)}", "drop [structured] inputs")
    current = g.inputs[0]
    while True:
        consumers = g.consumers(current)
        if len(consumers) != 1:
            raise KitError(f"input-feature removal needs one chain from the input to the first Dense; {current} "
                           f"feeds {', '.join(consumers) or 'nothing'}", "drop [structured] inputs for this model")
        layer = model.get_layer(consumers[0])
        kind = type(layer).__name__
        if kind == "Dense":
            if len(layer.input_shape) != 2:
                raise KitError(f"{layer.name} takes a {len(layer.input_shape) - 1}-D input per sample; "
                               "input-feature removal needs a flat one", "put a Flatten before it")
            return layer
        if kind not in _PASS:
            raise KitError(f"the input reaches {layer.name} ({kind}) before any Dense; input-feature removal "
                           "applies to models whose input flows into a Dense",
                           "for images use [structured] input_border, for convolutions channel ratios")
        current = layer.name


def feature_scores(model, x: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Per input feature of the first Dense: L1 norm of its row, times its mean |value| on `x` when given;
    and how many features are zero in every sample of `x`."""
    import tf_keras as keras

    dense = first_dense(model)
    kernel = dense.get_weights()[0]
    rows = np.abs(kernel).sum(axis=1)
    if x is None or len(x) == 0:
        return rows, 0
    feed = keras.Model(model.inputs, dense.input)
    values = np.abs(feed.predict(x, batch_size=512, verbose=0).reshape(len(x), -1))
    use = values.mean(axis=0)
    return rows * use, int(np.sum(values.max(axis=0) == 0))


def select_inputs(model, ratio: float, x: np.ndarray | None = None):
    """(the rebuilt model, FeatureReport): the first Dense keeps the best `1 - ratio` of its input features."""
    from kit.models.layers import SelectFeatures
    from kit.models.rewire import rebuild

    if not 0 < ratio < 1:
        raise KitError(f"input-feature ratio {ratio} is not between 0 and 1")
    dense = first_dense(model)
    scores, unused = feature_scores(model, x)
    count = len(scores)
    kept = max(1, count - int(round(ratio * count)))
    keep = np.sort(np.argsort(-scores, kind="stable")[:kept])
    total = float(scores.sum())
    removed = 0.0 if total <= 0 else float(1 - scores[keep].sum() / total)

    def make(layer, ins):
        if layer.name != dense.name:
            return None
        clone = type(layer).from_config(layer.get_config())
        out = clone(SelectFeatures(keep.tolist(), name=f"{dense.name}_inputs")(ins[0]))
        weights = layer.get_weights()
        clone.set_weights([weights[0][keep], *weights[1:]])
        return out

    out = rebuild(model, make)
    return out, FeatureReport(dense.name, count, kept, removed, unused, 0 if x is None else len(x))
