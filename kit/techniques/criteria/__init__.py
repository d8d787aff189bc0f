"""Importance criteria: one module per criterion, one registry line each.

A criterion is a class with one call (contract in `base`); the tables below are the only place that lists
them. Weight criteria score single weights (unstructured, iterative and threshold pruning: prune.importance),
channel criteria score output channels (structured pruning: structured.criterion). A name may exist at both
granularities with a different class ("taylor"). To add one: a module with a `WeightCriterion` or
`ChannelCriterion` subclass, and its line here.
"""
from __future__ import annotations

from kit.core.errors import KitError
from kit.techniques.criteria.apoz import APoZ
from kit.techniques.criteria.base import ChannelCriterion, Contribution, Criterion, WeightCriterion
from kit.techniques.criteria.bn_scale import BatchNormScale
from kit.techniques.criteria.fisher import Fisher
from kit.techniques.criteria.gradient import Gradient
from kit.techniques.criteria.magnitude import Magnitude
from kit.techniques.criteria.norm import L1Norm, L2Norm
from kit.techniques.criteria.taylor import ChannelTaylor, WeightTaylor

WEIGHT_CRITERIA: dict[str, type[WeightCriterion]] = {
    "magnitude": Magnitude,
    "gradient": Gradient,
    "taylor": WeightTaylor,
    "fisher": Fisher,
}

CHANNEL_CRITERIA: dict[str, type[ChannelCriterion]] = {
    "l1": L1Norm,
    "l2": L2Norm,
    "bn_scale": BatchNormScale,
    "taylor": ChannelTaylor,
    "apoz": APoZ,
}

#: granularity -> its registry
CRITERIA: dict[str, dict[str, type[Criterion]]] = {"weight": WEIGHT_CRITERIA, "channel": CHANNEL_CRITERIA}
_NOUN = {"weight": "method", "channel": "criterion"}


def criterion_class(granularity: str, name: str) -> type[Criterion]:
    """The registered class of `name` at `granularity` ("weight" or "channel"), or a KitError listing the names."""
    table = CRITERIA[granularity]
    if name not in table:
        raise KitError(f"unknown importance {_NOUN[granularity]} {name!r}", f"use one of {', '.join(table)}")
    return table[name]


__all__ = ["CHANNEL_CRITERIA", "CRITERIA", "WEIGHT_CRITERIA", "APoZ", "BatchNormScale", "ChannelCriterion",
           "ChannelTaylor", "Contribution", "Criterion", "Fisher", "Gradient", "L1Norm", "L2Norm", "Magnitude",
           "WeightCriterion", "WeightTaylor", "criterion_class"]
