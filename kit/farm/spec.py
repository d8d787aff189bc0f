"""`pipeline.toml`: what `kit run` compresses, where it profiles, what must hold, what it exports.

    name = "digits-release"
    farm = "farm.toml"
    select = ["phone-mid", "mcu"]         # device names, classes, profiles, chipsets or tags; all when absent
    objective = "accuracy"                # rank artifacts meeting the constraints by accuracy | latency | size

    [model]                               # compress this model with these recipes ...
    path = "lenet.h5"                     # a Keras file or a built-in model name
    data = "digits"
    recipes = ["default", "recipes/small.toml"]

    [[artifact]]                          # ... and/or profile ready .tflite files
    path = "models/kws.tflite"
    accuracy = 0.91

    [settings]                            # every job; [settings.class.NAME] overrides per device class
    runs = 50

    [constraints]                         # every class; [constraints.class.NAME] overrides per class
    min_accuracy = 0.95

    [export]
    android = "app/src/main/assets/models"

Relative paths are taken from the pipeline file's folder.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.core.artifact import Format
from kit.core.paths import component_problem, find_collision
from kit.core.toml import TomlFile
from kit.core.vocab import DELEGATES
from targets.base import RunSettings
from targets.profiles import FORMATS

OBJECTIVES = ("accuracy", "latency", "size")
SPREADS = ("each", "pool")
BACKENDS = ("local", "ray")
STRATEGIES = ("none", "mirrored")
_TOP = {"name", "farm", "select", "out", "store", "objective", "model", "artifact", "settings", "scheduler",
        "compute", "constraints", "export"}
_SETTINGS = {"runs", "warmup", "threads", "instances", "delegate", "core_mask", "input", "timeout_s"}
_CONSTRAINTS = {"max_latency_ms", "max_flash_bytes", "max_ram_bytes", "min_accuracy"}


@dataclass
class ArtifactInput:
    """A ready .tflite file named in the pipeline file; its record (hash, size, format) is read from the file."""

    path: Path
    name: str | None = None
    accuracy: float | None = None
    format: Format | None = None  # read from the file when None
    model: str | None = None


@dataclass
class ModelInput:
    source: str  # a file path (resolved) or a built-in model name
    data: str
    recipes: list[str]
    include_baseline: bool = True
    teacher_epochs: int = 20
    eval_samples: int | None = None


@dataclass
class Constraints:
    max_latency_ms: float | None = None
    max_flash_bytes: int | None = None
    max_ram_bytes: int | None = None
    min_accuracy: float | None = None

    def merged(self, override: "Constraints") -> "Constraints":
        return Constraints(**{k: v if v is not None else getattr(self, k)
                              for k, v in vars(override).items()})

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v is not None}


@dataclass
class ExportSpec:
    android: Path | None = None
    firmware: Path | None = None
    labels: Path | None = None
    normalisation: dict[str, Any] | None = None
    board: str = "nucleo_l4r5zi"


@dataclass
class PipelineSpec:
    name: str
    path: Path
    farm: Path
    out: Path
    store: Path
    select: list[str] = field(default_factory=list)
    objective: str = "accuracy"
    model: ModelInput | None = None
    artifacts: list[ArtifactInput] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    class_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    spread: str = "each"
    max_attempts: int = 2
    job_timeout_s: float | None = None
    probe_timeout_s: float = 30.0
    backend: str = "local"
    workers: int = 1
    ray_address: str | None = None
    distribute: str = "none"
    constraints: Constraints = field(default_factory=Constraints)
    class_constraints: dict[str, Constraints] = field(default_factory=dict)
    export: ExportSpec = field(default_factory=ExportSpec)

    def run_settings(self, device_class: str) -> RunSettings:
        merged = {**self.settings, **self.class_settings.get(device_class, {})}
        merged.setdefault("timeout_s", 300.0)
        if "input" in merged:
            merged["input_path"] = str(merged.pop("input"))
        return RunSettings(**merged)

    def timeout_for(self, settings: RunSettings) -> float:
        """A whole job (connect, deploy, run, collect, clean up) may take the run's timeout plus two minutes."""
        return self.job_timeout_s if self.job_timeout_s is not None else settings.timeout_s + 120.0

    def constraints_for(self, device_class: str) -> Constraints:
        return self.constraints.merged(self.class_constraints.get(device_class, Constraints()))


def load_pipeline(path: str | Path) -> PipelineSpec:
    doc = TomlFile.load(path, "pipeline file")
    return parse_pipeline(doc, Path(path).resolve().parent)


def parse_pipeline(doc: TomlFile, base: Path) -> PipelineSpec:
    top = doc.table(doc.data, (), _TOP)
    name = doc.get(top, (), "name", str, Path(doc.where).stem)
    problem = component_problem(name)
    if problem is not None:  # the name is the default run folder
        doc.fail(("name",), f"is {name!r}, which {problem}",
                 "the run name becomes a folder name: use letters, digits, '-', '_' and '.'")
    farm = doc.get(top, (), "farm", str, required=True, allowed='the farm file, e.g. farm = "farm.toml"')
    out = _path(base, doc.get(top, (), "out", str, f"runs/{name}"))
    spec = PipelineSpec(
        name=name, path=Path(doc.where).resolve(), farm=_path(base, farm), out=out,
        store=_path(base, doc.get(top, (), "store", str, str(out / "results.db"))),
        select=doc.strings(top, (), "select"),
        objective=doc.choice(top, (), "objective", OBJECTIVES, "accuracy"),
    )
    if "model" in top:
        spec.model = _model(doc, top["model"], base)
    if "artifact" in top:
        spec.artifacts = [_artifact(doc, i, t, base) for i, t in enumerate(doc.tables(top["artifact"], ("artifact",)))]
    if spec.model is None and not spec.artifacts:
        doc.fail(("model",), "is missing, and no [[artifact]] is given: there is nothing to profile",
                 "add [model] with path, data and recipes, or [[artifact]] tables with .tflite paths")
    settings = doc.table(top.get("settings", {}), ("settings",), _SETTINGS | {"class"})
    spec.settings = _settings(doc, ("settings",), settings, base)
    for cls, t in doc.table(settings.get("class", {}), ("settings", "class"), None).items():
        p = ("settings", "class", cls)
        spec.class_settings[cls] = _settings(doc, p, doc.table(t, p, _SETTINGS), base)
    _scheduler(doc, doc.table(top.get("scheduler", {}), ("scheduler",),
                              {"spread", "max_attempts", "job_timeout_s", "probe_timeout_s"}), spec)
    _compute(doc, doc.table(top.get("compute", {}), ("compute",),
                            {"backend", "workers", "ray_address", "distribute"}), spec)
    constraints = doc.table(top.get("constraints", {}), ("constraints",), _CONSTRAINTS | {"class"})
    spec.constraints = _constraints(doc, ("constraints",), constraints)
    for cls, t in doc.table(constraints.get("class", {}), ("constraints", "class"), None).items():
        p = ("constraints", "class", cls)
        spec.class_constraints[cls] = _constraints(doc, p, doc.table(t, p, _CONSTRAINTS))
    if "export" in top:
        spec.export = _export(doc, top["export"], base)
    return spec


def _path(base: Path, text: str) -> Path:
    p = Path(text).expanduser()
    return p if p.is_absolute() else base / p


def _model(doc: TomlFile, t: Any, base: Path) -> ModelInput:
    p = ("model",)
    t = doc.table(t, p, {"path", "data", "recipes", "include_baseline", "teacher_epochs", "eval_samples"})
    source = doc.get(t, p, "path", str, required=True, allowed="a Keras model file or a built-in model name")
    from kit.models import ZOO

    if source not in ZOO:
        resolved = _path(base, source)
        if not resolved.exists():
            doc.fail((*p, "path"), f"is {source!r}: no such file, and not a built-in model",
                     f"built-in models: {', '.join(ZOO)}")
        source = str(resolved)
    data = doc.get(t, p, "data", str, required=True, allowed='a data set: "digits", "mnist5k" or an .npz path')
    if data.endswith(".npz"):
        data = str(_path(base, data))
    recipes = doc.strings(t, p, "recipes", ["default"])
    if not recipes:
        doc.fail((*p, "recipes"), "is empty", 'name at least one recipe, e.g. recipes = ["default"]')
    resolved_recipes = []
    for r in recipes:
        path = _path(base, r)
        resolved_recipes.append(str(path) if r.endswith(".toml") else r)
        if r.endswith(".toml") and not path.is_file():
            doc.fail((*p, "recipes"), f"names {r!r}, which does not exist")
    _check_recipe_folders(doc, p, resolved_recipes)
    return ModelInput(
        source=source, data=data, recipes=resolved_recipes,
        include_baseline=doc.get(t, p, "include_baseline", bool, True),
        teacher_epochs=doc.get(t, p, "teacher_epochs", int, 20, lambda n: 1 <= n <= 1000, "1 to 1000"),
        eval_samples=doc.get(t, p, "eval_samples", int, None, lambda n: n >= 1, ">= 1"),
    )


def _check_recipe_folders(doc: TomlFile, p: tuple, recipes: list[str]) -> None:
    """Each recipe's `name` becomes its compress folder: it must be one safe name, and no two may share one."""
    from kit.recipe import load_recipe

    names = []
    for r in recipes:
        recipe_name = load_recipe(r).name
        problem = component_problem(recipe_name)
        if problem is not None:
            doc.fail((*p, "recipes"), f"names {r!r}, whose name {recipe_name!r} {problem}",
                     "the recipe's `name` becomes a folder name: use letters, digits, '-', '_' and '.'")
        names.append(recipe_name)
    clash = find_collision(names)
    if clash is not None:
        doc.fail((*p, "recipes"), f"lists two recipes named {clash[0]!r} and {clash[1]!r}, which would share "
                 "one compress folder", "give each recipe its own `name`")


def _artifact(doc: TomlFile, i: int, t: dict, base: Path) -> ArtifactInput:
    p = ("artifact", i)
    doc.table(t, p, {"path", "name", "accuracy", "format", "model"})
    path = _path(base, doc.get(t, p, "path", str, required=True, allowed="a .tflite file"))
    if not path.is_file():
        doc.fail((*p, "path"), f"is {str(path)!r}: no such file")
    fmt = doc.get(t, p, "format", str, None)
    if fmt is not None and fmt not in FORMATS:
        doc.fail((*p, "format"), f"is {fmt!r}, not an artifact format", f"use one of {', '.join(FORMATS)}")
    return ArtifactInput(path=path, name=doc.get(t, p, "name", str, None),
                         accuracy=doc.get(t, p, "accuracy", float, None, lambda x: 0 <= x <= 1, "0 to 1"),
                         format=None if fmt is None else Format.parse(fmt), model=doc.get(t, p, "model", str, None))


def _settings(doc: TomlFile, p: tuple, t: dict, base: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, lo in (("runs", 1), ("warmup", 0), ("threads", 1), ("instances", 1)):
        if key in t:
            out[key] = doc.get(t, p, key, int, check=lambda n, lo=lo: n >= lo, allowed=f">= {lo}")
    if "delegate" in t:
        out["delegate"] = doc.choice(t, p, "delegate", DELEGATES, "default")
    if "core_mask" in t:
        mask = doc.get(t, p, "core_mask", str)
        try:
            int(mask, 16)
        except ValueError:
            doc.fail((*p, "core_mask"), f"is {mask!r}, not a hex CPU mask", 'e.g. core_mask = "f0"')
        out["core_mask"] = mask
    if "input" in t:
        path = _path(base, doc.get(t, p, "input", str))
        if not path.is_file():
            doc.fail((*p, "input"), f"is {str(path)!r}: no such file", "a .npy file with one input batch")
        out["input"] = path
    if "timeout_s" in t:
        out["timeout_s"] = doc.get(t, p, "timeout_s", float, check=lambda x: x > 0, allowed="> 0 seconds")
    return out


def _scheduler(doc: TomlFile, t: dict, spec: PipelineSpec) -> None:
    p = ("scheduler",)
    spec.spread = doc.choice(t, p, "spread", SPREADS, "each")
    spec.max_attempts = doc.get(t, p, "max_attempts", int, 2, lambda n: 1 <= n <= 10, "1 to 10")
    spec.job_timeout_s = doc.get(t, p, "job_timeout_s", float, None, lambda x: x > 0, "> 0 seconds")
    spec.probe_timeout_s = doc.get(t, p, "probe_timeout_s", float, 30.0, lambda x: x > 0, "> 0 seconds")


def _compute(doc: TomlFile, t: dict, spec: PipelineSpec) -> None:
    p = ("compute",)
    spec.backend = doc.choice(t, p, "backend", BACKENDS, "local")
    spec.workers = doc.get(t, p, "workers", int, 1, lambda n: 1 <= n <= 256, "1 to 256")
    spec.ray_address = doc.get(t, p, "ray_address", str, None)
    spec.distribute = doc.choice(t, p, "distribute", STRATEGIES, "none")


def _constraints(doc: TomlFile, p: tuple, t: dict) -> Constraints:
    return Constraints(
        max_latency_ms=doc.get(t, p, "max_latency_ms", float, None, lambda x: x > 0, "> 0"),
        max_flash_bytes=doc.get(t, p, "max_flash_bytes", int, None, lambda n: n > 0, "> 0"),
        max_ram_bytes=doc.get(t, p, "max_ram_bytes", int, None, lambda n: n > 0, "> 0"),
        min_accuracy=doc.get(t, p, "min_accuracy", float, None, lambda x: 0 <= x <= 1, "0 to 1"),
    )


def _export(doc: TomlFile, t: Any, base: Path) -> ExportSpec:
    from firmware_tools.project import BOARDS

    p = ("export",)
    t = doc.table(t, p, {"android", "firmware", "labels", "normalisation", "board"})
    labels = doc.get(t, p, "labels", str, None)
    if labels is not None and not _path(base, labels).is_file():
        doc.fail((*p, "labels"), f"is {labels!r}: no such file", "a text file with one label per line")
    norm = None
    if "normalisation" in t:
        norm = doc.table(t["normalisation"], (*p, "normalisation"), {"mean", "std"})
        for key in ("mean", "std"):
            value = norm.get(key)
            values = value if isinstance(value, list) else [value]
            if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                doc.fail((*p, "normalisation", key), f"must be a number or a list of numbers, got {value!r}",
                         "the app computes (x - mean) / std before quantizing the input")
            if key == "std" and any(v == 0 for v in values):
                doc.fail((*p, "normalisation", key), "holds 0: dividing by it is undefined")
    return ExportSpec(
        android=_path(base, t["android"]) if isinstance(t.get("android"), str) else None,
        firmware=_path(base, t["firmware"]) if isinstance(t.get("firmware"), str) else None,
        labels=_path(base, labels) if labels else None,
        normalisation=norm,
        board=doc.choice(t, p, "board", tuple(BOARDS), "nucleo_l4r5zi"),
    )
