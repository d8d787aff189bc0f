"""Which artifacts ship: the Pareto frontier of bytes on disk, gzip bytes, median latency and the task's figure.

Bytes alone chose badly: a sparse encoding is smaller on disk yet can be no smaller once an app store
compresses it and ten times slower to run. So every artifact that runs correctly on its targets and passes the
accuracy gate is timed on the recipe's first target runtime on this host (in a child process with a time
limit, as the check runs it), and only the artifacts no other one beats on every axis at once ship. Each
dominated one says which artifact dominates it and by how much. The recipe's `[convert] objective` then marks
one shipped artifact as the default.

Latency is the one noisy axis: medians closer than `LATENCY_TIE` (relative) or `LATENCY_TIE_US` count as
equal, and only a difference beyond that makes one artifact faster. Artifacts tied on every axis ship once:
the one with the lower median, then the one built first (dense before sparse, the simpler file). No cycle of
"dominates" is possible (round a cycle the exact axes cannot change, and what is left, a faster median or the
tie rule, orders the artifacts strictly), so the frontier is never empty.
"""
from __future__ import annotations

import math
import platform
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.convert.check import Runner
from kit.core.errors import KitError
from kit.core.isolate import ChildException, RuntimeFailure, progress, run_isolated
from kit.core.metrics import gate_figure

if TYPE_CHECKING:
    from kit.convert.artifacts import Artifact

#: recipe `[convert] objective` values: which shipped artifact is the default
OBJECTIVES = ("size", "latency", "balanced")
#: warm-up invocations, then timed ones: at least TIMED_RUNS, more for a fast model (up to MAX_TIMED_RUNS, about
#: TIMING_BUDGET_S of invoking), as a median of microsecond calls needs many to settle
WARMUP_RUNS = 10
TIMED_RUNS = 50
MAX_TIMED_RUNS = 2000
TIMING_BUDGET_S = 0.2
#: latency medians this close are a tie (timing noise on a shared host): relative to the faster, or in µs
LATENCY_TIE = 0.10
LATENCY_TIE_US = 1.0
#: how each runtime is timed, for the record
_RUNTIME_METHOD = {
    "litert": "LiteRT Interpreter, XNNPACK (default delegate), 1 thread",
    "litert-builtin": "LiteRT Interpreter, built-in kernels (no delegate), 1 thread",
    "tflm": "TFLite Micro Python interpreter",
    "litert-compiled": "LiteRT CompiledModel, CPU accelerator",
}


@dataclass
class Point:
    """One candidate as the frontier sees it; `metric` is top1 / auc (higher is better) or mse (lower)."""

    name: str
    bytes: int
    gzip_bytes: int
    latency_us: float | None
    metric: str | None = None
    figure: float | None = None


@dataclass
class Frontier:
    """The decision: what ships, why each other candidate does not, and the default with its reason."""

    objective: str
    shipped: list[str]
    reasons: dict[str, str] = field(default_factory=dict)  # dominated name -> who dominates it and how
    default: str | None = None
    why_default: str = ""
    latency_method: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"objective": self.objective, "shipped": self.shipped, "dominated": self.reasons,
                "default": self.default, "why_default": self.why_default, "latency_method": self.latency_method,
                "axes": ["bytes", "gzip_bytes", "median_us", "figure"],
                "latency_tie": {"relative": LATENCY_TIE, "us": LATENCY_TIE_US}}


# -- comparing -----------------------------------------------------------------------------------------------------

def _latency_cmp(a: float | None, b: float | None) -> int | None:
    """-1: `a` is faster beyond timing noise, 1: slower, 0: a tie (or neither measured); None when only one was
    measured (not comparable)."""
    if a is None or b is None:
        return 0 if a is None and b is None else None
    if abs(a - b) <= max(LATENCY_TIE * min(a, b), LATENCY_TIE_US):
        return 0
    return -1 if a < b else 1


def _figure_cmp(a: Point, b: Point) -> int | None:
    """-1: `a`'s figure is better, 1: worse, 0: equal; None when they are not comparable."""
    if a.figure is None and b.figure is None:
        return 0
    if a.figure is None or b.figure is None or a.metric != b.metric:
        return None
    if a.figure == b.figure:
        return 0
    better = a.figure < b.figure if a.metric == "mse" else a.figure > b.figure
    return -1 if better else 1


def _cmp(x: int, y: int) -> int:
    return (x > y) - (x < y)


def _figure_text(b: Point, a: Point) -> str:
    """`top-1 91.09% vs 91.36%, test split`: the dominated artifact's figure first, on the split every check
    scores (the run's test split)."""
    if b.metric == "mse":
        return f"MSE {b.figure:.4g} vs {a.figure:.4g}, test split"
    return f"{'ROC AUC' if b.metric == 'auc' else 'top-1'} {100 * b.figure:.2f}% vs {100 * a.figure:.2f}%, test split"


def dominance(a: Point, b: Point, a_first: bool) -> str | None:
    """How `a` dominates `b` (no worse on every axis and better on one; or tied on every axis and faster, or as
    fast and built first), as the reason `b` does not ship; None when it does not. An axis measured for one
    and not the other makes the two incomparable."""
    axes = [(_cmp(a.bytes, b.bytes), "smaller on disk", "larger on disk",
             f"{b.bytes:,} vs {a.bytes:,} B"),
            (_cmp(a.gzip_bytes, b.gzip_bytes), "smaller gzipped", "larger gzipped",
             f"{b.gzip_bytes:,} vs {a.gzip_bytes:,} B"),
            (_latency_cmp(a.latency_us, b.latency_us), "faster", "slower",
             None if a.latency_us is None or b.latency_us is None else f"{b.latency_us:.1f} µs vs "
                                                                        f"{a.latency_us:.1f} µs"),
            (_figure_cmp(a, b), "more accurate", "less accurate",
             None if a.figure is None or b.figure is None else _figure_text(b, a))]
    if any(c is None or c == 1 for c, *_ in axes):
        return None
    la, lb = a.latency_us or 0.0, b.latency_us or 0.0
    if not any(c == -1 for c, *_ in axes) and not (la < lb or (la == lb and a_first)):
        return None  # a tie on every axis goes to the faster median, then to the one built first
    worse = [f"{bad} ({numbers})" for c, _, bad, numbers in axes if c == -1 and numbers]
    tied = [f"{_NO_BETTER[good]} ({numbers})" for c, good, _, numbers in axes if c == 0 and numbers]
    phrases = worse + tied
    phrases[0] = _name_in(phrases[0], a.name)
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


#: a tie on an axis, said from the dominated artifact's side
_NO_BETTER = {"smaller on disk": "no smaller on disk", "smaller gzipped": "no smaller gzipped",
              "faster": "as fast within timing noise", "more accurate": "no more accurate"}


def _name_in(phrase: str, name: str) -> str:
    """`slower (…)` -> `slower than int8 (…)`: the first phrase names the artifact that dominates."""
    head, _, numbers = phrase.partition(" (")
    return f"{head} than {name} ({numbers}"


def frontier(points: list[Point], objective: str = "balanced") -> Frontier:
    """The Pareto-optimal points ship; each other one gets the reason of the first point that dominates it.
    `points` are in the order built (the order that breaks exact ties)."""
    if objective not in OBJECTIVES:
        raise KitError(f"unknown objective {objective!r}", f"use one of {', '.join(OBJECTIVES)}")
    reasons: dict[str, str] = {}
    for j, b in enumerate(points):
        for i, a in enumerate(points):
            why = None if i == j else dominance(a, b, a_first=i < j)
            if why:
                reasons[b.name] = why
                break
    shipped = [p for p in points if p.name not in reasons]
    default, why_default = choose_default(shipped, objective)
    return Frontier(objective, [p.name for p in shipped], reasons, default, why_default)


def choose_default(shipped: list[Point], objective: str) -> tuple[str | None, str]:
    """The shipped point the objective prefers, and why: `size` the smallest on disk, `latency` the fastest
    (ties within timing noise go to the smaller file), `balanced` the lowest product of bytes, gzip bytes and
    latency each relative to the best shipped."""
    if not shipped:
        return None, "nothing ships"
    if len(shipped) == 1:
        return shipped[0].name, "the only artifact on the frontier"
    if objective == "size":
        p = min(shipped, key=lambda p: (p.bytes, p.gzip_bytes))
        return p.name, f"objective size: the smallest on disk ({p.bytes:,} B)"
    timed = [p for p in shipped if p.latency_us is not None]
    if objective == "latency":
        if not timed:
            p = min(shipped, key=lambda p: (p.bytes, p.gzip_bytes))
            return p.name, "objective latency, but no latency was measured: the smallest on disk"
        fastest = min(p.latency_us for p in timed)
        tied = [p for p in timed if _latency_cmp(p.latency_us, fastest) == 0]
        p = min(tied, key=lambda p: (p.bytes, p.gzip_bytes))
        others = f"; {len(tied) - 1} other(s) within timing noise, larger" if len(tied) > 1 else ""
        return p.name, f"objective latency: the fastest ({p.latency_us:.1f} µs median{others})"
    use_latency = len(timed) == len(shipped)
    best = {"bytes": min(p.bytes for p in shipped), "gzip": min(p.gzip_bytes for p in shipped),
            "latency": min(p.latency_us for p in timed) if use_latency else None}

    def ratios(p: Point) -> list[float]:
        r = [p.bytes / max(best["bytes"], 1), p.gzip_bytes / max(best["gzip"], 1)]
        return r + [p.latency_us / max(best["latency"], 1e-9)] if use_latency else r

    p = min(shipped, key=lambda p: (math.prod(ratios(p)), p.bytes))
    r = ratios(p)
    parts = [f"{r[0]:.2f}x the smallest on disk", f"{r[1]:.2f}x the smallest gzipped"]
    parts += [f"{r[2]:.2f}x the fastest"] if use_latency else ["latency not measured for every artifact"]
    return p.name, f"objective balanced: the lowest product of size, gzip size and latency: {', '.join(parts)}"


# -- measuring -----------------------------------------------------------------------------------------------------

def method(runtime: str, runs: int | None = None, warmup: int = WARMUP_RUNS) -> str:
    """`LiteRT Interpreter, XNNPACK (default delegate), 1 thread, median of 50 invocations after 10 warm-up, on
    this host (x86_64)`; without `runs`, the rule that sets it."""
    count = (f"median of {runs} invocations" if runs is not None else
             f"median of {TIMED_RUNS} to {MAX_TIMED_RUNS} invocations (about {TIMING_BUDGET_S:g} s each)")
    return (f"{_RUNTIME_METHOD.get(runtime, runtime)}, {count} after {warmup} warm-up, "
            f"on this host ({platform.machine() or 'unknown machine'})")


def _invoke(runner: Runner):
    """The runtime's own call, without the (de)quantization around it that `Runner.__call__` adds."""
    if runner.runtime == "litert-compiled":
        c = runner.compiled
        return lambda: c.cm.run_by_index(0, c.in_buffers, c.out_buffers)
    return runner.it.invoke


def _time_models(models: list[tuple[str, bytes]], runtime: str, x: np.ndarray, warmup: int,
                 runs: int) -> list[tuple[float | None, int, str | None]]:
    """In a child: (median µs, timed runs, None) or (None, 0, error) per model, each loaded fresh and fed the
    sample `x`; at least `runs` timed calls, more for a fast model (see MAX_TIMED_RUNS)."""
    out = []
    for name, content in models:
        progress(f"timing {name} on")
        try:
            runner = Runner(content, runtime)
            runner(x)  # sets the (quantized) input once; the timed calls reuse it
            call = _invoke(runner)
            t0 = time.perf_counter()
            for _ in range(warmup):
                call()
            each = (time.perf_counter() - t0) / max(warmup, 1)
            n = int(min(MAX_TIMED_RUNS, max(runs, TIMING_BUDGET_S / max(each, 1e-9))))
            times = []
            for _ in range(n):
                t0 = time.perf_counter_ns()
                call()
                times.append(time.perf_counter_ns() - t0)
            out.append((float(np.median(times)) / 1000.0, n, None))
        except Exception as e:  # noqa: BLE001 - any runtime error is the reason latency is absent, never raised
            out.append((None, 0, str(e).strip() or type(e).__name__))
    return out


def measure(models: list[tuple[str, bytes]], runtime: str, x: np.ndarray, warmup: int = WARMUP_RUNS,
            runs: int = TIMED_RUNS, timeout_s: float = 60.0) -> list[tuple[float | None, int, str | None]]:
    """(median µs, timed runs, error) of each model on `runtime`, all in one child process; when that child
    crashes or stalls, each model in a child of its own, so one bad file costs only its own figure."""
    x = np.asarray(x, np.float32)
    try:
        return run_isolated(_time_models, (models, runtime, x, warmup, runs), runtime=runtime, file="artifacts",
                            action="timing", timeout_s=timeout_s)
    except (RuntimeFailure, ChildException):
        pass
    results = []
    for name, content in models:
        try:
            results += run_isolated(_time_models, ([(name, content)], runtime, x, warmup, runs), runtime=runtime,
                                    file=f"{name}.tflite", action="timing", timeout_s=timeout_s)
        except RuntimeFailure as e:
            results.append((None, 0, e.message))
        except ChildException as e:
            results.append((None, 0, str(e)))
    return results


# -- the pipeline's call -------------------------------------------------------------------------------------------

def point_of(a: Artifact, runtime: str, task: str) -> Point:
    c = a.check_on(runtime)
    figure = gate_figure(task, c.to_dict()) if c is not None and c.correct else None
    return Point(a.name, a.bytes, a.gzip_bytes, a.latency_us, *(figure or (None, None)))


def ship_frontier(artifacts: list[Artifact], targets: tuple[str, ...], task: str, objective: str,
                  x: np.ndarray, log=print) -> Frontier:
    """Time every candidate (correct on its targets and within the gate) on the first target runtime, ship
    the frontier, mark the default; the others keep the reason they already had."""
    runtime = targets[0]
    candidates = [a for a in artifacts if a.shipped]
    how = method(runtime)
    if len(candidates) == 1:  # nothing to choose between: not worth a child process per run
        how = None
        candidates[0].latency_note = "not timed: the only candidate, so it ships without a comparison"
    elif candidates and runtime not in _RUNTIME_METHOD:
        how = None
        for a in candidates:
            a.latency_note = (f"not measured: {runtime} is not timed on this host (the frontier times "
                              f"{', '.join(_RUNTIME_METHOD)}); compared on size and figure only")
    elif candidates:
        log(f"timing {len(candidates)} artifact(s) on {runtime} ({how})")
        for a, (median, runs, error) in zip(candidates, measure([(a.name, a.content) for a in candidates],
                                                                  runtime, x)):
            a.latency_us = None if median is None else round(median, 3)
            a.latency_method = method(runtime, runs) if median is not None else None
            a.latency_note = None if error is None else f"not measured on {runtime}: {error}"[:300]
    decision = frontier([point_of(a, runtime, task) for a in candidates], objective)
    decision.latency_method = how
    for a in candidates:
        if a.name in decision.reasons:
            a.shipped, a.reason = False, decision.reasons[a.name]
        a.default = a.name == decision.default
    return decision
