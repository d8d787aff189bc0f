"""Average percentage of zeros after each ReLU on calibration data: a unit that is mostly zero matters little."""
from __future__ import annotations

import numpy as np

from kit.techniques.criteria.base import ChannelCriterion, Contribution
from kit.techniques.criteria.channel_data import batches


class APoZ(ChannelCriterion):
    """1 - the fraction of zero outputs of every ReLU-activated channel."""

    needs_data = True
    blind_reason = "no ReLU after them"

    def __call__(self, graph, x, y=None) -> list[Contribution]:
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
        for _, xb in batches(x, self.batch_size):
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


def _is_relu(layer) -> bool:
    import tf_keras as keras

    if isinstance(layer, keras.layers.ReLU):
        return float(getattr(layer, "negative_slope", 0.0) or 0.0) == 0.0
    fn = getattr(layer, "activation", None)
    return getattr(fn, "__name__", "") in ("relu", "relu6")
