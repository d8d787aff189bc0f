"""The recipe's [structured] step: channels, then kernel shapes, then the input border, in one call."""
from __future__ import annotations

import numpy as np

from kit.recipe import StructuredStep
from kit.techniques.structured.cost import model_cost


def run_step(model, step: StructuredStep, x: np.ndarray | None = None, y: np.ndarray | None = None,
             log=print) -> tuple[object, dict]:
    """The smaller model (not yet fine-tuned) and a report of what each part removed.

    x, y: training samples for taylor/apoz channel scores and for the saliency share of the cut border
    (measured on the model as given).
    """
    from kit.techniques.structured import prune_channels
    from kit.techniques.structured.kernels import shrink_kernels
    from kit.techniques.structured.spatial import border_share, crop_input, saliency_map

    before = model_cost(model)
    report: dict = {}
    # what the border costs is a property of the trained model, so it is measured before any surgery
    share = None
    if any(step.input_border) and x is not None:
        share = border_share(saliency_map(model, x, y), step.input_border)
    if step.ratio or step.layers:
        result = prune_channels(model, ratio=step.ratio, criterion=step.criterion, per_layer=step.layers or None,
                                round_to=step.round_to, calib_data=x, calib_labels=y, skip=step.skip,
                                scope=step.scope)
        model = result.model
        report["channels"] = result.report.to_dict()
        log(f"structured: channels ({step.criterion}, {step.scope}) "
            + ", ".join(f"{'+'.join(g.layers)} {g.before}->{g.after}" for g in result.report.groups
                        if g.after != g.before))
    if step.kernels:
        model, changes = shrink_kernels(model, step.kernels)
        report["kernels"] = [c.to_dict() for c in changes]
        log("structured: kernels " + ", ".join(
            f"{c.layer} {c.before[0]}x{c.before[1]}->{c.after[0]}x{c.after[1]} "
            f"({c.removed_share:.0%} of its squared weights cut)" for c in changes))
    if any(step.input_border):
        model, crop = crop_input(model, step.input_border)
        report["input_border"] = {**crop.to_dict(), "saliency_share": share}
        log(f"structured: input {crop.input_before[0]}x{crop.input_before[1]} -> "
            f"{crop.input_after[0]}x{crop.input_after[1]}"
            + (f" ({share:.2%} of the input saliency was in the border)" if share is not None else ""))
    after = model_cost(model)
    report["macs"] = {"before": before.macs, "after": after.macs}
    report["params"] = {"before": before.params, "after": after.params}
    log(f"structured: MACs {before.macs:,} -> {after.macs:,}, parameters {before.params:,} -> {after.params:,}")
    return model, report

