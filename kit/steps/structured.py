"""[structured]: graph surgery before fine-tuning — fewer channels, smaller kernels, a cropped input border,
strided convolutions instead of their pooling, fewer input features of the first Dense — giving a smaller dense
model that the fine-tune then recovers."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kit.core.tables import format_table
from kit.steps.base import (
    StepContext,
    StepSpec,
    fraction,
    fraction_map,
    key,
    read_patterns,
)


def _criteria() -> tuple[str, ...]:
    from kit.techniques.structured import CRITERIA

    return tuple(CRITERIA)


def _scopes() -> tuple[str, ...]:
    from kit.techniques.structured import SCOPES

    return tuple(SCOPES)


def _pairs(valid, what: str, hint: str):
    """A reader of a table of layer = n, "AxB" or [a, b] of positive integers for which `valid(a, b)` holds."""

    def read(v, t: dict, path: tuple, name: str, default: Any) -> dict[str, tuple[int, int]]:
        table = v.table(t.get(name, {}), (*path, name), None)
        out = {}
        for layer, size in table.items():
            sizes = [size] * 2 if isinstance(size, int) and not isinstance(size, bool) else size
            if isinstance(size, str) and re.fullmatch(r"\s*\d+\s*x\s*\d+\s*", size):
                sizes = [int(k) for k in size.split("x")]
            if (not isinstance(sizes, list) or len(sizes) != 2
                    or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in sizes)
                    or not valid(*sizes)):
                v.fail((*path, name, layer), f"is {size!r}, not {what}", hint)
            out[layer] = (sizes[0], sizes[1])
        return out

    return read


def _border(v, t: dict, path: tuple, name: str, default: Any) -> tuple[int, int, int, int]:
    if name not in t:
        return default
    border = t[name]
    values = [border] * 4 if isinstance(border, int) and not isinstance(border, bool) else border
    if (not isinstance(values, list) or len(values) != 4
            or any(isinstance(x, bool) or not isinstance(x, int) or x < 0 for x in values)):
        v.fail((*path, name), f"is {border!r}, not a border in pixels",
               "one integer for every side, or [top, bottom, left, right]")
    return tuple(values)


@dataclass
class StructuredStep:
    """Graph surgery before fine-tuning: fewer channels, smaller kernels, strided convolutions instead of
    pooling, a cropped input border, fewer input features."""

    ratio: float = key(0.0, "share of channels removed (0: only the per-layer ratios in `layers`)", type=float,
                       check=fraction, allowed="0 <= x < 1")
    criterion: str = key("l1", "channel importance", choices=_criteria)
    scope: str = key("layer", "layer: every layer loses `ratio`; global: ranked over all layers", choices=_scopes)
    round_to: int = key(1, "keep channel counts a multiple of this", type=int, check=lambda x: 1 <= x <= 1024,
                        allowed="1 to 1024")
    skip: list[str] = key(doc="layers whose output channels stay", read=read_patterns,
                          shape="list of regular expressions", factory=list)
    layers: dict[str, float] = key(doc="layer -> its own channel ratio",
                                   read=fraction_map("0 < x < 1 (share of the layer's channels removed)"),
                                   shape="table of layer = 0 < x < 1", factory=dict)
    kernels: dict[str, tuple[int, int]] = key(
        doc="conv layer -> centred smaller kernel",
        read=_pairs(lambda h, w: True, "a kernel size", "write an odd size like 3, \"3x1\" or [height, width]"),
        shape="table of layer = 3, \"3x1\" or [h, w]", factory=dict)
    strides: dict[str, tuple[int, int]] = key(
        doc="conv layer -> the stride of the pooling after it, which is dropped (perforation)",
        read=_pairs(lambda h, w: max(h, w) >= 2, "a stride", "write the pooling's stride, like 2, \"2x1\" or [rows, columns]"),
        shape="table of layer = 2, \"2x1\" or [rows, columns]", factory=dict)
    input_border: tuple[int, int, int, int] = key((0, 0, 0, 0), "pixels cut: all sides, or top, bottom, left, right",
                                                  read=_border, shape="int or [top, bottom, left, right]")
    inputs: float = key(0.0, "share of the first Dense's input features removed (those that carry least on "
                             "the training samples; a GATHER keeps the rest): dead pixels of a flat image",
                        type=float, check=fraction, allowed="0 <= x < 1")
    calibration_samples: int = key(512, "training samples for taylor/apoz scores and the border saliency",
                                   type=int, check=lambda x: 1 <= x <= 100000, allowed="1 to 100000")


def validate(v, t: dict, s: StructuredStep) -> None:
    if not (s.ratio or s.layers or s.kernels or s.strides or any(s.input_border) or s.inputs):
        v.fail(("structured",), "removes nothing",
               "set ratio, [structured.layers], [structured.kernels], [structured.strides], input_border or inputs")


@dataclass
class StructuredResult:
    report: dict  # what each part removed: channels, kernels, input_border; MACs and params before and after


def surgery(model, step: StructuredStep, x: np.ndarray | None = None, y: np.ndarray | None = None,
            log=print) -> tuple[object, dict]:
    """The smaller model (not yet fine-tuned) and a report of what each part removed: channels, then kernel
    shapes, then the input border, then pooled positions (strides), then input features.

    x, y: training samples for taylor/apoz channel scores and for the saliency share of the cut border
    (measured on the model as given).
    """
    from kit.techniques.structured import prune_channels
    from kit.techniques.structured.cost import model_cost
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
    if step.strides:
        from kit.techniques.structured.perforation import perforate

        model, holes = perforate(model, step.strides)
        report["strides"] = [h.to_dict() for h in holes]
        log("structured: strides " + ", ".join(
            f"{h.layer} {h.stride[0]}x{h.stride[1]} instead of {h.pooling} ({h.positions_before} -> "
            f"{h.positions_after} positions)" for h in holes))
    if step.inputs:
        from kit.techniques.structured.features import select_inputs

        model, features = select_inputs(model, step.inputs, x)
        report["inputs"] = features.to_dict()
        log(f"structured: inputs of {features.layer} {features.before} -> {features.after} "
            f"({features.removed_share:.2%} of the feature scores, {features.unused} features unused in "
            f"{features.scored_on} samples)")
    after = model_cost(model)
    report["macs"] = {"before": before.macs, "after": after.macs}
    report["params"] = {"before": before.params, "after": after.params}
    log(f"structured: MACs {before.macs:,} -> {after.macs:,}, parameters {before.params:,} -> {after.params:,}")
    return model, report


def run(ctx: StepContext) -> StructuredResult:
    n = ctx.recipe.structured.calibration_samples
    ctx.model, report = surgery(ctx.model, ctx.recipe.structured, ctx.dataset.x_train[:n], ctx.dataset.y_train[:n],
                                log=ctx.log)
    ctx.techniques["structured"] = report
    ctx.measure("structured")
    return StructuredResult(report)


def render(result: StructuredResult, out: Path) -> str:
    t = result.report
    lines = ["## Structured pruning", "",
             (f"MACs {t['macs']['before']:,} -> {t['macs']['after']:,}; parameters {t['params']['before']:,} -> "
              f"{t['params']['after']:,}."), ""]
    ch = t.get("channels")
    if ch:
        rows = [[", ".join(g["layers"]), g["channels"], g["kept"]] for g in ch["groups"] if g["kept"] != g["channels"]]
        lines += [f"Channels ({ch['criterion']}, {ch['scope']} scope):", "",
                  format_table(["layers (coupled)", "channels", "kept"], rows, markdown=True), ""]
    if t.get("kernels"):
        rows = [[k["layer"], "x".join(map(str, k["before"])), "x".join(map(str, k["after"])),
                 f"{k['removed_share']:.1%}"] for k in t["kernels"]]
        lines += ["Kernels (outer rings cut):", "",
                  format_table(["layer", "before", "after", "squared weights cut"], rows, markdown=True), ""]
    if t.get("strides"):
        rows = [[h["layer"], "x".join(map(str, h["stride"])), h["pooling"], h["positions_before"],
                 h["positions_after"]] for h in t["strides"]]
        lines += ["Perforated convolutions (strided, their pooling dropped):", "",
                  format_table(["layer", "stride", "pooling removed", "positions before", "after"], rows,
                               markdown=True), ""]
    crop = t.get("input_border")
    if crop:
        share = crop.get("saliency_share")
        lines += [f"Input border {crop['border']} (top, bottom, left, right): "
                  f"{'x'.join(map(str, crop['input_before']))} -> {'x'.join(map(str, crop['input_after']))}"
                  + (f", {share:.2%} of the input saliency" if share is not None else "") + "."]
        lines += [f"- {n}" for n in crop["notes"]]
    features = t.get("inputs")
    if features:
        lines += [(f"Input features of {features['layer']}: {features['before']} -> {features['after']} "
                   f"({features['removed_share']:.2%} of the feature scores cut; {features['unused']} features were "
                   f"zero in all {features['scored_on']} scoring samples)."), ""]
    return "\n".join([*lines, ""])


STEP = StepSpec("structured", StructuredStep, run, render, validate=validate, needs_finetune=True)
