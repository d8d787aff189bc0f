"""Automatic per-layer sparsity under an accuracy budget (`kit compress --budget accuracy-drop=0.5`).

Algorithm (Lagrangian greedy on the sensitivity curves, then a verified bisection):

1. Hold out the last part of the training data as a validation split; the test
   split is never used for choosing.
2. Sensitivity: prune each layer alone, one-shot, at a grid of ratios, with the
   recipe's granularity (or, for `--objective latency`, the block shape the
   target's sparse kernels need) and record the mean KL divergence of the
   outputs from the original model's (kit.search.sensitivity). KL keeps growing where
   top-1 has collapsed, so it still orders layers at 95-99%.
3. Per layer, take the lower convex hull of (saving, cost) points, where the
   saving is weights removed (objective size) or microseconds gained on the
   target (objective latency), and the cost is the KL. Merging all layers' hull
   segments by increasing cost per unit saved gives one path of allocations,
   from dense to every layer at its highest ratio; each step raises one layer's
   sparsity. This is the greedy "accuracy cost per byte saved" rule, made exact
   for additive costs: every point on the path is a Lagrangian optimum (least
   summed cost for some price per unit saved).
4. Bisection along the path: each probe runs the full compression pipeline
   (pruning, fine-tuning with distillation from the original model, which the
   search adds when the recipe has none, conversion, per-runtime checks) with
   the allocation as per-layer recipe overrides and measures every shipped
   artifact on the validation split. A probe passes when, for every shipped
   artifact, the top-1 drop there plus `sigmas` standard errors of that drop
   (from the paired per-sample differences with the original) is within the
   budget. The default is 0, the drop alone: the guard against a setting that
   was merely lucky on a few hundred validation samples is step 6, not a
   margin. On LeNet-300-100 a one-standard-error margin (about 0.5 points on
   1,000 samples, i.e. the whole budget) stopped the search at 25-32x on two of
   three seeds whose chosen models then beat the original by 0.4-0.5 points on
   the test images. A failing probe moves the search back along the path,
   which undoes the last steps first: the increments with the highest cost per
   saving, i.e. the sparsity of the most sensitive layers.
5. Continuation: once bisection has pinned the first failing step down, that
   step's layer stays where it is and the remaining probes try the next path
   increments of the other layers, one at a time (each failure freezes its
   layer too), so one sensitive layer does not stop the others.
6. The most aggressive passing allocation is run once more on the real data
   (a second, independent fine-tune). It must pass on the validation split
   again, and every run's accuracy gate refuses any artifact whose drop on the
   test split is over the budget, so a lucky setting ships nothing; then the
   next passing allocation is tried. The test split only ever vetoes; it never
   ranks settings. When no pruned allocation passes, the result is the
   unpruned float32 model (drop 0).

The chosen per-layer settings are in the recipe the manifest records (as
per-layer overrides) and in `budget.json` next to it.
"""
from __future__ import annotations

import copy
import re
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kit.core.artifact import ArtifactRecord, first_correct_runtime
from kit.core.errors import KitError, RecipeError
from kit.core.jsonio import dumps as strict_dumps
from kit.core.vocab import DELEGATE_OF_RUNTIME, MODE_PRECISION
from kit.data import Dataset, load_data
from kit.recipe import (
    Distill,
    FinetuneStep,
    LayerOverride,
    Recipe,
    load_recipe,
    parse_recipe,
    write_recipe,
)
from kit.search.sensitivity import (
    SensitivityResult,
    ValidationSplit,
    analyze,
    is_one_shot,
    split_validation,
)
from kit.steps.registry import STEPS

OBJECTIVES = ("size", "latency")
#: sparsity levels tried per layer
BUDGET_RATIOS = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99)


@dataclass
class Budget:
    accuracy_drop: float  # top-1 percentage points, on the validation split, for every shipped artifact

    def __str__(self) -> str:
        return f"accuracy-drop={self.accuracy_drop:g}"


def parse_budget(text: str) -> Budget:
    """`accuracy-drop=0.5`: at most 0.5 top-1 points below the original model."""
    m = re.fullmatch(r"\s*accuracy-drop\s*=\s*([0-9]*\.?[0-9]+)\s*", text or "")
    if not m:
        raise KitError(f"cannot read the budget {text!r}",
                       "write accuracy-drop=P, P in top-1 percentage points (e.g. --budget accuracy-drop=0.5)")
    value = float(m.group(1))
    if value >= 100:
        raise KitError(f"an accuracy drop of {value} points allows any model", "give a value below 100")
    return Budget(value)


@dataclass
class Probe:
    step: int | None  # position on the allocation path; None for allocations off it (continuation, final)
    sparsity: dict[str, float]
    stage: str  # "search" (evaluated on validation) | "final" (real data, re-verified on validation)
    passed: bool
    drops: dict[str, float]  # validation top-1 drop per shipped artifact, points
    smallest_bytes: int | None
    run_dir: str
    seconds: float
    reason: str = ""
    bounds: dict[str, float | None] = field(default_factory=dict)  # drop + sigmas standard errors, per artifact


@dataclass
class ArtifactOutcome(ArtifactRecord):
    """A shipped artifact of the final run, judged on the validation split and reported on the test split."""

    runtime: str | None
    val_accuracy: float | None
    val_drop: float | None
    test_accuracy: float | None
    test_drop: float | None
    latency_us: float | None = None
    dense_latency_us: float | None = None  # the dense encoding of the same format, same run
    val_bound: float | None = None  # val_drop + sigmas standard errors: what the search kept within the budget


@dataclass
class BudgetResult:
    budget: Budget
    objective: str
    out_dir: Path
    validation: str
    chosen: dict[str, float]
    layer_params: dict[str, int]
    recipe: Recipe
    run: Any  # kit.pipeline.compress.RunResult of the final run
    baseline_bytes: int
    baseline_val: float
    baseline_test: float | None
    baseline_latency_us: float | None
    artifacts: list[ArtifactOutcome]
    probes: list[Probe]
    path: list[dict[str, float]]
    sensitivity: SensitivityResult
    latency_plan: Any = None  # kit.search.latency_aware.LatencyPlan for --objective latency
    target: str | None = None
    notes: list[str] = field(default_factory=list)
    budget_path: Path | None = None
    sigmas: float = 0.0

    @property
    def within_budget(self) -> bool:
        return bool(self.artifacts) and all(
            a.val_bound is not None and a.val_bound <= self.budget.accuracy_drop + 1e-9 for a in self.artifacts)

    def layer_table(self, markdown: bool = False) -> str:
        from kit.core.tables import format_table

        rows = []
        for name, s in self.chosen.items():
            o = self.recipe.prune.override_for(name) if self.recipe.prune else LayerOverride()
            how = "-" if s <= 0 else (o.granularity or self.recipe.prune.granularity)
            if how == "block":
                b = o.block or self.recipe.prune.block
                how = f"block {b[0]}x{b[1]}"
            rows.append([name, self.layer_params.get(name), f"{100 * s:.0f}%", how])
        return format_table(["layer", "weights", "sparsity", "pruned as"], rows, markdown)

    def table(self, markdown: bool = False) -> str:
        from kit.core.tables import format_table

        def pct(x):
            return None if x is None else f"{100 * x:.2f}"

        def pts(x):
            return None if x is None else f"{x:+.2f}"

        timed = self.baseline_latency_us is not None
        rows = [["dense float32 (original)", self.baseline_bytes, "1.0x", pct(self.baseline_val),
                 pct(self.baseline_test), None, None, None] + ([self.baseline_latency_us, None] if timed else [])]
        for a in self.artifacts:
            rows.append([a.name, a.bytes, f"{self.baseline_bytes / a.bytes:.1f}x", pct(a.val_accuracy),
                         pct(a.test_accuracy), pts(a.val_drop), pts(a.val_bound), pts(a.test_drop)]
                        + ([a.latency_us, a.dense_latency_us] if timed else []))
        headers = ["artifact", "bytes", "vs float32", "val top-1", "test top-1", "val drop", "val bound", "test drop"]
        return format_table(headers + (["median us", "same format dense us"] if timed else []), rows, markdown)

    def to_dict(self) -> dict[str, Any]:
        return {
            "budget": asdict(self.budget),
            "sigmas": self.sigmas,
            "objective": self.objective,
            "target": self.target,
            "validation": self.validation,
            "algorithm": "Lagrangian greedy over per-layer sensitivity (KL cost per unit saved), verified bisection "
                         "along the allocation path with fine-tuning; see kit/search/budget.py",
            "within_budget": self.within_budget,
            "chosen": {n: {"sparsity": s, "weights": self.layer_params.get(n)} for n, s in self.chosen.items()},
            "baseline": {"bytes": self.baseline_bytes, "val_accuracy": self.baseline_val,
                         "test_accuracy": self.baseline_test, "latency_us": self.baseline_latency_us},
            "artifacts": [a.to_dict() for a in self.artifacts],
            "recipe_toml": write_recipe(self.recipe),
            "probes": [asdict(p) for p in self.probes],
            "path": self.path,
            "sensitivity": "sensitivity/sensitivity.json",
            "latency_plan": self.latency_plan.to_dict() if self.latency_plan is not None else None,
            "notes": self.notes,
        }


def search(model: Any, recipe: Recipe | str, data: Dataset | str, out: str | Path, budget: Budget | str,
           objective: str = "size", target: str | None = None, val_fraction: float = 0.2,
           ratios=BUDGET_RATIOS, max_probes: int = 8, sigmas: float = 0.0, model_name: str | None = None,
           teacher_epochs: int = 20, log=print) -> BudgetResult:
    """Choose per-layer sparsity for `model` so every shipped artifact stays within `budget` on validation data.

    sigmas: a probe passes when each shipped artifact's validation drop plus this many standard errors of it
    (paired per-sample differences against the original) is within the budget; 0 judges the drop alone.
    """
    from kit.search import latency_aware

    t0 = time.perf_counter()
    budget = budget if isinstance(budget, Budget) else parse_budget(budget)
    if objective not in OBJECTIVES:
        raise KitError(f"unknown objective {objective!r}", f"use one of {', '.join(OBJECTIVES)}")
    recipe = copy.deepcopy(recipe) if isinstance(recipe, Recipe) else load_recipe(recipe)
    _check_recipe(recipe)
    recipe.convert.max_accuracy_drop = budget.accuracy_drop  # every run's gate against the original is the budget
    notes: list[str] = _without_back_off(recipe)
    if recipe.finetune is None or recipe.finetune.distill is None:
        recipe.finetune = recipe.finetune or FinetuneStep()
        recipe.finetune.distill = Distill()
        notes.append("the recipe fine-tunes without distillation; the search adds it (teacher: the original model, "
                     f"temperature {recipe.finetune.distill.temperature:g}, alpha {recipe.finetune.distill.alpha:g})")
    dataset = data if isinstance(data, Dataset) else load_data(data, seed=recipe.seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model, model_name, dataset = _resolve_model(model, model_name, dataset, val_fraction, recipe, teacher_epochs, log)
    split = split_validation(dataset, val_fraction)
    log(f"validation: {split.description}")
    if sigmas < 0:
        raise KitError(f"sigmas must be >= 0, got {sigmas}")
    notes.append(_resolution_note(len(split.y), budget, sigmas))

    runtime, fmt = recipe.convert.targets[0], _primary_format(recipe)
    step = copy.deepcopy(recipe.prune)
    shaping, latency_plan = {}, None
    if objective == "latency":
        target = target or "local"
        from targets.registry import get_target

        with get_target(target) as t:
            arch = latency_aware.target_arch(t)
        latency_plan = latency_aware.plan(model, runtime, fmt, arch)
        if not latency_plan.any_sparse:
            raise KitError(latency_plan.summary(),
                           "use --objective size, or structured pruning (kit.techniques.structured), which shrinks every layer")
        shaping = latency_plan.overrides()
        step.skip = step.skip + [re.escape(s.layer) for s in latency_plan.layers if not s.sparse_kernel]
        step.layers = {**{re.escape(n): o for n, o in shaping.items()}, **step.layers}
        notes.append(latency_plan.summary())
        for s in latency_plan.layers:
            how = (f"block {s.block[0]}x{s.block[1]}" if s.granularity == "block" else s.granularity) \
                if s.sparse_kernel else "not pruned"
            log(f"  {s.layer}: {how} ({s.reason})")

    log("sensitivity: one layer at a time, one-shot, on the validation split")
    sens = analyze(model, split.x, split.y, ratios=ratios, prune_step=step, calib=dataset.x_calib,
                   target=target if objective == "latency" else None, runtime=runtime, fmt=fmt,
                   model_name=model_name, validation=split.description, log=log)
    sens.write(out / "sensitivity")
    path = allocation_path(sens, objective)
    if len(path) == 1:
        notes.append("no layer gains anything from pruning on this objective; nothing was pruned")
    log(f"allocation path: {len(path) - 1} steps from dense to {_fmt_alloc(path[-1])}")

    ctx = _Search(model, model_name, recipe, shaping, split, out, budget, sigmas, path, log, objective)
    passing = _bisect(ctx, path, max_probes)
    _continue(ctx, path, passing, max_probes, notes)
    chosen = _final(ctx, path, passing, notes)
    run, chosen_recipe = ctx.final_run, ctx.final_recipe
    result = BudgetResult(
        budget, objective, out, split.description, chosen, {r.layer: r.params for r in sens.rows}, chosen_recipe,
        run, run.baseline.bytes, ctx.baseline_val, run.baseline.accuracy, None, ctx.final_outcomes, ctx.probes, path,
        sens, latency_plan, target, notes, sigmas=sigmas)
    if target is not None:
        _measure_latency(result, target, runtime, log)
    if not result.within_budget:  # the loop above only ends on a verified run: this is a bug, never ship it
        raise RuntimeError("internal error: the budget search ended on a run over budget")
    result.budget_path = _write(result)
    log(f"budget search done in {time.perf_counter() - t0:.0f} s ({len(ctx.probes)} pipeline runs)")
    return result


def _bisect(ctx: "_Search", path: list[dict[str, float]], max_probes: int) -> list[dict[str, float]]:
    """Passing allocations found by bisection along the path, least aggressive first."""
    lo, hi = 0, len(path)
    passing = []
    while hi - lo > 1 and ctx.search_probes < max_probes:
        mid = (lo + hi) // 2
        if ctx.probe(path[mid], "search", mid).passed:
            lo = mid
            passing.append(path[mid])
        else:
            hi = mid
    ctx.boundary = (lo, hi)
    return passing


def _continue(ctx: "_Search", path: list[dict[str, float]], passing: list[dict[str, float]], max_probes: int,
              notes: list[str]) -> None:
    """Past the boundary, keep the layer whose increment failed where it is and take the other layers' increments.

    Only when bisection pinned the failing increment down to one step (one layer); each further failure freezes
    that layer too. Every new allocation is the last passing one plus one layer's next ratio on the path.
    """
    lo, hi = ctx.boundary
    if hi != lo + 1 or hi >= len(path):
        return
    current = dict(path[lo])
    frozen = {_raised(path[lo], path[hi])}
    for step in range(hi + 1, len(path)):
        if ctx.search_probes >= max_probes:
            break
        layer = _raised(path[step - 1], path[step])
        if layer in frozen or path[step][layer] <= current[layer]:
            continue
        candidate = {**current, layer: path[step][layer]}
        if ctx.probe(candidate, "search").passed:
            current = candidate
            passing.append(candidate)
        else:
            frozen.add(layer)
    if frozen:
        notes.append("kept where the next increment broke the budget: " + ", ".join(
            f"{layer} at {100 * (passing[-1] if passing else path[0])[layer]:.0f}%" for layer in sorted(frozen)))


def _final(ctx: "_Search", path: list[dict[str, float]], passing: list[dict[str, float]],
           notes: list[str]) -> dict[str, float]:
    """The most aggressive passing allocation whose final run passes too; the unpruned model when none does.

    The final run is a second, independent fine-tune on the real data, judged on validation again and gated on
    the test split: a setting that only passed by luck is caught here and the search backs off further.
    """
    for allocation in reversed(passing):
        if ctx.probe(allocation, "final", path.index(allocation) if allocation in path else None).passed:
            return allocation
        notes.append(f"{_fmt_alloc(allocation)} passed on validation during the search but not after the final "
                     "run; backed off")
    if len(path) > 1:
        notes.append("no pruned allocation met the budget on the validation split: the output is the unpruned "
                     "float32 model")
    ctx.probe(path[0], "final", 0)
    return path[0]


def _raised(before: dict[str, float], after: dict[str, float]) -> str:
    return next(k for k in after if after[k] != before[k])


def allocation_path(sens: SensitivityResult, objective: str = "size") -> list[dict[str, float]]:
    """Allocations from dense to every layer at its largest ratio, ordered by KL cost per unit saved."""
    layers = [layer for layer in sens.layers() if any(r.layer == layer and is_one_shot(r) for r in sens.rows)]
    if not layers:
        raise KitError("the sensitivity result has no unstructured or block rows to choose sparsity from")
    segments = []
    for li, layer in enumerate(layers):
        points = []
        worst = 0.0
        for r in sorted((r for r in sens.rows if r.layer == layer and is_one_shot(r)), key=lambda r: r.ratio):
            if r.ratio <= 0:
                continue
            saving = float(r.removed) if objective == "size" else (r.gain_us if r.gain_us is not None else 0.0)
            worst = max(worst, r.kl)
            points.append((saving, worst, r.ratio))
        hull = _lower_hull(points)
        for (s0, c0, _), (s1, c1, ratio) in zip(hull, hull[1:]):
            segments.append(((c1 - c0) / (s1 - s0), li, ratio))
    segments.sort(key=lambda s: (s[0], s[1], s[2]))
    state = dict.fromkeys(layers, 0.0)
    path = [dict(state)]
    for _, li, ratio in segments:
        state[layers[li]] = ratio
        path.append(dict(state))
    return path


def _lower_hull(points: list[tuple[float, float, float]]) -> list[tuple[float, float, float]]:
    """Lower convex hull from the origin over points with increasing saving (dominated points dropped)."""
    kept = [(0.0, 0.0, 0.0)]
    for p in sorted(points, key=lambda p: (p[0], p[1])):
        if p[0] <= kept[-1][0]:
            continue  # saves nothing, or no more than a cheaper point
        kept.append(p)
    hull: list[tuple[float, float, float]] = []
    for p in kept:
        while len(hull) >= 2:
            (x0, y0, _), (x1, y1, _) = hull[-2], hull[-1]
            if (x1 - x0) * (p[1] - y0) - (y1 - y0) * (p[0] - x0) <= 0:
                hull.pop()
            else:
                break
        hull.append(p)
    return hull


class _Search:
    """Runs the pipeline for one allocation and judges it on the validation split."""

    def __init__(self, model, model_name: str, recipe: Recipe, shaping: dict, split: ValidationSplit, out: Path,
                 budget: Budget, sigmas: float, path: list[dict[str, float]], log, objective: str = "size"):
        from kit.convert import check as checks
        from kit.convert.converter import ArtifactSpec, convert

        self.model, self.model_name, self.recipe, self.shaping = model, model_name, recipe, shaping
        self.split, self.out, self.budget, self.sigmas, self.path, self.log = split, out, budget, sigmas, path, log
        self.objective = objective
        self.probes: list[Probe] = []
        self.search_probes = 0
        self.boundary = (0, len(path))
        self.final_run = self.final_recipe = None
        self.final_outcomes: list[ArtifactOutcome] = []
        baseline = convert(model, ArtifactSpec("float32"))
        self.baseline_correct = checks.predict(baseline, "litert", split.x).argmax(axis=1) == split.y
        self.baseline_val = float(self.baseline_correct.mean())
        self.val_data = Dataset(split.train.name, split.train.x_train, split.train.y_train, split.x, split.y,
                                split.train.x_calib, f"{split.train.name} validation split: {split.description}")

    def probe(self, sparsity: dict[str, float], stage: str, step: int | None = None) -> Probe:
        from kit.pipeline.compress import compress

        t = time.perf_counter()
        pruned = any(v > 0 for v in sparsity.values())
        recipe = budget_recipe(self.recipe, sparsity, self.shaping) if pruned else unpruned_recipe(self.recipe)
        if stage == "search":
            self.search_probes += 1
            run_dir = self.out / "search" / f"probe-{self.search_probes:02d}"
            data = self.val_data
            label = f"search probe {self.search_probes}"
            section = None
        else:
            run_dir, data, label = self.out, self.split.train, "final run"
            section = self.manifest_section(sparsity)
        where = f"step {step}/{len(self.path) - 1}" if step is not None else "off the path"
        self.log(f"{label} ({where}): {_fmt_alloc(sparsity)}")
        with warnings.catch_warnings():  # tf_keras' advice against HDF5 on every saved model
            warnings.simplefilter("ignore", UserWarning)
            run = compress(self.model, recipe, data, run_dir, model_name=self.model_name, log=lambda *a: None,
                           budget=section)
        judged = {a.name: self._judge(a) for a in run.shipped}
        limit = self.budget.accuracy_drop + 1e-9
        over = [n for n, j in judged.items() if j.bound is None or j.bound > limit]
        passed = bool(judged) and not over
        reason = "no artifact shipped" if not judged else (
            "over budget: " + ", ".join(f"{n} {judged[n]}" for n in over) if over else "within budget")
        sizes = [a.bytes for a in run.shipped]
        p = Probe(step, sparsity, stage, passed, {n: j.drop for n, j in judged.items()},
                  min(sizes) if sizes else None, str(run_dir), round(time.perf_counter() - t, 1), reason,
                  {n: j.bound for n, j in judged.items()})
        self.probes.append(p)
        worst = max(judged.values(), key=lambda j: -1e9 if j.bound is None else j.bound, default=None)
        self.log(f"  -> smallest {p.smallest_bytes or 0:,} bytes, worst validation drop {worst or '-'}: {reason} "
                 f"({p.seconds:.0f} s)")
        if stage == "final":
            self.final_run, self.final_recipe = run, recipe
            base_test = run.baseline.accuracy
            self.final_outcomes = [
                ArtifactOutcome(a.path, a.sha256, a.bytes, a.name, a.format, judged[a.name].runtime,
                                judged[a.name].accuracy, judged[a.name].drop, a.accuracy,
                                None if a.accuracy is None or base_test is None else 100.0 * (base_test - a.accuracy),
                                val_bound=judged[a.name].bound)
                for a in run.shipped]
        return p

    def manifest_section(self, sparsity: dict[str, float]) -> dict[str, Any]:
        """What the final run's manifest records of the search; the details are in budget.json."""
        return {"file": "budget.json", "budget": str(self.budget), "objective": self.objective,
                "per_layer_sparsity": sparsity, "validation": self.split.description}

    def _judge(self, artifact) -> "_Judged":
        """Top-1 drop of one shipped artifact on the validation split, with its paired standard error."""
        from kit.convert import check as checks

        runtime = first_correct_runtime(artifact.checks)
        if runtime is None:
            return _Judged(None, None, None, None, None)
        out = checks.predict(Path(artifact.path).read_bytes(), runtime, self.split.x)
        correct = out.argmax(axis=1) == self.split.y
        diff = self.baseline_correct.astype(np.float64) - correct
        se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
        drop = 100.0 * float(diff.mean())
        return _Judged(runtime, float(correct.mean()), drop, 100.0 * se, drop + self.sigmas * 100.0 * se)


@dataclass
class _Judged:
    runtime: str | None
    accuracy: float | None
    drop: float | None  # points
    se: float | None  # standard error of the drop, points
    bound: float | None  # drop + sigmas * se: what must stay within the budget

    def __str__(self) -> str:
        if self.drop is None:
            return "not run"
        return f"{self.drop:+.2f} pts (+-{self.se:.2f}, bound {self.bound:+.2f})"


def _measure_latency(result: BudgetResult, target: str, runtime: str, log) -> None:
    """Median latency of the baseline, every shipped artifact and the dense encoding of the same format."""
    from targets.base import RunSettings
    from targets.registry import get_target

    delegate = DELEGATE_OF_RUNTIME.get(runtime)
    if delegate is None:
        result.notes.append(f"latency not measured: {runtime} is not profiled by a target")
        return
    settings = RunSettings(threads=1, warmup=30, runs=300, delegate=delegate)
    dense_of = {a.format.precision: a for a in result.run.artifacts if not a.format.sparse and a.path}
    with get_target(target) as t:
        base = result.baseline_latency_us = t.profile(result.run.baseline.path, settings).latency.median_us
        for outcome in result.artifacts:
            outcome.latency_us = t.profile(outcome.path, settings).latency.median_us
            dense = dense_of.get(outcome.format.precision)
            if outcome.format.sparse and dense is not None:
                outcome.dense_latency_us = t.profile(dense.path, settings).latency.median_us
    for a in result.artifacts:
        line = f"{a.name} on {target} ({runtime}, 1 thread): {a.latency_us:.1f} us median; dense float32 " \
               f"{base:.1f} us ({_verdict(base, a.latency_us)})"
        if a.dense_latency_us is not None:
            line += f"; dense {a.format.precision} of the same run {a.dense_latency_us:.1f} us " \
                    f"({_verdict(a.dense_latency_us, a.latency_us)})"
        result.notes.append(line)
    log("latency measured on " + target)


def _verdict(reference: float, measured: float) -> str:
    faster = measured < 0.9 * reference
    return f"x{reference / measured:.2f}, {'faster' if faster else 'not faster'}"


def _write(result: BudgetResult) -> Path:
    from kit.core.tables import format_table

    path = result.out_dir / "budget.json"
    path.write_text(strict_dumps(result.to_dict()))
    md = [f"# Budget search: {result.budget} ({result.objective})", "",
          f"Validation split: {result.validation}.", "", "## Chosen per-layer sparsity", "",
          result.layer_table(markdown=True), "", "## Result", "", result.table(markdown=True), "",
          "## Pipeline runs", ""]
    md.append(format_table(["stage", "step", "allocation", "smallest bytes", "verdict", "seconds"],
                           [[p.stage, p.step, _fmt_alloc(p.sparsity), p.smallest_bytes, p.reason, p.seconds]
                            for p in result.probes], markdown=True))
    md += [""] + [f"- {n}" for n in result.notes]
    (result.out_dir / "budget.md").write_text("\n".join(md) + "\n")
    return path


def _resolution_note(n_val: int, budget: Budget, sigmas: float) -> str:
    """How coarse the validation figure is, and the margin (if any) the search keeps for its noise."""
    head = f"the validation split has {n_val} samples (one sample is {100.0 / n_val:.2f} points); "
    if sigmas == 0:
        return head + (f"a setting passes when its drop there stays within {budget.accuracy_drop:g} points, and the "
                       "chosen one must pass again after a second fine-tune and the accuracy gate on the test split")
    return head + (f"a setting passes when its drop there plus {sigmas:g} standard error(s) of that drop stays within "
                   f"{budget.accuracy_drop:g} points, a margin against choosing a setting that was only lucky on "
                   "these samples")


def _check_recipe(recipe: Recipe) -> None:
    if recipe.prune is None:
        raise RecipeError(f"recipe {recipe.name!r} has no [prune] section: the budget search chooses per-layer "
                          "sparsity for it", "use a recipe that prunes, e.g. --recipe default")
    method = getattr(recipe.prune, "method", "magnitude")
    if method != "magnitude":
        raise RecipeError(f"the budget search chooses per-layer sparsity for magnitude pruning, not {method!r}",
                          "set prune.method = \"magnitude\" (or leave it out) with --budget")
    if recipe.prune.granularity == "2:4":
        raise RecipeError("2:4 sparsity is fixed at 50%: there is no per-layer sparsity to choose",
                          "use granularity \"unstructured\" or \"block\" with --budget")


def _without_back_off(recipe: Recipe) -> list[str]:
    """Drops `[prune] back_off` (a probe must run at the sparsity the search gave it); the note that says so."""
    if not recipe.prune.back_off:
        return []
    recipe.prune.back_off = []
    return ["the recipe's [prune] back_off is left out: the search chooses every layer's sparsity itself"]


def _primary_format(recipe: Recipe) -> str:
    modes = recipe.quantize.mode if recipe.quantize is not None else ["none"]
    return MODE_PRECISION[modes[0]]


def _resolve_model(model, model_name, dataset: Dataset, val_fraction: float, recipe: Recipe, teacher_epochs: int,
                   log):
    """A tf_keras model, trained on the training data minus the validation split when it is a built-in name."""
    from kit.models import resolve_model

    resolved = resolve_model(model, dataset, seed=recipe.seed, epochs=teacher_epochs, name=model_name,
                             train_split=lambda d: split_validation(d, val_fraction).train, log=log,
                             classifier_only="the budget search chooses per-layer sparsity by top-1")
    return resolved.model, resolved.name, dataset.fit_to(resolved.model.input_shape[1:])



def _fmt_alloc(sparsity: dict[str, float]) -> str:
    return ", ".join(f"{n} {100 * s:.0f}%" for n, s in sparsity.items()) or "-"


def _pts(x: float | None) -> str:
    return "-" if x is None else f"{x:+.2f} pts"


def budget_recipe(base: Recipe, sparsity: dict[str, float], shaping: dict[str, LayerOverride] | None = None) -> Recipe:
    """`base` with one per-layer override per layer: its chosen final sparsity (0 = skip) and block shape.

    The overrides come first in `prune.layers` (the first matching pattern wins), so the recipe's own patterns
    still apply to any layer not named here. Every other step stays as the recipe has it. The result is
    re-parsed from its TOML text, which the manifest records, so the text reproduces the run.
    """
    r = copy.deepcopy(base)
    p = r.prune
    own = {}
    for name, s in sparsity.items():
        inherited = p.override_for(name)
        shape = (shaping or {}).get(name, LayerOverride())
        if s <= 0:
            own[re.escape(name)] = LayerOverride(skip=True)
            continue
        initial = inherited.initial_sparsity if inherited.initial_sparsity is not None else p.initial_sparsity
        own[re.escape(name)] = LayerOverride(
            initial_sparsity=min(initial, s) if p.schedule == "polynomial" else None, final_sparsity=float(s),
            granularity=shape.granularity or inherited.granularity, block=shape.block or inherited.block)
    p.layers = {**own, **{k: v for k, v in p.layers.items() if k not in own}}
    r.name = f"{base.name}-budget"
    r.description = f"{base.description} Per-layer sparsity chosen by the budget search.".strip()
    return _reparsed(r, base)


def unpruned_recipe(base: Recipe) -> Recipe:
    """The float32 model itself (the fallback when nothing fits): every step that changes the model or adds
    formats is dropped; the steps that say so (`StepSpec.in_unpruned`: convert, metrics) stay."""
    r = copy.deepcopy(base)
    for spec in STEPS:
        if not spec.in_unpruned:
            setattr(r, spec.name, None)
    r.name = f"{base.name}-unpruned"
    r.description = "No pruned allocation met the accuracy budget: the original model, float32."
    return _reparsed(r, base)


def _reparsed(r: Recipe, base: Recipe) -> Recipe:
    """`r` read back from the TOML text it is written as; an error names the recipe it was derived from."""
    again = parse_recipe(write_recipe(r), f"the recipe {r.name!r} derived from {base.name!r}")
    if again != r:
        raise RuntimeError(f"internal error: the TOML of recipe {r.name!r} does not read back the same")
    return again
