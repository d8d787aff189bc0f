"""|w|: the weight's own size, no data needed."""
from __future__ import annotations

import numpy as np

from kit.techniques.criteria.base import WeightCriterion


class Magnitude(WeightCriterion):
    """|w| of every weight."""

    def __call__(self, model, kernels, x, y) -> dict[str, np.ndarray]:
        return {k: np.abs(v.numpy()) for k, v in kernels.items()}
