"""[lowrank]: truncated SVD of Dense / 1x1 conv kernels where the factors are smaller, and neuron merging.

After pruning it factorises the fine-tuned model and recovers with a short fine-tune that keeps the pruned
zeros; without [prune] it runs before the fine-tune, which is then its recovery."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kit.core.tables import format_table
from kit.steps import finetune
from kit.steps.base import StepContext, StepSpec, fraction_map, key, read_patterns


@dataclass
class LowRankStep:
    rank: int | None = key(None, "the same rank for every factorised layer", type=int, check=lambda x: x >= 1,
                           allowed=">= 1")
    energy: float | None = key(None, "or the rank that keeps this share of the squared singular values",
                               type=float, check=lambda x: 0 < x <= 1, allowed="0 < x <= 1")
    params_fraction: float | None = key(None, "or the rank that keeps this share of the layer's parameters",
                                        type=float, check=lambda x: 0 < x <= 1, allowed="0 < x <= 1")
    choose: str = key("auto", "auto: only where the factors are smaller than the layer now | always",
                      choices=("auto", "always"))
    skip: list[str] = key(doc="layer names or regular expressions left whole", read=read_patterns,
                          shape="list of regular expressions", factory=list)
    merge: dict[str, float] = key(doc="Dense layer -> fraction of neurons merged away",
                                  read=fraction_map("0 < x < 1 (fraction of the layer's neurons merged away)"),
                                  shape="table of layer = 0 < x < 1", factory=dict)
    epochs: int = key(2, "recovery fine-tune after factorising a pruned model (pruned layers keep their zeros)",
                      type=int, check=lambda x: 0 <= x <= 1000, allowed="0 to 1000")
    learning_rate: float | None = key(None, "of the recovery; default: the fine-tune's", type=float,
                                      check=lambda x: 0 < x < 1, allowed="0 < x < 1")


def validate(v, t: dict, s: LowRankStep) -> None:
    rules = [k for k in ("rank", "energy", "params_fraction") if k in t]
    if len(rules) > 1:
        v.fail(("lowrank", rules[1]), f"and `lowrank.{rules[0]}` both set", "choose the rank one way")
    if not rules and "merge" not in t:
        v.fail(("lowrank",), "needs rank, energy or params_fraction (or merge)",
               "e.g. energy = 0.9 keeps 90% of each kernel's squared singular values")


def first(recipe) -> str | None:
    """Without pruning, the factors come first and the fine-tune step is their recovery."""
    return "finetune" if recipe.prune is None and recipe.finetune is not None else None


@dataclass
class LowRankResult:
    report: dict | None  # kit.techniques.lowrank factorisation report (None: merging only)
    merges: list[dict] = field(default_factory=list)


def run(ctx: StepContext) -> LowRankResult:
    """Factorise where the factors are smaller, merge neurons, then (after pruning) fine-tune with pruned zeros
    kept."""
    from kit.techniques import masking
    from kit.techniques.finetune import fit
    from kit.techniques.lowrank import factorize, merge_neurons

    lr, current, log = ctx.recipe.lowrank, ctx.model, ctx.log
    recover = first(ctx.recipe) is None
    result = LowRankResult(None)
    if any(v is not None for v in (lr.rank, lr.energy, lr.params_fraction)):
        current, report = factorize(current, rank=lr.rank, energy=lr.energy, params_fraction=lr.params_fraction,
                                    skip=lr.skip, choose=lr.choose)
        result.report = ctx.techniques["lowrank"] = report.to_dict()
        done = [f"{c.layer} rank {c.rank}" for c in report.layers if c.factorized]
        log(f"low-rank ({report.rule}): {', '.join(done) or 'no layer is smaller factorised'}; "
            f"params {report.params_before:,} -> {report.params_after:,}")
    for layer, share in lr.merge.items():
        current, m = merge_neurons(current, layer, share)
        result.merges.append(m.to_dict())
        log(f"weight merging: {layer} {m.units_before} -> {m.units_after} neurons")
    if result.merges:
        ctx.techniques["merge"] = result.merges
    if recover and lr.epochs:
        ft, data = finetune.settings(ctx), ctx.dataset
        kernels = masking.prunable_kernels(current)
        masks = {k: m for k, m in masking.current_masks(kernels).items() if not m.all()}
        if masks:
            masking.fit_masked(current, {k: kernels[k] for k in masks}, masks, data.x_train, data.y_train, ft,
                               teacher=ctx.teacher, epochs=lr.epochs, lr=lr.learning_rate)
        else:
            fit(current, data.x_train, data.y_train, ft, teacher=ctx.teacher, epochs=lr.epochs, lr=lr.learning_rate)
    ctx.model = current
    if recover:
        ctx.measure("lowrank")
    return result


def render(result: LowRankResult, out: Path) -> str:
    lines = []
    t = result.report
    if t:
        rows = [[c["layer"], "x".join(map(str, c["shape"])), c["rank"], f"{c['energy']:.1%}", c["bytes_now"],
                 c["bytes_lowrank"], "yes" if c["factorized"] else "no"] for c in t["layers"]]
        lines += ["## Low-rank factorisation", "", f"Rule {t['rule']}; parameters {t['params_before']:,} -> "
                  f"{t['params_after']:,}.", "",
                  format_table(["layer", "in x out", "rank", "energy", "bytes now", "bytes factors", "factorised"],
                               rows, markdown=True), ""]
    if result.merges:
        lines += ["## Weight merging", "", *(f"{r['layer']}: {r['units_before']} -> {r['units_after']} neurons, "
                                             f"merged into {r['next_layer']}" for r in result.merges), ""]
    return "\n".join(lines)


STEP = StepSpec("lowrank", LowRankStep, run, render, validate=validate, runs_before=first)
