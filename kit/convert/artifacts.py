"""Artifacts of one compression run: build each encoding and check it on every runtime; what passes the checks
and the accuracy gate is a candidate, and kit.convert.frontier decides which candidates ship."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.convert import check as checks
from kit.convert.converter import ArtifactSpec, convert
from kit.core.artifact import (
    ArtifactRecord,
    Format,
    RuntimeCheck,
    correct_runtimes,
    first_correct,
    sha256_of,
)
from kit.core.metrics import (
    MIN_COSINE,
    describe_loss,
    gate_figure,
    gate_metric_doc,
    loss_against,
)
from kit.core.tflite_file import read_tflite
from kit.core.vocab import MIN_AGREEMENT, check_runtimes
from kit.data import Dataset

if TYPE_CHECKING:
    from kit.recipe import Recipe


@dataclass
class Artifact(ArtifactRecord):
    """One built encoding of the compressed model: what it is, how each runtime ran it, whether it ships.

    `path` is empty until `place` writes the file where its shipping decision puts it.
    """

    gzip_bytes: int
    shipped: bool
    reason: str
    checks: list[RuntimeCheck] = field(default_factory=list)
    tensors: list[dict] = field(default_factory=list)
    weight_bytes: int = 0
    graph_bytes: int = 0
    #: median latency on the first target runtime on this host (kit.convert.frontier), with how it was measured;
    #: None for an artifact that was not a candidate, or with `latency_note` saying why it was not measured
    latency_us: float | None = None
    latency_method: str | None = None
    latency_note: str | None = None
    #: the shipped artifact the recipe's `[convert] objective` prefers
    default: bool = False
    #: the flatbuffer itself, written to `path` once shipping is decided; not part of the manifest
    content: bytes = field(default=b"", repr=False, compare=False)

    def check_on(self, runtime: str) -> RuntimeCheck | None:
        return next((c for c in self.checks if c.runtime == runtime), None)

    @property
    def runtimes(self) -> list[str]:
        """The runtimes that run the artifact correctly, in order of preference."""
        return correct_runtimes(self.checks)

    @property
    def accuracy(self) -> float | None:
        """Top-1 on the first runtime that runs the artifact correctly, in order of preference (None for a model
        that is not a classifier: see `figures`)."""
        c = first_correct(self.checks)
        return None if c is None else c.top1

    @property
    def storage(self) -> str:
        """How the converter stored the weights (it picks each tensor's sparse encoding from its zeros; there is
        no switch for it): "dense", or e.g. "1x16 blocks x2" or "unstructured (CSR) x1, 1x4 blocks x1"."""
        return storage_summary(t.get("storage", "dense") for t in self.tensors)

    @property
    def figures(self) -> str:
        """The task's figures on the first runtime that runs the artifact correctly, for logs and tables."""
        c = first_correct(self.checks)
        return "-" if c is None else figures_text(c)

    def to_dict(self) -> dict[str, Any]:
        """The manifest's entry: `fmt` (the precision) and `sparse` as earlier manifests spell them, and `format`."""
        return {
            "name": self.name, "fmt": self.format.precision, "sparse": self.format.sparse, "format": self.format.name,
            "path": self.path, "bytes": self.bytes, "gzip_bytes": self.gzip_bytes, "sha256": self.sha256,
            "shipped": self.shipped, "reason": self.reason, "checks": [c.to_dict() for c in self.checks],
            "tensors": self.tensors, "weight_bytes": self.weight_bytes, "graph_bytes": self.graph_bytes,
            "latency": None if self.latency_us is None else {"median_us": self.latency_us,
                                                             "method": self.latency_method},
            "latency_note": self.latency_note, "default": self.default,
        }


def storage_summary(storages) -> str:
    """"dense" when no tensor is sparse-encoded, else each sparse encoding with its number of tensors."""
    counts = Counter(s for s in storages if s != "dense")
    if not counts:
        return "dense"
    label = {"sparse CSR": "unstructured (CSR)"}
    return ", ".join(f"{label.get(s, s.removeprefix('sparse block ') + ' blocks')} x{n}"
                     for s, n in sorted(counts.items()))


def figures_text(c: RuntimeCheck) -> str:
    """`acc 97.50%` for a classifier; `mse 0.0123 cos 0.9990 auc 91.20%` for the others (what was measured)."""
    if (c.task or "classification") == "classification":
        return f"acc {_pct(c.top1)}"
    parts = [f"mse {c.mse:.4g}" if c.mse is not None else None, f"cos {c.cosine:.4f}" if c.cosine is not None else None,
             f"auc {_pct(c.auc)}" if c.auc is not None else None]
    return " ".join(p for p in parts if p) or "-"


@dataclass
class AccuracyGate:
    """Nothing ships that lost more than `max_drop` of the task's figure against the original model.

    The figure (kit.core.metrics.gate_figure) is top-1 for a classifier (a loss in points), ROC AUC for an
    autoencoder scored on 0/1 anomaly labels (points), else the reconstruction or regression MSE (a rise in
    per cent of the original's). The artifact's figure on each target runtime is compared with the original
    model's float32 conversion on the same runtime and the same test split (`baseline`), or with the original
    Keras model where that does not run; agreement with the compressed Keras model alone cannot catch a model
    that collapsed while it was compressed.
    """

    baseline: Artifact | None
    original_keras: float | None
    max_drop: float  # points (top-1, AUC) or per cent (MSE)
    task: str = "classification"

    def reference(self, runtime: str, metric: str) -> tuple[float | None, str]:
        c = self.baseline.check_on(runtime) if self.baseline is not None else None
        figure = gate_figure(self.task, c.to_dict()) if c is not None and c.correct else None
        if figure is not None and figure[0] == metric:
            return figure[1], f"the original model on {runtime}"
        return self.original_keras, "the original Keras model"

    def problem(self, a: Artifact, targets: tuple[str, ...]) -> str | None:
        for c in a.checks:
            figure = gate_figure(self.task, c.to_dict()) if c.correct else None
            if c.runtime not in targets or figure is None:
                continue
            metric, value = figure
            ref, what = self.reference(c.runtime, metric)
            if ref is None:
                continue
            lost = loss_against(metric, value, ref)
            if lost > self.max_drop + 1e-9:
                figures = f"{describe_loss(metric, value, ref)} on the test split; the budget is {self.max_drop:g}"
                if metric == "mse":
                    return (f"loses accuracy: its MSE on {c.runtime} is {lost:.2f} per cent above {what}'s "
                            f"({figures} per cent)")
                return (f"loses {lost:.2f} points of {'ROC AUC' if metric == 'auc' else 'top-1'} on {c.runtime} "
                        f"against {what} ({figures} points)")
        return None

    def advice(self, recipe: Recipe, artifacts: list[Artifact]) -> str:
        lost = [a for a in artifacts if a.reason.startswith("loses")]
        if not lost:
            return "no artifact runs correctly on the target runtimes; see each one's reason"
        hints = ["prune less (lower final_sparsity, or skip the most sensitive layers: `kit sensitivity`)",
                 "recover longer or gentler ([finetune] epochs, a lower learning_rate, [finetune.distill])",
                 "let `kit compress --budget accuracy-drop=P` choose per-layer sparsity",
                 f"or raise [convert] max_accuracy_drop (now {recipe.convert.max_accuracy_drop:g} points)"]
        if self.task != "classification":
            limit = f"or raise [convert] max_accuracy_drop (now {recipe.convert.max_accuracy_drop:g})"
            hints = ["keep a float format ([quantize] mode = [\"none\"] or \"float16\")",
                     ("calibrate int8 on more representative inputs (x_calib in the .npz, [quantize] "
                      "calibration_samples)")]
            if recipe.prune is not None or recipe.finetune is not None:  # trained on the task's MSE loss
                hints += ["prune less (lower final_sparsity)",
                          "recover longer or gentler ([finetune] epochs, a lower learning_rate, [finetune.distill])"]
            return (f"{len(lost)} artifact(s) lost more than the budget ({gate_metric_doc(self.task)}) against the "
                    "original model; try: " + "; ".join([*hints, limit]))
        return (f"{len(lost)} artifact(s) lost more top-1 than the budget against the original model; try: "
                + "; ".join(hints))


def _problem(c: RuntimeCheck, precision: str) -> str | None:
    """Why an artifact must not ship on this runtime: it does not load, or computes something else (top-1
    agreement for classifiers, cosine similarity of the outputs for the other tasks)."""
    if not c.loads:
        return f"does not load on {c.runtime}: {c.error}"
    if c.max_abs_error is not None and not np.isfinite(c.max_abs_error):
        return f"computes non-finite outputs on {c.runtime}"
    if c.cosine is not None and not (c.cosine >= MIN_COSINE[precision]):
        return (f"computes wrong results on {c.runtime}: output cosine similarity with the Keras model "
                f"{c.cosine:.4f} < {MIN_COSINE[precision]:g}")
    if c.agreement is not None and c.agreement < MIN_AGREEMENT[precision]:
        return (f"computes wrong results on {c.runtime}: top-1 agreement with the Keras model "
                f"{c.agreement:.2%} < {MIN_AGREEMENT[precision]:.0%}")
    return None


def place(a: Artifact, out: Path) -> None:
    folder = out if a.shipped else out / "rejected"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{a.name}.tflite"
    path.write_bytes(a.content)
    a.path = str(path)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def build_artifact(model, spec: ArtifactSpec, dataset: Dataset, x_eval, y_eval, out: Path, model_name: str,
                   targets: tuple[str, ...], baseline: bool = False, gate: AccuracyGate | None = None,
                   task: str = "classification") -> Artifact:
    data = convert(model, spec, dataset.x_calib)
    reference = model.predict(x_eval, batch_size=512, verbose=0)
    results = checks.check(data, x_eval, y_eval, reference.reshape(len(x_eval), -1), check_runtimes(targets),
                           task=task)
    info = read_tflite(data)
    for c in results:
        c.problem = _problem(c, spec.precision)
    problems = [c.problem for c in results if c.runtime in targets and c.problem]
    shipped = not problems
    reason = "; ".join(problems)
    name = "baseline-float32" if baseline else spec.name
    a = Artifact(
        path="", sha256=sha256_of(data), bytes=len(data), name=name, format=Format(spec.precision, spec.encoding),
        gzip_bytes=info.gzip_bytes, shipped=shipped, reason=reason or "runs correctly on " + ", ".join(targets),
        checks=results, weight_bytes=info.weight_bytes, graph_bytes=info.graph_bytes,
        tensors=[{"name": t.name, "shape": t.shape, "dtype": t.dtype, "storage": t.storage, "bytes": t.buffer_bytes,
                  "index_bytes": t.sparse_index_bytes,
                  "sparsity": None if t.zero_fraction is None else round(t.zero_fraction, 4)}
                 for t in info.tensors if t.constant],
        content=data,
    )
    lost = gate.problem(a, targets) if gate is not None and shipped else None
    if lost:
        a.shipped, a.reason = False, lost
    if baseline:
        place(a, out)
    return a


def artifacts_for(source, precision: str, io: str, pruned: bool, recipe: Recipe, dataset: Dataset, x_eval, y_eval,
                  out: Path, model_name: str, log, gate: AccuracyGate | None = None,
                  task: str = "classification") -> list[Artifact]:
    """Build and check the dense and/or sparse encoding of one precision (`[convert] sparse`: auto builds both
    for a pruned model). Which of them ships is kit.convert.frontier's decision, once every artifact exists;
    `place` writes the files after it."""
    targets = tuple(recipe.convert.targets)
    mode = recipe.convert.sparse if pruned else "off"
    encodings = [e for e, modes in (("dense", ("auto", "off")), ("sparse", ("auto", "on"))) if mode in modes]
    produced = [build_artifact(source, ArtifactSpec(precision, e, io), dataset, x_eval, y_eval, out, model_name,
                               targets, gate=gate, task=task) for e in encodings]
    for a in produced:
        state = "candidate" if a.shipped else f"not shipped: {a.reason}"
        log(f"  {a.name:16s} {a.bytes:>10,} bytes  {a.figures} (test split)  {state}")
    return produced
