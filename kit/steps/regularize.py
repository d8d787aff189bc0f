"""[regularize]: train with an L1 / L2 / elastic-net / group-lasso penalty before pruning, so that the weights
pruning removes are already near zero."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kit.steps import finetune
from kit.steps.base import StepContext, StepSpec, key, read_patterns

REGULARIZERS = ("l1", "l2", "elasticnet", "group_lasso")
#: strengths each kind reads
NEEDS = {"l1": ("l1",), "l2": ("l2",), "elasticnet": ("l1", "l2"), "group_lasso": ("group",)}


def _strength(doc: str):
    return key(0.0, doc, type=float, check=lambda x: 0 < x < 1, allowed="0 < x < 1")


@dataclass
class RegularizeStep:
    kind: str = key("l1", "the penalty", choices=REGULARIZERS)
    l1: float = _strength("L1 strength (kinds l1, elasticnet)")
    l2: float = _strength("L2 strength (kinds l2, elasticnet)")
    group: float = _strength("group-lasso strength over each unit's weights (kind group_lasso)")
    epochs: int = key(4, "epochs of penalised training", type=int, check=lambda x: 1 <= x <= 10000,
                      allowed="1 to 10000")
    learning_rate: float | None = key(None, "default: the fine-tune learning rate", type=float,
                                      check=lambda x: 0 < x < 1, allowed="0 < x < 1")
    threshold: float = key(1e-3, "|w| under this counts as near zero in the report", type=float,
                           check=lambda x: x > 0, allowed="> 0")
    skip: list[str] = key(doc="layer names or regular expressions left unpenalised", read=read_patterns,
                          shape="list of regular expressions", factory=list)


def validate(v, t: dict, r: RegularizeStep) -> None:
    p = ("regularize",)
    needs = NEEDS[r.kind]
    for name in ("l1", "l2", "group"):
        if name in t and name not in needs:
            v.fail((*p, name), f"is not used by kind {r.kind!r}", f"kind {r.kind!r} reads {', '.join(needs)}")
    for name in needs:
        if name not in t:
            v.fail((*p, "kind"), f"is {r.kind!r} but `regularize.{name}` is missing", f"add {name} = 1e-5 (for example)")


@dataclass
class RegularizeResult:
    report: dict  # kit.techniques.regularize report: strengths, near-zero shares, weight histogram


def run(ctx: StepContext) -> RegularizeResult:
    from kit.techniques.regularize import regularize

    rg, data = ctx.recipe.regularize, ctx.dataset
    ctx.log(f"regularize: {rg.kind} for {rg.epochs} epochs")
    prune_skip = ctx.recipe.prune.skip if ctx.recipe.prune else []
    ctx.model, report = regularize(ctx.model, rg.kind, data.x_train, data.y_train, finetune.settings(ctx),
                                   l1=rg.l1, l2=rg.l2, group=rg.group, epochs=rg.epochs,
                                   learning_rate=rg.learning_rate, threshold=rg.threshold,
                                   skip=[*rg.skip, *prune_skip], teacher=ctx.teacher)
    ctx.techniques["regularize"] = report.to_dict()
    ctx.log(f"  |w| < {rg.threshold:g}: {report.near_zero_before:.1%} -> {report.near_zero_after:.1%} "
            "of kernel weights")
    ctx.measure("regularized")
    return RegularizeResult(ctx.techniques["regularize"])


def render(result: RegularizeResult, out: Path) -> str:
    from kit.steps.explain import weight_histograms

    reg = result.report
    lines = ["## Regularisation", "",
             f"{reg['kind']} {reg['strengths']} for {reg['epochs']} epochs: weights with |w| < "
             f"{reg['threshold']:g} went from {reg['near_zero_before']:.1%} to {reg['near_zero_after']:.1%} "
             "before any mask.", ""]
    if weight_histograms(reg["histogram"], out / "weights_regularisation.png", reg["threshold"]):
        lines += ["![weights](weights_regularisation.png)", ""]
    return "\n".join(lines)


STEP = StepSpec("regularize", RegularizeStep, run, render, validate=validate)
