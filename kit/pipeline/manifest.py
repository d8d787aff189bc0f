"""manifest.json: the one record of a compression run, written once by the pipeline.

Readers go through `load_manifest`, which knows every schema version written so
far: version 1 added `schema_version`, each artifact's `format` name and the
optional `budget` section; manifests without a version are read as before.
`task` (what the model computes and how that was settled) and `keras_scores`
(the task's Keras figures) were added within version 1: a manifest without
them is a classifier's, scored by top-1. So were each artifact's `latency`
(median µs and method, on the first target runtime), `latency_note` and
`default`, and the `frontier` section (objective, default and why, who
dominates each candidate that does not ship; kit.convert.frontier): absent,
the run shipped by bytes alone.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kit.core.artifact import Format, RuntimeCheck
from kit.core.errors import KitError
from kit.core.jsonio import write_json
from kit.core.metrics import Task

if TYPE_CHECKING:
    from kit.pipeline.compress import RunResult

#: the task of a run result that does not say (a classifier's, as before tasks existed)
CLASSIFIER = Task("classification", "assumed: the run does not record a task")
#: the manifest layout this kit writes; `load_manifest` refuses a newer one
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"


def library_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    names = ["prunekit", "tensorflow", "tf-keras", "tensorflow-model-optimization", "ai-edge-litert", "tflite-micro",
             "numpy"]
    out = {}
    for n in names:
        try:
            out[n] = version(n)
        except PackageNotFoundError:
            out[n] = None
    return out


def write_manifest(r: RunResult, model_name: str, budget: dict[str, Any] | None = None) -> Path:
    """Write the run's manifest; `budget` is the budget search's section, for its final run."""
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "model": model_name,
        "dataset": r.dataset,
        "recipe": r.recipe.to_dict(),
        "recipe_source": r.recipe.source,
        "task": getattr(r, "task", CLASSIFIER).to_dict(),
        "keras_accuracy": r.keras_accuracy,
        "keras_scores": getattr(r, "keras_scores", {}),
        "baseline": r.baseline.to_dict(),
        "artifacts": [a.to_dict() for a in r.artifacts],
        "layer_sparsity": r.layer_sparsity,
        "prune_plan": r.prune_plan,
        "history": asdict(r.history) if r.history else None,
        "techniques": r.techniques,
        "metrics": r.metrics,
        "seconds": {k: round(v, 2) for k, v in r.seconds.items()},
        "versions": library_versions(),
    }
    convert = getattr(r, "steps", {}).get("convert")
    if getattr(convert, "frontier", None) is not None:
        manifest["frontier"] = convert.frontier.to_dict()
    if r.backed_off:
        manifest["backed_off"] = r.backed_off
    if budget is not None:
        manifest["budget"] = budget
    path = r.out_dir / MANIFEST
    write_json(path, manifest)
    return path


def load_manifest(run_dir: str | Path) -> dict[str, Any]:
    """The manifest of a `kit compress` output folder, refused when a newer kit wrote it."""
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        raise KitError(f"{run_dir} has no {MANIFEST}", "pass the output folder of `kit compress`")
    manifest = json.loads(path.read_text())
    version = manifest.get("schema_version", 0)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise KitError(f"{path} has schema version {version!r}; this kit reads versions up to {SCHEMA_VERSION}",
                       "upgrade prunekit to read it, or compress again with this version")
    return manifest


def entry_format(entry: dict[str, Any]) -> Format:
    """An artifact entry's format; manifests without a schema version spell it only as `fmt` + `sparse`."""
    if "format" in entry:
        return Format.parse(entry["format"])
    return Format.of(entry["fmt"], entry["sparse"])


def entry_checks(entry: dict[str, Any]) -> list[RuntimeCheck]:
    return [RuntimeCheck.from_dict(c) for c in entry.get("checks", [])]


def entry_path(entry: dict[str, Any], run_dir: Path) -> Path | None:
    """Where an artifact's file is now: its recorded path, else the file of that name in `run_dir` or its
    `rejected/` folder (the run folder was moved, or compressed elsewhere and copied here)."""
    if not entry.get("path"):
        return None
    recorded = Path(entry["path"])
    candidates = [recorded if recorded.is_absolute() else run_dir / recorded, run_dir / recorded.name,
                  run_dir / "rejected" / recorded.name]
    return next((p for p in candidates if p.is_file()), candidates[0])
