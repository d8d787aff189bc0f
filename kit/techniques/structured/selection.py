"""Which units to remove: a global ranking or per-layer ratios, rounded to a channel multiple."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kit.core.errors import KitError
from kit.techniques.structured.graph import ChannelGraph, Group

SCOPES = ("global", "layer")


@dataclass
class GroupPlan:
    """One coupled group: its layers, channel count before and after, and the ratio that applied."""

    layers: tuple[str, ...]
    before: int
    after: int
    ratio: float
    ranking: str  # "global" | "layer" | "fixed" (nothing removable)


def select(graph: ChannelGraph, scores: np.ndarray, ratio: float, per_layer: dict[str, float] | None = None,
           scope: str = "global", round_to: int = 1) -> tuple[np.ndarray, list[GroupPlan], list[str]]:
    """Return `keep` (bool per root atom), one plan per group, and notes."""
    check_arguments(ratio, scope, round_to)
    round_to = int(round_to)
    notes: list[str] = []
    own = _per_layer_ratios(graph, per_layer or {}, notes)
    removed: dict[int, int] = {}
    shared = [i for i, g in enumerate(graph.groups) if i not in own and len(g.units)]
    if scope == "global":
        removed.update(_global(graph.groups, shared, scores, ratio, round_to))
    else:
        own.update({i: ratio for i in shared})
    for i, r in own.items():
        g = graph.groups[i]
        removed[i] = min(math.floor(r * len(g.units) + 1e-9), _max_removable(g, round_to))
    keep = np.ones(len(graph.root), dtype=bool)
    plans = []
    for i, g in enumerate(graph.groups):
        n = _rounded(g, removed.get(i, 0), round_to)
        order = g.units[np.lexsort((g.units, scores[g.units]))]  # weakest first, ties by position
        keep[order[:n]] = False
        _keep_one_per_layer(graph, g, keep, scores)
        after = g.frozen + int(keep[g.units].sum())
        ranking = "fixed" if not len(g.units) else ("layer" if i in own else "global")
        plans.append(GroupPlan(g.layers, g.size, after, own.get(i, ratio if len(g.units) else 0.0), ranking))
    return keep, plans, notes


def check_arguments(ratio: float, scope: str, round_to: int) -> None:
    """Refuse bad settings before any expensive scoring."""
    _check_ratio(ratio, "ratio")
    if scope not in SCOPES:
        raise KitError(f"unknown ranking scope {scope!r}", f"use one of {', '.join(SCOPES)}")
    if not isinstance(round_to, (int, np.integer)) or round_to < 1:
        raise KitError(f"round_to must be a positive integer, got {round_to!r}")


def _check_ratio(r: float, what: str) -> None:
    if not isinstance(r, (int, float)) or not 0.0 <= float(r) < 1.0:
        raise KitError(f"{what} must be in [0, 1) (the fraction of channels to remove), got {r!r}")


def _per_layer_ratios(graph: ChannelGraph, per_layer: dict[str, float], notes: list[str]) -> dict[int, float]:
    own: dict[int, float] = {}
    names = {layer.name for layer in graph.model.layers}
    for name, r in per_layer.items():
        _check_ratio(r, f"ratio for {name!r}")
        if name not in names:
            raise KitError(f"per-layer ratio names {name!r}, which is not a layer of the model",
                           f"prunable layers: {', '.join(graph.sources)}")
        if name not in graph.sources:
            raise KitError(f"per-layer ratio names {name!r}, which has no output channels of its own "
                           f"({type(graph.model.get_layer(name)).__name__})",
                           "name the Conv, Dense or SeparableConv layer that produces the channels")
        i = next(i for i, g in enumerate(graph.groups) if name in g.layers)
        if not len(graph.groups[i].units) and r > 0:
            notes.append(f"{name}: its channels cannot be removed (they feed the output, a skipped layer or a layer "
                         "the graph does not understand)")
        if i in own and own[i] != r:
            notes.append(f"{name}: coupled with {', '.join(graph.groups[i].layers)}; the smaller ratio applies "
                         "to the whole group")
            r = min(r, own[i])
        own[i] = float(r)
    return own


def _min_keep(g: Group, round_to: int) -> int:
    return max(g.frozen, min(g.size, max(1, round_to)))


def _max_removable(g: Group, round_to: int) -> int:
    return max(0, min(len(g.units), g.size - _min_keep(g, round_to)))


def _global(groups: list[Group], members: list[int], scores: np.ndarray, ratio: float,
            round_to: int) -> dict[int, int]:
    """One ranking across groups (scores are normalized per layer), capped so no group empties."""
    if not members:
        return {}
    units = np.concatenate([groups[i].units for i in members])
    owner = np.concatenate([np.full(len(groups[i].units), i) for i in members])
    target = math.floor(ratio * len(units) + 1e-9)
    room = {i: _max_removable(groups[i], round_to) for i in members}
    removed = dict.fromkeys(members, 0)
    total = 0
    for k in np.lexsort((units, scores[units])):
        if total >= target:
            break
        i = int(owner[k])
        if removed[i] < room[i]:
            removed[i] += 1
            total += 1
    return removed


def _rounded(g: Group, n_remove: int, round_to: int) -> int:
    """Units to remove so the kept count is a multiple of `round_to` (nearest), within the group's limits."""
    if n_remove <= 0 or round_to == 1:
        return max(0, n_remove)
    kept = g.size - n_remove
    kept = max(round_to, int(math.floor(kept / round_to + 0.5)) * round_to)
    kept = min(max(kept, _min_keep(g, round_to)), g.size)
    return g.size - kept


def _keep_one_per_layer(graph: ChannelGraph, g: Group, keep: np.ndarray, scores: np.ndarray) -> None:
    """A layer whose channels are spread over a concatenation keeps at least its best one."""
    if len(g.layers) < 2:
        return
    for name in g.layers:
        roots = graph.root[graph.sources[name]]
        if not keep[roots].any():
            keep[roots[np.argmax(scores[roots])]] = True
