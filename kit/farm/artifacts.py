"""The artifacts a farm run profiles: from the compression pipeline or ready .tflite files.

Every artifact is identified by its sha256 and carries what selection and
export need: format (which runtimes load it), size, accuracy and where that
figure came from, the recipe that made it, and its input/output specs.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kit.core.tflite_file import TFLiteInfo, read_tflite


@dataclass
class ArtifactEntry:
    sha256: str
    path: str
    name: str
    fmt: str
    bytes: int
    model: str | None = None
    recipe: str | None = None
    recipe_sha256: str | None = None
    recipe_text: str | None = None
    accuracy: float | None = None
    accuracy_source: str | None = None
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    #: runtime -> None when the pipeline's host check ran it correctly, else the problem (empty: not checked)
    host_checks: dict[str, str | None] = field(default_factory=dict)

    def host_problem(self, runtime: str) -> str | None:
        """Why the host check says the artifact must not run on `runtime`; None if fine or not checked."""
        return self.host_checks.get(runtime)

    @property
    def label(self) -> str:
        """Unique enough for tables and plots: model/recipe/name."""
        parts = [p for p in (self.model, self.recipe) if p]
        return "/".join([*parts, self.name])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ArtifactEntry":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def tensor_specs(info: TFLiteInfo, indices: list[int]) -> list[dict[str, Any]]:
    """Name, shape, dtype and quantization of graph inputs or outputs, as an app build checks them."""
    out = []
    for i in indices:
        t = info.tensor(i)
        q = t.quantization
        out.append({"name": t.name, "shape": list(t.shape), "dtype": t.dtype,
                    "quantization": None if q is None or q.scale is None else
                    {"scale": q.scale, "zero_point": q.zero_point}})
    return out


def infer_format(info: TFLiteInfo) -> str:
    """float32 | float16 | dynamic | int8, plus `-sparse` when a constant uses TFLite's sparse encoding."""
    weights = {t.dtype for t in info.tensors if t.constant and t.dtype not in ("int32", "int64")}
    io = set(info.inputs) | set(info.outputs)
    inner = {t.dtype for t in info.tensors if not t.constant and t.index not in io}
    if "float16" in weights:
        fmt = "float16"
    elif weights & {"int8", "uint8"}:
        fmt = "int8" if not inner & {"float32"} else "dynamic"
    else:
        fmt = "float32"
    sparse = any(t.constant and t.storage.startswith("sparse") for t in info.tensors)
    return fmt + ("-sparse" if sparse else "")


def from_file(path: str | Path, name: str | None = None, fmt: str | None = None, accuracy: float | None = None,
              model: str | None = None, accuracy_source: str | None = None) -> ArtifactEntry:
    p = Path(path)
    data = p.read_bytes()
    info = read_tflite(data)
    return ArtifactEntry(
        sha256=hashlib.sha256(data).hexdigest(), path=str(p.resolve()), name=name or p.stem,
        fmt=fmt or infer_format(info), bytes=len(data), model=model, accuracy=accuracy,
        accuracy_source=accuracy_source if accuracy is not None else None,
        inputs=tensor_specs(info, info.inputs), outputs=tensor_specs(info, info.outputs),
    )


def from_manifest(manifest: dict[str, Any], out_dir: Path, model: str) -> list[ArtifactEntry]:
    """The shipped artifacts (and the float32 baseline) of one `kit.pipeline.compress.compress` run."""
    recipe = manifest["recipe"]["name"]
    text = manifest.get("recipe_source") or ""
    recipe_sha = hashlib.sha256(text.encode()).hexdigest()
    entries = []
    for a in [manifest["baseline"], *manifest["artifacts"]]:
        if not a["shipped"] or not a.get("path"):
            continue
        path = Path(a["path"])
        path = path if path.is_absolute() else out_dir / path
        if not path.is_file():
            path = out_dir / Path(a["path"]).name
        accuracy, source = _accuracy(a)
        baseline = a["name"].startswith("baseline")
        entry = from_file(path, name=a["name"], fmt=a["fmt"] + ("-sparse" if a["sparse"] else ""),
                          accuracy=accuracy, model=model, accuracy_source=source)
        if not baseline:
            entry.recipe, entry.recipe_sha256, entry.recipe_text = recipe, recipe_sha, text
        entry.host_checks = {c["runtime"]: c.get("problem") for c in a.get("checks", [])}
        entries.append(entry)
    return entries


def _accuracy(a: dict[str, Any]) -> tuple[float | None, str | None]:
    """Top-1 from the first runtime that ran the artifact correctly on the host (pipeline checks)."""
    for c in a.get("checks", []):
        if c.get("loads") and not c.get("problem") and c.get("top1") is not None:
            return c["top1"], f"top-1 on the test split, {c['runtime']} on the host"
    return None, None
