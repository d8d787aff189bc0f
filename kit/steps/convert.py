"""[convert]: every model the run made, as .tflite in each encoding, checked on the default runtimes (LiteRT,
its built-in kernels, TFLM) and the recipe's targets; what ships must run correctly on the runtimes listed
in `targets` and lose at most `max_accuracy_drop` of the task's figure against the original model there
(kit.convert.artifacts). Of those, only the Pareto frontier of bytes, gzip bytes, median latency on the first
target runtime and the task's figure ships, and `objective` marks the default (kit.convert.frontier). The task
(classifier, autoencoder, regression) picks the figures; `auto` detects it from the model's shapes and the
labels (kit.core.metrics)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kit.core.metrics import TASK_CHOICES
from kit.core.vocab import RUNTIMES
from kit.steps.base import StepContext, StepSpec, key


def _targets(v, t: dict, path: tuple, name: str, default: Any) -> list[str]:
    targets = v.string_list(t, path, name, default)
    for r in targets:
        if r not in RUNTIMES:
            v.fail((*path, name), f"{r!r} is not a runtime", f"use any of {', '.join(RUNTIMES)}")
    if not targets:
        v.fail((*path, name), "is empty: an artifact must load on at least one runtime")
    return targets


def _objectives() -> tuple[str, ...]:
    """The objectives, imported on first use: kit.convert.frontier imports the runtime check."""
    from kit.convert.frontier import OBJECTIVES

    return OBJECTIVES


@dataclass
class ConvertStep:
    sparse: str = key("auto", "sparse encoding of pruned models: build it beside dense and let the frontier choose "
                              "| only sparse | only dense", choices=("auto", "on", "off"))
    targets: list[str] = key(doc="runtimes an artifact must load on to ship", read=_targets,
                             shape=f"list of {' | '.join(RUNTIMES)}", factory=lambda: ["litert"])
    max_accuracy_drop: float = key(1.0, "what an artifact may lose against the original model on the same runtime "
                                        "and test split, more never ships: points of top-1 (classifier), points of "
                                        "ROC AUC (autoencoder with 0/1 anomaly labels), else per cent of MSE rise",
                                   type=float, check=lambda x: 0 <= x <= 100, allowed="0 to 100")
    task: str = key("auto", "what the model computes, which picks the figures: auto = outputs shaped like the "
                            "inputs is an autoencoder, integer labels indexing the outputs a classifier",
                    choices=TASK_CHOICES)
    objective: str = key("balanced", "which shipped artifact is the default: the smallest on disk | the fastest | "
                                     "the lowest product of size, gzip size and latency", choices=_objectives)


@dataclass
class ConvertResult:
    artifacts: list  # kit.convert.artifacts.Artifact, shipped or not
    advice: str | None = None  # what to try when nothing ships
    frontier: Any = None  # kit.convert.frontier.Frontier: what ships, the default and why


def run(ctx: StepContext) -> ConvertResult:
    from kit.convert.artifacts import AccuracyGate, artifacts_for, place
    from kit.convert.frontier import ship_frontier
    from kit.core.metrics import gate_figure
    from kit.steps.quantize import Source

    pruned = ctx.recipe.prune is not None
    original = gate_figure(ctx.task, ctx.keras_scores["original"])
    gate = AccuracyGate(ctx.baseline, None if original is None else original[1], ctx.recipe.convert.max_accuracy_drop,
                        ctx.task)
    for s in ctx.sources or [Source(ctx.model, "float32")]:
        ctx.artifacts += artifacts_for(s.model, s.fmt, s.io, pruned, ctx.recipe, ctx.dataset, ctx.x_eval, ctx.y_eval,
                                       ctx.out, ctx.model_name, ctx.log, gate=gate, task=ctx.task)
    convert = ctx.recipe.convert
    frontier = ship_frontier(ctx.artifacts, tuple(convert.targets), ctx.task, convert.objective, ctx.x_eval[:1],
                             ctx.log)
    for a in ctx.artifacts:
        place(a, ctx.out)
        latency = "" if a.latency_us is None else f"{a.latency_us:>9.1f} µs  "
        state = ("shipped, default" if a.default else "shipped") if a.shipped else f"not shipped: {a.reason}"
        ctx.log(f"  {a.name:16s} {a.bytes:>10,} B  gzip {a.gzip_bytes:>10,} B  {latency}{a.figures} (test split)  "
                f"{state}")
    if frontier.default:
        ctx.log(f"default: {frontier.default} ({frontier.why_default})")
    advice = None
    if ctx.artifacts and not any(a.shipped for a in ctx.artifacts):
        advice = gate.advice(ctx.recipe, ctx.artifacts)
        ctx.log(f"nothing ships: {advice}")
    return ConvertResult(list(ctx.artifacts), advice, frontier)


STEP = StepSpec("convert", ConvertStep, run, stage="artifacts", in_unpruned=True, required=True,
                timing="convert_check")
