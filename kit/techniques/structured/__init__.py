"""Structured pruning: remove whole filters, channels and neurons, and rebuild a smaller dense model.

Three granularities, each an exact rewrite when what it removes is zero:
channels (`prune_channels`, here), kernel rings (`kernels.shrink_kernels`) and the input border
(`spatial.crop_input`). The recipe's [structured] step runs all three (`kit.steps.structured.surgery`).

    from kit.techniques.structured import prune_channels
    result = prune_channels(model, ratio=0.5, criterion="l1", round_to=8)
    result.model          # an ordinary, smaller tf_keras model
    print(result.report.table())

Coupled channels (both sides of a residual `Add`, a depthwise conv and its
producer, the rows of a Dense after `Flatten`) are found by a dependency graph
and removed together. The model's output units are never removed. Fine-tune
the result afterwards (kit.techniques.finetune, optionally distilling from the original).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from kit.techniques.structured.cost import ModelCost, cost_table, model_cost
from kit.techniques.structured.graph import ChannelGraph, build_graph
from kit.techniques.structured.criteria import CRITERIA, unit_scores
from kit.techniques.structured.selection import SCOPES, GroupPlan, check_arguments, select
from kit.techniques.structured.surgery import rebuild


@dataclass
class StructuredReport:
    criterion: str
    scope: str
    ratio: float
    round_to: int
    groups: list[GroupPlan]
    cost_before: ModelCost
    cost_after: ModelCost
    notes: list[str] = field(default_factory=list)

    def table(self, markdown: bool = False) -> str:
        """Channels per coupled group, then MACs and parameters per changed layer."""
        from kit.core.tables import format_table

        rows = [[", ".join(g.layers), g.before, g.after, g.ranking, g.ratio] for g in self.groups]
        text = (format_table(["layers (coupled)", "channels", "kept", "ranking", "ratio"], rows, markdown)
                + "\n\n" + cost_table(self.cost_before, self.cost_after, markdown))
        return text + "".join(f"\nnote: {n}" for n in self.notes)

    def to_dict(self) -> dict:
        return {
            "criterion": self.criterion, "scope": self.scope, "ratio": self.ratio, "round_to": self.round_to,
            "groups": [{"layers": list(g.layers), "channels": g.before, "kept": g.after, "ranking": g.ranking,
                        "ratio": g.ratio} for g in self.groups],
            "macs": {"before": self.cost_before.macs, "after": self.cost_after.macs},
            "params": {"before": self.cost_before.params, "after": self.cost_after.params},
            "notes": list(self.notes),
        }


@dataclass
class StructuredResult:
    model: object
    kept: dict[str, list[int]]  # surviving output channels of every Conv/Dense/SeparableConv layer
    kept_inputs: dict[str, list[int]]  # surviving input channels of every layer with weights whose input shrank
    report: StructuredReport


def prune_channels(model, ratio: float = 0.5, criterion: str = "l1", per_layer: dict[str, float] | None = None,
                   round_to: int = 1, calib_data=None, calib_labels=None, skip: Iterable[str] = (),
                   scope: str = "global") -> StructuredResult:
    """Remove the least important `ratio` of channels and return a smaller model with the survivors' weights.

    criterion: l1 | l2 (filter norms), bn_scale (|gamma| of the following batch norm), taylor (|w * dL/dw| on
    calib_data, labels optional), apoz (zeros after ReLU on calib_data). scope "global" ranks all layers together
    (scores normalized per layer); "layer" removes `ratio` of every layer. per_layer maps a layer name to its own
    ratio, ranked within its group. round_to keeps channel counts a multiple of it where pruning happens. skip names
    layers whose output channels stay. The original model is not modified.
    """
    check_arguments(ratio, scope, round_to)
    graph = build_graph(model, skip)
    scores, score_notes = unit_scores(graph, criterion, calib_data, calib_labels)
    keep, plans, select_notes = select(graph, scores, ratio, per_layer, scope, round_to)
    new, kept, kept_inputs = rebuild(graph, keep)
    report = StructuredReport(criterion, scope, float(ratio), int(round_to), plans, model_cost(model),
                              model_cost(new), graph.notes + score_notes + select_notes)
    return StructuredResult(new, kept, kept_inputs, report)


__all__ = ["prune_channels", "StructuredResult", "StructuredReport", "build_graph", "ChannelGraph", "model_cost",
           "ModelCost", "CRITERIA", "SCOPES"]
