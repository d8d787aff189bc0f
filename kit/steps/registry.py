"""The recipe steps, in order: one line per step. The order is that of the sections in a recipe, of the
steps in a run (a step may ask to run earlier in some recipes, `StepSpec.runs_before`) and of the report's
sections. Parsing, writing, the pipeline, the budget search's derived recipes and the README key table all
read this list, so a new step is its module plus one line here.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from kit.steps import (
    cluster,
    convert,
    finetune,
    layer_prune,
    lowrank,
    metrics,
    prune,
    quantize,
    regularize,
    structured,
)
from kit.steps.base import StepSpec, key_rows

if TYPE_CHECKING:
    from kit.recipe import Recipe

STEPS: list[StepSpec] = [
    layer_prune.STEP,
    structured.STEP,
    regularize.STEP,
    prune.STEP,
    finetune.STEP,
    lowrank.STEP,
    cluster.STEP,
    quantize.STEP,
    convert.STEP,
    metrics.STEP,
]


def register(spec: StepSpec, after: str | None = None) -> None:
    """Add a step after the named one (default: at the end)."""
    if any(s.name == spec.name for s in STEPS):
        raise ValueError(f"a step named {spec.name!r} is already registered")
    at = len(STEPS) if after is None else [s.name for s in STEPS].index(after) + 1
    STEPS.insert(at, spec)


def names() -> list[str]:
    return [s.name for s in STEPS]


def get(name: str) -> StepSpec | None:
    return next((s for s in STEPS if s.name == name), None)


def schedule(recipe: Recipe) -> list[StepSpec]:
    """The steps a run of `recipe` takes, in the order they run."""
    steps = [s for s in STEPS if s.always or getattr(recipe, s.name) is not None]
    order = [s for s in steps if s.runs_before(recipe) is None]
    for s in steps:
        before = s.runs_before(recipe)
        if before is not None:
            at = next((i for i, o in enumerate(order) if o.name == before), len(order))
            order.insert(at, s)
    return order


def key_table() -> str:
    """Markdown: one table per step of its keys, their values, defaults and docs (the README's reference)."""
    import sys

    out = []
    for s in STEPS:
        doc = " ".join((sys.modules[s.config.__module__].__doc__ or "").split())
        doc = doc.split(": ", 1)[-1].split(". ")[0].rstrip(".") if doc.startswith(f"[{s.name}]") else ""
        out += [f"`[{s.name}]`" + (f" — {doc}." if doc else ""), "",
                "| key | value | default | what |", "| --- | --- | --- | --- |"]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in key_rows(s.config)]
        out.append("")
    return "\n".join(out)
