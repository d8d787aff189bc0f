"""[prune]: connection pruning during the fine-tune — TF-MOT's magnitude schedule, or the kit's own soft,
learned-mask, iterative and least-squares reconstruction methods."""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kit.core.tables import format_table
from kit.steps import finetune
from kit.steps.base import (
    StepContext,
    StepSpec,
    fraction,
    key,
    pair_reader,
    read_config,
    read_patterns,
)

GRANULARITIES = ("unstructured", "block", "2:4")
PRUNE_METHODS = ("magnitude", "soft", "learned", "iterative", "reconstruct")
MASK_GRANULARITIES = ("unstructured", "filter")  # granularities of the soft and learned methods


def _back_off(v, t: dict, path: tuple, name: str, default: Any) -> list[float]:
    if name not in t:
        return []
    values = t[name]
    if (not isinstance(values, list) or not values
            or any(isinstance(x, bool) or not isinstance(x, (int, float)) or not 0 < x < 1 for x in values)
            or any(a <= b for a, b in zip(values, values[1:]))):
        v.fail((*path, name), f"is {values!r}, not a list of falling sparsities between 0 and 1",
               "e.g. [0.7, 0.5]: each is tried in turn, below final_sparsity, while nothing ships")
    return [float(x) for x in values]


def _importance() -> tuple[str, ...]:
    """The weight-importance criteria registered in kit.techniques.criteria."""
    from kit.techniques.criteria import WEIGHT_CRITERIA

    return tuple(WEIGHT_CRITERIA)

SCOPES = ("layer", "global")
THRESHOLD_KINDS = ("absolute", "relative", "score")
GATES = ("ste", "sigmoid")
#: prune keys each method reads besides final_sparsity, skip, layers, output, back_off and method itself
METHOD_KEYS = {
    "magnitude": {"schedule", "initial_sparsity", "begin_step", "end_step", "begin_epoch", "end_epoch", "frequency",
                  "granularity", "block"},
    "soft": {"schedule", "initial_sparsity", "begin_step", "end_step", "begin_epoch", "end_epoch", "frequency",
             "granularity", "scope"},
    "learned": {"granularity", "scope", "gate", "mask_epochs", "mask_learning_rate"},
    "iterative": {"scope", "importance", "cycles", "threshold", "threshold_kind"},
    "reconstruct": {"scope"},
}
_SPARSITY = {"type": float, "check": fraction, "allowed": "0 <= x < 1"}
_BLOCK = pair_reader("a block shape", "write rows x cols, e.g. \"1x4\" or \"1x16\"", most=256)


@dataclass
class LayerOverride:
    skip: bool = key(False, "leave this layer dense", type=bool)
    initial_sparsity: float | None = key(None, "this layer's initial sparsity", **_SPARSITY)
    final_sparsity: float | None = key(None, "this layer's final sparsity", **_SPARSITY)
    granularity: str | None = key(None, "this layer's granularity", choices=GRANULARITIES)
    block: tuple[int, int] | None = key(None, "this layer's block shape", read=_BLOCK, shape="\"RxC\"")


def _overrides(v, t: dict, path: tuple, name: str, default: Any) -> dict[str, LayerOverride]:
    layers = v.table(t.get(name, {}), (*path, name), None)
    out = {}
    for pattern, table in layers.items():
        v.regex((*path, name), pattern, pattern)
        out[pattern] = read_config(LayerOverride, v, table, (*path, name, pattern))
    return out


def _output_override(v, t: dict, path: tuple, name: str, default: Any) -> LayerOverride | None:
    if name not in t:
        return default
    return read_config(LayerOverride, v, t[name], (*path, name))


@dataclass
class PruneStep:
    schedule: str = key("polynomial", "how sparsity rises over the fine-tune", choices=("constant", "polynomial"))
    initial_sparsity: float = key(0.0, "sparsity at begin (constant schedule: final_sparsity)", **_SPARSITY)
    final_sparsity: float = key(0.8, "sparsity at end", **_SPARSITY)
    begin_step: int | None = key(None, "first training step of the ramp", type=int, check=lambda x: x >= 0,
                                 allowed=">= 0")
    end_step: int | None = key(None, "last training step of the ramp", type=int, check=lambda x: x >= 1,
                               allowed=">= 1")
    begin_epoch: float | None = key(None, "or the ramp's start in epochs", type=float, check=lambda x: x >= 0,
                                    allowed=">= 0")
    end_epoch: float | None = key(None, "or its end in epochs; default: the first 70% of the fine-tune",
                                  type=float, check=lambda x: x > 0, allowed="> 0")
    frequency: int | None = key(None, "steps between mask updates; default: ~20 updates over the fine-tune",
                                type=int, check=lambda x: x >= 1, allowed=">= 1 (steps between mask updates)")
    granularity: str = key("unstructured", "what is pruned together (soft, learned: unstructured | filter)",
                           choices=GRANULARITIES + ("filter",))
    block: tuple[int, int] = key((1, 4), "rows x cols of the runtime's [out, in] weight layout", read=_BLOCK,
                                 shape="\"RxC\"")
    skip: list[str] = key(doc="layer names or regular expressions left dense", read=read_patterns,
                          shape="list of regular expressions", factory=list)
    layers: dict[str, LayerOverride] = key(doc="per-layer overrides: skip, initial/final_sparsity, granularity, block",
                                           read=_overrides, shape="[prune.layers.\"name or regex\"]", factory=dict)
    output: LayerOverride | None = key(None, "the layer computing the model's outputs (a classifier's last Dense), "
                                       "whatever its name: the same keys, sparsity at most final_sparsity; a "
                                       "`layers` pattern naming it wins",
                                       read=_output_override, shape="[prune.output]")
    back_off: list[float] = key(doc="lower final sparsities tried in turn, from the original model, while no "
                                    "artifact ships (the accuracy gate refused them all); per-layer sparsities "
                                    "scale with it", read=_back_off, shape="list of falling 0 < x < final_sparsity",
                                factory=list)
    method: str = key("magnitude", "magnitude (TF-MOT) | soft | learned | iterative | reconstruct (one-shot masks, "
                                   "kept weights re-solved by least squares on the inputs, no labels; the fine-tune "
                                   "after it is kept only if it agrees better with the original)",
                      choices=PRUNE_METHODS)
    scope: str = key("layer", "soft/learned/iterative/reconstruct: rank per layer or over all layers together",
                     choices=SCOPES)
    importance: str = key("magnitude", "iterative: how weights are ranked", choices=_importance)
    cycles: int = key(3, "iterative: prune-retrain rounds (1 = one-shot)", type=int,
                      check=lambda x: 1 <= x <= 100, allowed="1 to 100")
    threshold: float | None = key(None, "iterative: prune under a threshold instead of to final_sparsity",
                                  type=float, check=lambda x: x >= 0, allowed=">= 0")
    threshold_kind: str = key("relative", "iterative: absolute | relative (x RMS of the layer) | score",
                              choices=THRESHOLD_KINDS)
    gate: str = key("ste", "learned: the mask gate", choices=GATES)
    mask_epochs: int = key(4, "learned: epochs of mask training before the fixed-mask fine-tune", type=int,
                           check=lambda x: 1 <= x <= 1000, allowed="1 to 1000")
    mask_learning_rate: float | None = key(None, "learned: default chosen from the ramp length", type=float,
                                           check=lambda x: 0 < x < 10, allowed="0 < x < 10")

    def skips(self, name: str) -> bool:
        return any(re.fullmatch(p, name) for p in self.skip)

    def backed_off(self) -> "PruneStep | None":
        """This step at its next `back_off` sparsity, every per-layer sparsity scaled alike; None after the last."""
        if not self.back_off:
            return None
        target = self.back_off[0]
        ratio = target / self.final_sparsity

        def scaled(o: LayerOverride | None) -> LayerOverride | None:
            if o is None or o.final_sparsity is None:
                return o
            final = round(o.final_sparsity * ratio, 4)
            initial = None if o.initial_sparsity is None else min(o.initial_sparsity, final)
            return replace(o, final_sparsity=final, initial_sparsity=initial)

        return replace(self, final_sparsity=target, initial_sparsity=min(self.initial_sparsity, target),
                       back_off=self.back_off[1:], layers={k: scaled(o) for k, o in self.layers.items()},
                       output=scaled(self.output))

    def override_for(self, name: str, output: bool = False) -> LayerOverride:
        """The first `layers` pattern that matches the whole layer name wins; then `output` for the layer that
        computes the model's outputs (kit.techniques.prune.output_layers)."""
        for pattern, override in self.layers.items():
            if re.fullmatch(pattern, name):
                return override
        if output and self.output is not None:
            return self.output
        return LayerOverride()


def validate(v, t: dict, s: PruneStep) -> None:
    """Rules between keys: the constant schedule, the ramp's order, what each method reads."""
    p = ("prune",)
    if s.schedule == "constant":
        if "initial_sparsity" in t:
            v.fail((*p, "initial_sparsity"), "a constant schedule has one sparsity: set final_sparsity only")
        s.initial_sparsity = s.final_sparsity
    if s.initial_sparsity > s.final_sparsity:
        v.fail((*p, "initial_sparsity"), f"is {s.initial_sparsity}, above final_sparsity {s.final_sparsity}")
    for unit in ("begin", "end"):
        if f"{unit}_step" in t and f"{unit}_epoch" in t:
            v.fail((*p, f"{unit}_epoch"), f"give {unit}_step or {unit}_epoch, not both")
    if s.begin_step is not None and s.end_step is not None and s.end_step <= s.begin_step:
        v.fail((*p, "end_step"), f"is {s.end_step}, not after begin_step {s.begin_step}")
    if s.begin_epoch is not None and s.end_epoch is not None and s.end_epoch <= s.begin_epoch:
        v.fail((*p, "end_epoch"), f"is {s.end_epoch}, not after begin_epoch {s.begin_epoch}")
    v.choice(t, p, "granularity", GRANULARITIES if s.method == "magnitude" else MASK_GRANULARITIES, s.granularity)
    if s.scope == "global" and s.granularity == "filter":
        v.fail((*p, "scope"), "\"global\" cannot rank filters of different layers together",
               "use scope = \"layer\" with granularity = \"filter\"")
    if s.threshold is not None and "final_sparsity" in t:
        v.fail((*p, "threshold"), "and final_sparsity both set", "prune to a threshold or to a sparsity, not both")
    if s.back_off and s.back_off[0] >= s.final_sparsity:
        v.fail((*p, "back_off"), f"starts at {s.back_off[0]:g}, not below final_sparsity {s.final_sparsity:g}")
    if s.back_off and s.threshold is not None:
        v.fail((*p, "back_off"), "lowers final_sparsity, which a threshold replaces", "drop one of them")
    _unused_by_method(v, t, s)
    own = {"skip", "final_sparsity"} | ({"initial_sparsity"} & METHOD_KEYS[s.method]) | (
        {"granularity", "block"} if s.method == "magnitude" else set())
    tables = {(*p, "layers", name): table for name, table in t.get("layers", {}).items()}
    if isinstance(t.get("output"), dict):
        tables[(*p, "output")] = t["output"]
    for where, table in tables.items():
        for k in ("initial_sparsity", "granularity", "block"):
            if table.get(k) is not None and k not in own:
                v.fail((*where, k), f"is not used by method {s.method!r}",
                       f"per-layer overrides of this method: {', '.join(sorted(own))}")


def _unused_by_method(v, t: dict, s: PruneStep) -> None:
    """A knob of another pruning method, set to anything but its default, is a mistake worth naming."""
    default = PruneStep(method=s.method)
    for name in sorted(set(t) - {"final_sparsity", "skip", "layers", "output", "back_off", "method"}
                       - METHOD_KEYS[s.method]):
        if getattr(s, name) != getattr(default, name):
            users = [m for m in PRUNE_METHODS if name in METHOD_KEYS[m]]
            v.fail(("prune", name), f"is not used by method {s.method!r}", f"it applies to method {' | '.join(users)}")


def derived(s: PruneStep) -> set[str]:
    return {"initial_sparsity"} if s.schedule == "constant" else set()


@dataclass
class PruneResult:
    method: str
    report: dict | None  # the soft / learned / iterative report (None for magnitude)
    scores: dict  # importance of the weights pruning started from, per kernel, for the report's histogram
    #: layers the recipe asked to prune that the method leaves dense (wholly or in part) -> why
    not_pruned: dict[str, str] = field(default_factory=dict)


def run(ctx: StepContext) -> PruneResult:
    """Prune during the fine-tune; the [finetune] settings are used up here."""
    from kit.techniques import prune as pruning
    from kit.techniques.finetune import fit, steps_per_epoch

    step, ft, data = ctx.recipe.prune, finetune.settings(ctx), ctx.dataset
    start = ctx.model
    plan = pruning.plan(start, step, steps_per_epoch(len(data.x_train), ft), ft.epochs)
    ctx.prune_plan = plan.to_dict()  # the manifest's prune_plan, not_pruned included
    for layer, why in plan.not_pruned.items():
        ctx.log(f"prune: {layer} not pruned: {why}")
    report = None
    if step.method == "magnitude":
        ctx.log(f"prune: {step.schedule} to {step.final_sparsity:.0%} ({step.granularity}), "
                f"steps {plan.begin_step}->{plan.end_step} every {plan.frequency}, {len(plan.layers)} layers")
        wrapped = pruning.apply(start, plan, step.schedule)
        ctx.history = fit(wrapped, data.x_train, data.y_train, ft, teacher=ctx.teacher,
                          extra_callbacks=pruning.callbacks(), sparsity_fn=pruning.mask_sparsity, task=ctx.task)
        ctx.model = pruning.strip(wrapped)
    else:
        ctx.model, ctx.history, report = _mask_prune(ctx, start, plan)
        ctx.techniques[step.method] = report
    ctx.finetuned = True
    return PruneResult(step.method, report, _scores(ctx, start, plan), plan.not_pruned)


def _scores(ctx: StepContext, start, plan) -> dict:
    """Importance of the weights pruning started from, by the method that ranked them (magnitude unless
    iterative pruning used another)."""
    from kit.techniques import importance, masking

    planned = {p.layer for p in plan.layers}
    kernels = {k: v for k, v in masking.prunable_kernels(start).items() if k.split("/")[0] in planned}
    step = ctx.recipe.prune
    method = step.importance if step.method == "iterative" else "magnitude"
    return importance.scores(start, kernels, method, ctx.dataset.x_train[:512], ctx.dataset.y_train[:512])


def _mask_prune(ctx: StepContext, source, plan):
    """The kit's own mask-based methods (soft, learned, iterative) on a plain copy of the model."""
    from kit.techniques import masking
    from kit.techniques.prune import private_copy

    step, ft, log, teacher = ctx.recipe.prune, finetune.settings(ctx), ctx.log, ctx.teacher
    work = private_copy(source)
    planned = {p.layer for p in plan.layers}
    kernels = {k: v for k, v in masking.prunable_kernels(work).items() if k.split("/")[0] in planned}
    ramp = masking.kernel_targets(kernels, plan)
    final = {k: v[1] for k, v in ramp.items()}
    pooled = {k for k, v in final.items() if v == step.final_sparsity} if step.scope == "global" else None
    x, y = ctx.dataset.x_train, ctx.dataset.y_train
    if step.method == "soft":
        from kit.techniques.soft_prune import soft_prune

        log(f"soft pruning ({step.granularity}, {step.scope}) to {step.final_sparsity:.0%}: masks updated every "
            f"{plan.frequency} steps from {plan.begin_step} to {plan.end_step}, then hard")
        masks, report, history = soft_prune(work, kernels, ramp, x, y, ft, plan.begin_step, plan.end_step,
                                            plan.frequency, step.granularity, step.scope, teacher=teacher,
                                            pooled=pooled)
        log(f"  {report.revived:,} masked weights came back at a later update ({report.revived_in_final:,} kept)")
    elif step.method == "learned":
        from kit.techniques.learned_masks import learn_masks

        log(f"learned masks ({step.gate}, {step.granularity}, {step.scope}) to {step.final_sparsity:.0%}: "
            f"{step.mask_epochs} mask epochs, then {ft.epochs} fine-tune epochs with the masks fixed")
        work, masks, report = learn_masks(work, final, x, y, epochs=step.mask_epochs, learning_rate=ft.learning_rate,
                                          mask_learning_rate=step.mask_learning_rate, batch_size=ft.batch_size,
                                          gate=step.gate, granularity=step.granularity, scope=step.scope,
                                          seed=ctx.recipe.seed, pooled=pooled, log=log)
        kernels = {k: v for k, v in masking.prunable_kernels(work).items() if k in masks}
        history = masking.fit_masked(work, kernels, masks, x, y, ft, teacher=teacher)
    elif step.method == "reconstruct":
        from kit.techniques.reconstruct import keep_better_finetune, reconstruct_prune

        how = "saliency within each layer" if step.scope == "layer" else "one magnitude ranking over all layers"
        log(f"reconstruct: masks to {step.final_sparsity:.0%} by {how}, each layer's kept weights re-solved by least "
            f"squares against the model pruning started from on {len(x):,} inputs")
        masks, report = reconstruct_prune(work, source, kernels, final, x, step.scope, pooled, seed=ctx.recipe.seed,
                                          log=log)
        history = keep_better_finetune(work, source, x, lambda: masking.fit_masked(work, kernels, masks, x, y, ft,
                                                                                  teacher=teacher),
                                       ft.validation_split, report, log)
    else:
        from kit.techniques.iterative import iterative_prune

        rule = (f"{step.threshold_kind} threshold {step.threshold:g}" if step.threshold is not None
                else f"{step.final_sparsity:.0%}")
        log(f"iterative pruning: {step.cycles} cycle(s) to {rule}, {step.importance} importance, {step.scope} "
            "ranking")
        masks, report, history = iterative_prune(work, kernels, final, x, y, ft, cycles=step.cycles,
                                                 importance=step.importance, scope=step.scope,
                                                 threshold=step.threshold, threshold_kind=step.threshold_kind,
                                                 teacher=teacher, pooled=pooled, log=log)
    return work, history, report.to_dict()


_TITLES = {"soft": "Soft pruning", "learned": "Learned masks", "iterative": "Iterative pruning",
           "reconstruct": "Layer-wise reconstruction"}


def render(result: PruneResult, out: Path) -> str:
    """The method's section (soft, learned, iterative) and the histogram of the scores that ranked the weights."""
    from kit.steps.explain import importance_histograms

    lines = []
    if result.not_pruned:
        lines += ["## Layers left dense", "", "The recipe prunes these layers, but the method leaves their kernels dense:",
                  "", format_table(["layer", "why"], [[k, v] for k, v in result.not_pruned.items()], markdown=True),
                  ""]
    t = result.report
    if t:
        lines += [f"## {_TITLES[result.method]}", ""]
        if result.method == "soft":
            lines += [f"{t['updates']} mask updates; {t['ever_masked']:,} weights were masked at some point, "
                      f"{t['revived']:,} of them came back at a later update and {t['revived_in_final']:,} are in "
                      f"the final mask ({t['final_sparsity']:.1%} sparse)."]
        elif result.method == "learned":
            lines += [f"{t['gate']} gate, {t['granularity']}, {t['scope']} scope: learned sparsity "
                      f"{t['learned_sparsity']:.2%}, final {t['final_sparsity']:.2%}.",
                      "", format_table(["kernel", "learned", "final"],
                                       [[k, f"{v:.1%}", f"{t['layer_sparsity'][k]:.1%}"]
                                        for k, v in t["layer_learned_sparsity"].items()], markdown=True)]
        elif result.method == "reconstruct":
            lines += [(f"Each layer's kept weights re-solved by least squares against the model pruning started "
                       f"from, on {t['samples']:,} inputs. Relative error of each layer's output with magnitude masks "
                       "alone (before) and after:"), "",
                      format_table(["layer", "sparsity", "rows", "before", "after"],
                                   [[k, f"{v['sparsity']:.1%}", v["rows"], f"{v['error_before']:.3f}",
                                     f"{v['error_after']:.3f}"] for k, v in t["layers"].items()], markdown=True)]
            lines += [f"- {k}: {v}" for k, v in t["skipped"].items()]
            if t.get("finetune"):
                lines += ["", t["finetune"]]
        else:
            rows = [[r["cycle"], f"{r['target']:.1%}", f"{r['sparsity']:.1%}", _pct(r["val_accuracy"])]
                    for r in t["records"]]
            lines += [f"{t['cycles']} cycles, {t['importance']} importance, {t['scope']} ranking ({t['rule']}), "
                      f"epochs per cycle {t['epochs_per_cycle']}.", "",
                      format_table(["cycle", "target", "sparsity", "val top-1"], rows, markdown=True)]
        lines += [""]
    if result.scores and importance_histograms(result.scores, out / "importance.png",
                                               "importance of the weights before pruning"):
        lines += ["## Weight importance before pruning", "", "![importance](importance.png)", ""]
    return "\n".join(lines)


def _pct(x) -> str | None:
    return None if x is None else f"{100 * x:.2f}%"


STEP = StepSpec("prune", PruneStep, run, render, validate=validate, derived=derived, needs_finetune=True,
                timing="prune_finetune")
