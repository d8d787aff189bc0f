"""The contract of an importance criterion: a small class with one call that scores what may be removed.

A criterion says what it needs in class attributes, so the code that calls it can check the inputs once
and name what is missing: `needs_data` (inputs x), `uses_labels` (labels y when given; without them the
model's own top-1 answers stand in) and `granularity`:

  weight   `__call__(model, kernels, x, y)` -> one score per weight, same shape as each kernel
           (kit.techniques.importance ranks and thresholds them)
  channel  `__call__(graph, x, y)` -> per-channel contributions (value per channel, atom per channel) of a
           channel graph (kit.techniques.structured.criteria normalizes and aggregates them per unit)

Higher scores mean "keep". A criterion is built with the batch size of its passes over the data.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    from kit.techniques.structured.graph import ChannelGraph

Contribution = tuple[np.ndarray, np.ndarray]  # (value per channel, atom per channel)


class Criterion(ABC):
    """How much each removable weight or channel matters (higher = keep)."""

    granularity: ClassVar[str]
    needs_data: ClassVar[bool] = False
    uses_labels: ClassVar[bool] = False

    def __init__(self, batch_size: int = 64):
        self.batch_size = batch_size


class WeightCriterion(Criterion):
    """Scores every weight of the prunable kernels."""

    granularity: ClassVar[str] = "weight"

    @abstractmethod
    def __call__(self, model: Any, kernels: dict[str, Any], x: np.ndarray | None,
                 y: np.ndarray | None) -> dict[str, np.ndarray]:
        """Score of every weight of `kernels` ("layer/kernel" -> variable of `model`), keyed like `kernels`.

        `x` is the scoring sample when `needs_data`; `y` its labels (given or the model's top-1) when `uses_labels`.
        """


class ChannelCriterion(Criterion):
    """Scores the output channels of a channel graph's layers."""

    granularity: ClassVar[str] = "channel"
    #: why a unit can get no signal from this criterion; units without one are ranked by L1 with a note saying so
    blind_reason: ClassVar[str] = ""

    @abstractmethod
    def __call__(self, graph: ChannelGraph, x: Any, y: np.ndarray | None) -> list[Contribution]:
        """Per-channel contributions; `x` is calibration data when `needs_data`, `y` optional labels."""
