"""Filter norms: the L1 or L2 norm of the weights that produce a channel, no data needed."""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from kit.techniques.criteria.base import ChannelCriterion, Contribution
from kit.techniques.criteria.channel_data import filters


class FilterNorm(ChannelCriterion):
    """The p-norm of every source layer's filters (p = 1 or 2)."""

    p: ClassVar[int]

    def __call__(self, graph, x=None, y=None) -> list[Contribution]:
        out = []
        for name, atoms in graph.sources.items():
            w, _ = filters(graph.model.get_layer(name))
            values = np.abs(w).sum(axis=1) if self.p == 1 else np.sqrt((w.astype(np.float64) ** 2).sum(axis=1))
            out.append((values, atoms))
        return out


class L1Norm(FilterNorm):
    """Sum of |w| of a filter: many small weights count as much as one large one."""

    p = 1


class L2Norm(FilterNorm):
    """Euclidean norm of a filter: its largest weights dominate."""

    p = 2
