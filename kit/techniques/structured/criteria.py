"""How much each removable unit matters, by one of the registered channel criteria.

Every criterion (`kit.techniques.criteria`, registry `CHANNEL_CRITERIA`) produces per-channel *contributions*
(filter norms of a layer, |gamma| of a batch norm, activation statistics of a ReLU). Each contribution is
divided by its own mean, so layers of different scale rank against each other,
and a unit's score is the mean of the contributions that touch it (all layers
of a residual group vote). Units a criterion cannot see (no batch norm after
them, no ReLU) fall back to the L1 norm of their filters, with a note.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kit.core.errors import DataError
from kit.techniques.criteria import CHANNEL_CRITERIA, Contribution, L1Norm, criterion_class
from kit.techniques.structured.graph import ChannelGraph

#: the registered channel criteria (name -> class); recipes and the CLI accept these names
CRITERIA = CHANNEL_CRITERIA
#: ranks the units a criterion has no signal for
FALLBACK = "l1"


def unit_scores(graph: ChannelGraph, criterion: str, calib_data=None, calib_labels=None,
                batch_size: int = 64) -> tuple[np.ndarray, list[str]]:
    """Score (higher = keep) of every unit, indexed by its root atom; plus notes."""
    cls = criterion_class("channel", criterion)
    if cls.needs_data and calib_data is None:
        raise DataError(f"criterion {criterion!r} needs calibration data", "pass calib_data (a few hundred inputs)")
    contributions = cls(batch_size)(graph, calib_data, calib_labels)
    scores, seen = _aggregate(graph, contributions)
    fallback, _ = _aggregate(graph, L1Norm(batch_size)(graph))
    units = np.concatenate([g.units for g in graph.groups]) if graph.groups else np.zeros(0, np.int64)
    blind = units[~seen[units]]
    notes = []
    if len(blind):
        scores[blind] = fallback[blind]
        if criterion != FALLBACK:
            notes.append(f"{len(blind)} of {len(units)} removable channels have no {criterion} signal "
                         f"({cls.blind_reason}); they are ranked by the L1 norm of their filters")
    return scores, notes


def _aggregate(graph: ChannelGraph, contributions: Sequence[Contribution]) -> tuple[np.ndarray, np.ndarray]:
    n = len(graph.root)
    sums, counts = np.zeros(n), np.zeros(n)
    for values, atoms in contributions:
        values = np.asarray(values, dtype=np.float64)
        mean = values.mean() if values.size else 0.0
        if mean > 0:
            values = values / mean
        roots = graph.root[atoms]
        np.add.at(sums, roots, values)
        np.add.at(counts, roots, 1.0)
    seen = counts > 0
    scores = np.zeros(n)
    scores[seen] = sums[seen] / counts[seen]
    return scores, seen
