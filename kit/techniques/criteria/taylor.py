"""First-order Taylor: |w * dL/dw| estimates the loss change when w is removed; per weight, or summed over a
filter for a channel."""
from __future__ import annotations

import numpy as np

from kit.core.errors import KitError
from kit.techniques.criteria.base import ChannelCriterion, Contribution, WeightCriterion
from kit.techniques.criteria.channel_data import batches, loss_targets
from kit.techniques.criteria.gradients import batch_gradients


class WeightTaylor(WeightCriterion):
    """Mean over batches of |w * dL/dw|."""

    needs_data = True
    uses_labels = True

    def __call__(self, model, kernels, x, y) -> dict[str, np.ndarray]:
        weights = {k: v.numpy() for k, v in kernels.items()}
        grads = batch_gradients(model, kernels, x, y, self.batch_size)
        return {k: np.mean([np.abs(g[k] * weights[k]) for g in grads], axis=0) for k in kernels}


class ChannelTaylor(ChannelCriterion):
    """Sum over a filter's weights (and bias) of |w * dL/dw|, averaged over batches."""

    needs_data = True
    uses_labels = True
    blind_reason = "no gradient reaches them"

    def __call__(self, graph, x, y) -> list[Contribution]:
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
        targets, loss_fn = loss_targets(model, x, y, self.batch_size)
        n_batches = 0
        for start, xb in batches(x, self.batch_size):
            with tf.GradientTape() as tape:
                loss = loss_fn(targets[start:start + self.batch_size], model(xb, training=False))
            grads = iter(tape.gradient(loss, flat))
            for total, vs in zip(totals, variables):
                for v in vs:
                    g = next(grads)
                    if g is not None:
                        wg = np.abs(v.numpy() * g.numpy())
                        total += wg.reshape(-1, wg.shape[-1]).sum(axis=0)
            n_batches += 1
        return [(t / n_batches, graph.sources[n]) for t, n in zip(totals, names) if np.any(t > 0)]
