"""[layer_prune]: drop whole residual / separable blocks, cheapest first, then a short recovery fine-tune."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kit.core.tables import format_table
from kit.steps import finetune
from kit.steps.base import StepContext, StepSpec, key


@dataclass
class LayerPruneStep:
    blocks: int = key(1, "residual / separable blocks to remove, cheapest first", type=int,
                      check=lambda x: 1 <= x <= 1000, allowed="1 to 1000")
    max_cost: float | None = key(None, "stop before a block whose removal costs more (loss increase)", type=float,
                                 check=lambda x: x >= 0, allowed=">= 0")
    samples: int = key(1000, "held-out training samples that measure the cost", type=int,
                       check=lambda x: 10 <= x <= 100000, allowed="10 to 100000")
    epochs: int = key(2, "recovery fine-tune after the removal (0 = none)", type=int,
                      check=lambda x: 0 <= x <= 1000, allowed="0 to 1000")


@dataclass
class LayerPruneResult:
    report: dict  # kit.techniques.layer_prune report: candidates with their costs, the blocks removed


def run(ctx: StepContext) -> LayerPruneResult:
    """Remove the cheapest blocks, measured on the fine-tune's validation samples (the last of the training
    set, never trained on by the fine-tunes), then recover with a short fine-tune."""
    from kit.techniques.finetune import fit
    from kit.techniques.layer_prune import prune_blocks

    lp, ft, data = ctx.recipe.layer_prune, finetune.settings(ctx), ctx.dataset
    n = min(lp.samples, max(10, int(len(data.x_train) * (ft.validation_split or 0.1))))
    x_val, y_val = data.x_train[-n:], data.y_train[-n:]
    ctx.log(f"layer pruning: up to {lp.blocks} block(s), cost measured on {n} held-out training samples")
    pruned, report = prune_blocks(ctx.model, x_val, y_val, count=lp.blocks, max_cost=lp.max_cost, log=ctx.log)
    ctx.techniques["layer_prune"] = report.to_dict()
    if lp.epochs and report.removed:
        fit(pruned, data.x_train, data.y_train, ft, teacher=ctx.teacher, epochs=lp.epochs)
    ctx.model = pruned
    ctx.measure("layer_pruned")
    return LayerPruneResult(ctx.techniques["layer_prune"])


def render(result: LayerPruneResult, out: Path) -> str:
    t = result.report
    rows = [[c["block"], c["params"], c["cost"], _pct(c["agreement"])] for c in t["candidates"]]
    return "\n".join(["## Layer pruning", "",
                      f"Cost: {t['criterion']}. Removed: {', '.join(r['block'] for r in t['removed']) or 'none'}.",
                      "", format_table(["block", "params", "cost", "agreement"], rows, markdown=True), ""])


def _pct(x) -> str | None:
    return None if x is None else f"{100 * x:.2f}%"


STEP = StepSpec("layer_prune", LayerPruneStep, run, render)
