"""Mean over batches of |dL/dw|: how strongly the loss reacts to the weight."""
from __future__ import annotations

import numpy as np

from kit.techniques.criteria.base import WeightCriterion
from kit.techniques.criteria.gradients import batch_gradients


class Gradient(WeightCriterion):
    """Mean over batches of |dL/dw|."""

    needs_data = True
    uses_labels = True

    def __call__(self, model, kernels, x, y) -> dict[str, np.ndarray]:
        grads = batch_gradients(model, kernels, x, y, self.batch_size)
        return {k: np.mean([np.abs(g[k]) for g in grads], axis=0) for k in kernels}
