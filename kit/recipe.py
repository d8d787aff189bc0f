"""Recipes: TOML files naming the steps of a compression run, validated with precise errors.

The steps and their order come from kit.steps.registry: layer_prune -> structured -> regularize -> prune ->
finetune -> lowrank -> cluster -> quantize -> convert, then `metrics` sets what is measured. Each step's keys,
types, ranges and defaults are declared once in its config dataclass (kit/steps/<step>.py); a wrong key, type
or value is reported with the line and the key, and what is allowed.
"""
from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import tomli_w

from kit.core.errors import RecipeError
from kit.core.toml import TomlFile
from kit.steps import registry
from kit.steps.cluster import ClusterStep
from kit.steps.convert import RUNTIMES, ConvertStep
from kit.steps.finetune import Augment, Distill, FinetuneStep
from kit.steps.layer_prune import LayerPruneStep
from kit.steps.lowrank import LowRankStep
from kit.steps.metrics import MetricsStep
from kit.steps.prune import (
    GATES,
    GRANULARITIES,
    MASK_GRANULARITIES,
    PRUNE_METHODS,
    SCOPES,
    THRESHOLD_KINDS,
    LayerOverride,
    PruneStep,
)
from kit.steps.quantize import QUANT_MODES, QuantizeStep
from kit.steps.regularize import REGULARIZERS, RegularizeStep
from kit.steps.structured import StructuredStep

RECIPE_DIR = Path(__file__).parent / "recipes"
_TOP = ("name", "description", "seed")


@dataclass
class Recipe:
    """A recipe: its name, description, seed and the config of each step it has, keyed by section name.

    `recipe.prune`, `recipe.finetune`, ... read (None when absent) and set (None removes) a step's config for
    every registered step.
    """

    name: str = "recipe"
    description: str = ""
    seed: int = 0
    steps: dict[str, Any] = field(default_factory=dict)
    source: str = field(default="", compare=False)  # the TOML text it was read from

    def __post_init__(self) -> None:
        for spec in registry.STEPS:
            if spec.required and spec.name not in self.steps:
                self.steps[spec.name] = spec.config()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "steps":
            raise AttributeError(name)
        if registry.get(name) is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return self.steps.get(name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("name", "description", "seed", "steps", "source") or registry.get(name) is None:
            object.__setattr__(self, name, value)
        elif value is None:
            self.steps.pop(name, None)
        else:
            self.steps[name] = value

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "description": self.description, "seed": self.seed}
        for spec in registry.STEPS:
            config = self.steps.get(spec.name)
            d[spec.name] = None if config is None else asdict(config)
        return d


def builtin_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.toml"))


def load_recipe(name_or_path: str | Path) -> Recipe:
    """A built-in recipe name (`default`, `best`, ...) or a path to a TOML file."""
    path = Path(name_or_path)
    if path.suffix != ".toml" and not path.exists():
        path = RECIPE_DIR / f"{name_or_path}.toml"
        if not path.is_file():
            raise RecipeError(f"no recipe {str(name_or_path)!r}",
                              f"built-in recipes: {', '.join(builtin_recipes())}; or give a .toml path")
    if not path.is_file():
        raise RecipeError(f"recipe file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise RecipeError(f"recipe file {path} is not UTF-8 text ({e.reason} at byte {e.start})",
                          "a recipe is a TOML file; save it as UTF-8") from None
    except OSError as e:
        raise RecipeError(f"cannot read recipe file {path}: {e.strerror}") from None
    return parse_recipe(text, str(path))


def parse_recipe(text: str, where: str = "recipe") -> Recipe:
    """`where` names the text in errors: a file name, or what the text is when it is not a file."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"{where}: not valid TOML: {e}") from None
    v = TomlFile(text, where, "recipe", error=RecipeError, data=data)
    top = v.table(data, (), {*_TOP, *registry.names()})
    r = Recipe(source=text)
    r.name = v.get(top, (), "name", str, Path(where).stem)
    r.description = v.get(top, (), "description", str, "")
    r.seed = v.get(top, (), "seed", int, 0, check=lambda x: 0 <= x < 2**32, allowed="0 to 2**32 - 1")
    for spec in registry.STEPS:
        if spec.name in top:
            r.steps[spec.name] = spec.parse(v, top[spec.name])
    if "finetune" not in top and any(s.needs_finetune and s.name in top for s in registry.STEPS):
        r.finetune = FinetuneStep()  # masks are applied during training steps; surgery needs recovery
    return r


def write_recipe(recipe: Recipe) -> str:
    """TOML text that `parse_recipe` turns back into `recipe`: the keys that differ from their defaults."""
    doc: dict[str, Any] = {"name": recipe.name, "description": recipe.description, "seed": recipe.seed}
    for spec in registry.STEPS:
        config = recipe.steps.get(spec.name)
        if config is not None:
            doc[spec.name] = spec.table(config)
    return tomli_w.dumps(doc)


__all__ = ["GATES", "GRANULARITIES", "MASK_GRANULARITIES", "PRUNE_METHODS", "QUANT_MODES",
           "RECIPE_DIR", "REGULARIZERS", "RUNTIMES", "SCOPES", "THRESHOLD_KINDS", "Augment", "ClusterStep",
           "ConvertStep", "Distill", "FinetuneStep", "LayerOverride", "LayerPruneStep", "LowRankStep",
           "MetricsStep", "PruneStep", "QuantizeStep", "Recipe", "RegularizeStep", "StructuredStep",
           "builtin_recipes", "load_recipe", "parse_recipe", "write_recipe"]
