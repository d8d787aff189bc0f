"""What every recipe step shares: keys declared once in field metadata, read, written and listed from there.

A step's config is a dataclass whose fields are made with `key(...)`: the metadata holds the type, the range
or choices, and a one-line doc. `read_config` parses a TOML table into the dataclass with line-numbered
errors, `config_table` turns it back into what `tomli_w` writes, and `key_rows` lists the keys for the README.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from kit.core.toml import TomlFile
    from kit.recipe import Recipe

#: reads one key: (checker, table, path of the table, key, default) -> value
Reader = Callable[["TomlFile", dict, tuple, str, Any], Any]


def key(default: Any = None, doc: str = "", *, type: type | None = None, check: Callable[[Any], bool] | None = None,
        allowed: str | None = None, choices: tuple[str, ...] | Callable[[], tuple[str, ...]] | None = None,
        read: Reader | None = None, shape: str | None = None, factory: Callable[[], Any] | None = None) -> Any:
    """A recipe key: its default, doc and how it is checked.

    type/check/allowed: a scalar with a range (`allowed` is what the error says is allowed);
    choices: a string from these options (a callable when they live in a module that is slow to import);
    read: a reader for anything else, with `shape` saying what the value looks like for the key table.
    """
    meta = {"doc": doc, "type": type, "check": check, "allowed": allowed, "choices": choices, "read": read,
            "shape": shape}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _options(meta: dict) -> tuple[str, ...]:
    choices = meta["choices"]
    return tuple(choices() if callable(choices) else choices)


def read_config(cls: type, v: TomlFile, t: Any, path: tuple[str, ...]) -> Any:
    """A config dataclass from its TOML table: unknown keys, wrong types and values out of range are refused."""
    t = v.table(t, path, {f.name for f in fields(cls)})
    config = cls()
    for f in fields(cls):
        meta, default = f.metadata, getattr(config, f.name)
        if meta.get("read") is not None:
            value = meta["read"](v, t, path, f.name, default)
        elif meta.get("choices") is not None:
            value = v.choice(t, path, f.name, _options(meta), default)
        else:
            value = v.get(t, path, f.name, meta["type"], default, meta.get("check"), meta.get("allowed"))
        setattr(config, f.name, value)
    return config


def config_table(config: Any, derived: set[str] = frozenset()) -> dict[str, Any]:
    """The keys of `config` that differ from their defaults, as TOML values; `derived` keys are left out because
    parsing derives them from others (writing them could contradict the rule that derives them)."""
    default = type(config)()
    out = {}
    for f in fields(config):
        value = getattr(config, f.name)
        if f.name in derived or value is None or value == getattr(default, f.name):
            continue
        out[f.name] = toml_value(value)
    return out


def toml_value(value: Any) -> Any:
    """Python values of a config as TOML values: "RxC" for shapes, tables for nested configs."""
    if is_dataclass(value):
        return config_table(value)
    if isinstance(value, dict):
        return {k: toml_value(x) for k, x in value.items()}
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(x, int) for x in value):
        return f"{value[0]}x{value[1]}"  # block shapes, kernel and image sizes are written "RxC"
    if isinstance(value, (list, tuple)):
        return [toml_value(x) for x in value]
    return value


def key_rows(cls: type) -> list[list[str]]:
    """[key, value, default, doc] of every key of a config, for the README's key tables."""
    rows = []
    default = cls()
    for f in fields(cls):
        meta = f.metadata
        if meta.get("choices") is not None:
            what = " | ".join(_options(meta))
        elif meta.get("shape"):
            what = meta["shape"]
        else:
            what = meta["type"].__name__ + (f", {meta['allowed']}" if meta.get("allowed") else "")
        value = getattr(default, f.name)
        shown = "-" if value is None or value == [] or value == {} else f"`{toml_value(value)}`".replace("'", '"')
        rows.append([f"`{f.name}`", what, shown, meta["doc"]])
    return rows


# -- readers for values that are not a plain scalar ---------------------------------------------------------------

def pair_reader(what: str, example: str, most: int = 16384) -> Reader:
    """"RxC" text as a pair of integers from 1 to `most` (block shapes, image sizes)."""
    def read(v: TomlFile, t: dict, path: tuple, name: str, default: Any) -> Any:
        value = v.get(t, path, name, str, None)
        if value is None:
            return default
        m = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", value)
        if not m or not (1 <= int(m.group(1)) <= most and 1 <= int(m.group(2)) <= most):
            v.fail((*path, name), f"is {value!r}, not {what}", f"{example}; each side 1 to {most}")
        return int(m.group(1)), int(m.group(2))
    return read


def read_patterns(v: TomlFile, t: dict, path: tuple, name: str, default: Any) -> list[str]:
    return v.patterns(t, path, name)


def fraction_map(allowed: str) -> Reader:
    """A table of layer name -> a fraction in (0, 1)."""
    def read(v: TomlFile, t: dict, path: tuple, name: str, default: Any) -> dict[str, float]:
        table = v.table(t.get(name, {}), (*path, name), None)
        return {layer: v.get(table, (*path, name), layer, float, None, lambda x: 0 < x < 1, allowed)
                for layer in table}
    return read


def table_reader(cls: type) -> Reader:
    """An optional sub-table read as its own config dataclass (absent: None)."""
    def read(v: TomlFile, t: dict, path: tuple, name: str, default: Any) -> Any:
        return read_config(cls, v, t[name], (*path, name)) if name in t else default
    return read


def fraction(x: float) -> bool:
    return 0.0 <= x < 1.0


# -- running ------------------------------------------------------------------------------------------------------

@dataclass
class StepContext:
    """What the steps of one compression run share: the model being compressed and what the run records."""

    recipe: Recipe
    model: Any  # the model being compressed; each step that changes it replaces it
    teacher: Any  # the original model: distillation teacher and fidelity reference
    dataset: Any  # kit.data.Dataset
    x_eval: np.ndarray
    y_eval: np.ndarray
    out: Path
    model_name: str
    baseline: Any  # kit.convert.artifacts.Artifact of the original model
    log: Callable[..., None] = print
    #: technique reports by name, recorded in the manifest (regularize, soft, learned, iterative, lowrank, ...)
    techniques: dict[str, Any] = field(default_factory=dict)
    keras_accuracy: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    sources: list = field(default_factory=list)  # models to convert, one per format ([quantize]; none: float32)
    artifacts: list = field(default_factory=list)  # built and checked by the convert step
    history: Any = None  # kit.techniques.finetune.History of the fine-tune, for the report's schedule plot
    prune_plan: dict | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    finetuned: bool = False  # a step already trained with the [finetune] settings
    #: what the model computes (kit.core.metrics.TASKS): picks the figures every measurement records
    task: str = "classification"
    #: the task's Keras figures by label (kit.core.metrics.task_scores); classifiers' top-1 also in keras_accuracy
    keras_scores: dict[str, dict] = field(default_factory=dict)

    def measure(self, label: str, model: Any = None) -> float | None:
        """The task's Keras figures of `model` (default: the model being compressed) on the evaluation split,
        recorded; returns the one the accuracy gate compares (top-1 for classifiers)."""
        from kit.core.metrics import gate_figure, task_scores

        m = self.model if model is None else model
        scores = task_scores(self.task, m.predict(self.x_eval, batch_size=512, verbose=0), self.x_eval, self.y_eval,
                             None)
        self.keras_scores[label] = scores
        if self.task == "classification":
            self.keras_accuracy[label] = scores["top1"]
        figure = gate_figure(self.task, scores)
        return None if figure is None else figure[1]

    def image_shape(self) -> tuple[int, ...] | None:
        """Image layout of the inputs, for shifts and the input-importance map (None for non-image data)."""
        if self.recipe.metrics is not None and self.recipe.metrics.image_shape is not None:
            return self.recipe.metrics.image_shape
        shape = tuple(int(d) for d in self.teacher.input_shape[1:])
        if len(shape) >= 2:
            return shape
        return {"digits": (8, 8), "mnist5k": (28, 28)}.get(self.dataset.name)


@dataclass(frozen=True)
class StepSpec:
    """One recipe section: its config, how it runs, how its report section reads, and how derived recipes
    treat it. The registry's order is the order of the sections in recipes and of the steps in a run."""

    name: str
    config: type
    run: Callable[[StepContext], Any]
    render: Callable[[Any, Path], str] = lambda result, out: ""
    #: cross-field rules after every key was read: (checker, raw table, config) -> None, raising on a mistake
    validate: Callable[[TomlFile, dict, Any], None] | None = None
    #: keys that parsing derives from others and writing leaves out: config -> set of keys
    derived: Callable[[Any], set[str]] = lambda config: set()
    #: "model": changes the model being compressed; "artifacts": works on what the model became
    stage: str = "model"
    #: kept by the budget search's fallback to the original float32 model
    in_unpruned: bool = False
    #: a recipe has this section even when its file does not (with the defaults)
    required: bool = False
    #: runs even when the recipe has no such section (the step picks its own settings)
    always: bool = False
    #: the recipe needs a fine-tune when it has this section (the fine-tune recovers what the step did)
    needs_finetune: bool = False
    #: name of the timing entry (steps that share one add up)
    timing: str | None = None
    #: in this recipe, run just before the named step instead of in registry order (None: registry order)
    runs_before: Callable[[Recipe], str | None] = lambda recipe: None

    def parse(self, v: TomlFile, t: Any) -> Any:
        config = read_config(self.config, v, t, (self.name,))
        if self.validate is not None:
            self.validate(v, t, config)
        return config

    def table(self, config: Any) -> dict[str, Any]:
        return config_table(config, self.derived(config))

    def timed(self, ctx: StepContext) -> Any:
        t = time.perf_counter()
        try:
            return self.run(ctx)
        finally:
            label = self.timing or self.name
            ctx.timings[label] = ctx.timings.get(label, 0.0) + time.perf_counter() - t


__all__ = ["StepContext", "StepSpec", "config_table", "fraction", "fraction_map", "key", "key_rows",
           "pair_reader", "read_config", "read_patterns", "table_reader", "toml_value"]
