"""0.5 * F * w^2 with F the diagonal empirical Fisher: the second-order (OBD) estimate of the loss change when w
is removed, with the Fisher standing in for the Hessian."""
from __future__ import annotations

import numpy as np

from kit.techniques.criteria.base import WeightCriterion
from kit.techniques.criteria.gradients import per_sample_squared_gradients


class Fisher(WeightCriterion):
    """0.5 * F * w^2, F the mean of per-sample squared gradients (a quarter of the batch size: per-sample
    Jacobians are large)."""

    needs_data = True
    uses_labels = True

    def __call__(self, model, kernels, x, y) -> dict[str, np.ndarray]:
        fisher = per_sample_squared_gradients(model, kernels, x, y, max(1, self.batch_size // 4))
        return {k: 0.5 * fisher[k] * kernels[k].numpy() ** 2 for k in kernels}
