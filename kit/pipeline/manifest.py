"""manifest.json: the one record of a compression run, written once by the pipeline."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from typing import TYPE_CHECKING

from kit.core.errors import KitError

if TYPE_CHECKING:
    from kit.pipeline.artifacts import Artifact
    from kit.pipeline.compress import RunResult


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


def artifact_dict(a: "Artifact") -> dict:
    d = asdict(a)
    del d["content"]
    d["checks"] = [c.to_dict() for c in a.checks]
    return d


def write_manifest(r: "RunResult", model_name: str) -> Path:
    manifest = {
        "model": model_name,
        "dataset": r.dataset,
        "recipe": r.recipe.to_dict(),
        "recipe_source": r.recipe.source,
        "keras_accuracy": r.keras_accuracy,
        "baseline": artifact_dict(r.baseline),
        "artifacts": [artifact_dict(a) for a in r.artifacts],
        "layer_sparsity": r.layer_sparsity,
        "prune_plan": r.prune_plan,
        "history": asdict(r.history) if r.history else None,
        "techniques": r.techniques,
        "metrics": r.metrics,
        "seconds": {k: round(v, 2) for k, v in r.seconds.items()},
        "versions": library_versions(),
    }
    path = r.out_dir / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2))
    return path


def load_manifest(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "manifest.json"
    if not path.is_file():
        raise KitError(f"{run_dir} has no manifest.json", "pass the output folder of `kit compress`")
    return json.loads(path.read_text())
