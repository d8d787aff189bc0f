"""The artifacts a farm run profiles: from the compression pipeline or ready .tflite files.

Every artifact is identified by its sha256 and carries what selection and
export need: format (which runtimes load it), size, accuracy and where that
figure came from, the recipe that made it, and its input/output specs.
A model that is not a classifier has no accuracy: it carries its task's own
figure instead (MSE, or ROC AUC with anomaly labels; kit.core.metrics).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.core.artifact import ArtifactRecord, Format, first_correct, sha256_of
from kit.core.metrics import describe_figure, gate_figure
from kit.core.tflite_file import TFLiteInfo, read_tflite
from kit.pipeline.manifest import entry_checks, entry_format, entry_path


@dataclass
class ArtifactEntry(ArtifactRecord):
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
    #: set by `unique_labels` when another artifact of the run has the same model/recipe/name
    label_suffix: str | None = None
    #: what the model computes (kit.core.metrics.TASKS); None: a classifier, or not known (a given file)
    task: str | None = None
    #: a non-classifier's figure in place of accuracy: "mse" or "auc" (kit.core.metrics.gate_figure), its value
    figure: str | None = None
    figure_value: float | None = None

    @property
    def classifier(self) -> bool:
        return self.task in (None, "classification")

    def score(self) -> tuple[str, float] | None:
        """(metric, value) that scores the artifact: top-1 for a classifier, else its task's figure; None: none."""
        if self.classifier:
            return None if self.accuracy is None else ("top1", self.accuracy)
        return None if self.figure is None or self.figure_value is None else (self.figure, self.figure_value)

    def score_text(self) -> str:
        """`accuracy 91.20%` for a classifier (`accuracy -` unknown), else the task's figure by name
        (`MSE 0.0123`, `ROC AUC 0.912`): never a top-1 for a model that has none."""
        if self.classifier:
            return "accuracy -" if self.accuracy is None else f"accuracy {self.accuracy:.2%}"
        if self.figure is None:
            return f"{self.task}: no figure"
        return describe_figure(self.figure, self.figure_value)

    def host_problem(self, runtime: str) -> str | None:
        """Why the host check says the artifact must not run on `runtime`; None if fine or not checked."""
        return self.host_checks.get(runtime)

    @property
    def label(self) -> str:
        """model/recipe/name, unique within a run (see `unique_labels`)."""
        parts = [p for p in (self.model, self.recipe) if p]
        return "/".join([*parts, self.name]) + (f" #{self.label_suffix}" if self.label_suffix else "")

    def to_dict(self) -> dict[str, Any]:
        """run.json's entry: the format under `fmt`, by name."""
        d = super().to_dict()
        d["fmt"] = d.pop("format")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ArtifactEntry":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**{**known, "format": Format.parse(d["fmt"])})


def unique_labels(entries: list[ArtifactEntry]) -> list[ArtifactEntry]:
    """Artifacts that would share a label (two files with one name) get their sha256 prefix appended to it."""
    by_label: dict[str, list[ArtifactEntry]] = {}
    for e in entries:
        e.label_suffix = None
        by_label.setdefault(e.label, []).append(e)
    for same in by_label.values():
        if len(same) > 1:
            for e in same:
                e.label_suffix = e.sha256[:8]
    return entries


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


def infer_format(info: TFLiteInfo) -> Format:
    """float32 | float16 | dynamic | int8 from the weight and activation types; sparse when a constant uses
    TFLite's sparse encoding."""
    weights = {t.dtype for t in info.tensors if t.constant and t.dtype not in ("int32", "int64")}
    io = set(info.inputs) | set(info.outputs)
    inner = {t.dtype for t in info.tensors if not t.constant and t.index not in io}
    if "float16" in weights:
        precision = "float16"
    elif weights & {"int8", "uint8"}:
        precision = "int8" if not inner & {"float32"} else "dynamic"
    else:
        precision = "float32"
    sparse = any(t.constant and t.storage.startswith("sparse") for t in info.tensors)
    return Format.of(precision, sparse)


def from_file(path: str | Path, name: str | None = None, format: Format | None = None, accuracy: float | None = None,
              model: str | None = None, accuracy_source: str | None = None) -> ArtifactEntry:
    p = Path(path)
    data = p.read_bytes()
    info = read_tflite(data)
    return ArtifactEntry(
        path=str(p.resolve()), sha256=sha256_of(data), bytes=len(data), name=name or p.stem,
        format=format or infer_format(info), model=model, accuracy=accuracy,
        accuracy_source=accuracy_source if accuracy is not None else None,
        inputs=tensor_specs(info, info.inputs), outputs=tensor_specs(info, info.outputs),
    )


def from_manifest(manifest: dict[str, Any], out_dir: Path, model: str) -> list[ArtifactEntry]:
    """The shipped artifacts (and the float32 baseline) of one `kit.pipeline.compress.compress` run, and those
    only the host's frontier set aside: correct and within the accuracy gate, but beaten on this host's latency
    and size, which a device's own measurement may overturn.

    Paths are resolved here, against `out_dir`: the manifest is never rewritten.
    """
    recipe = manifest["recipe"]["name"]
    text = manifest.get("recipe_source") or ""
    recipe_sha = sha256_of(text.encode())
    task = (manifest.get("task") or {}).get("name", "classification")  # manifests before tasks: classifiers
    dominated = set(((manifest.get("frontier") or {}).get("dominated") or {}))
    entries = []
    for a in [manifest["baseline"], *manifest["artifacts"]]:
        path = entry_path(a, out_dir)
        if not (a["shipped"] or a["name"] in dominated) or path is None:
            continue
        checks = entry_checks(a)
        ran = first_correct(checks)
        figure = None if ran is None else gate_figure(task, ran.to_dict())
        accuracy = figure[1] if figure is not None and task == "classification" else None
        source = None if accuracy is None else f"top-1 on the test split, {ran.runtime} on the host"
        entry = from_file(path, name=a["name"], format=entry_format(a), accuracy=accuracy, model=model,
                          accuracy_source=source)
        if task != "classification":
            entry.task = task
            entry.figure, entry.figure_value = figure if figure is not None else (None, None)
        if not a["name"].startswith("baseline"):
            entry.recipe, entry.recipe_sha256, entry.recipe_text = recipe, recipe_sha, text
        entry.host_checks = {c.runtime: c.problem for c in checks}
        entries.append(entry)
    return entries
