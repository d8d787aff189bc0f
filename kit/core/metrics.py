"""What a model computes (its task) and the figures that score it.

A classifier is scored by top-k against class labels; an autoencoder by how well it reconstructs its input
(mean squared error) and, with 0/1 anomaly labels, by the ROC AUC of its anomaly score (each sample's
reconstruction MSE); a regression model by the MSE against its target values. Every task also records its
fidelity to a reference model (the original, or the Keras model an artifact was converted from): top-1
agreement for classifiers, cosine similarity of the outputs for the others, and the largest output
difference for all. Scoring a model with the wrong task's figures gives numbers that look like results
(a top-1 of 0% for an autoencoder), so the task is detected from the model's shapes and the labels, or
declared, and refused when neither settles it.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from kit.core.errors import DataError, KitError

#: what a model computes; "auto" detects it from the model's shapes and the labels
TASKS = ("classification", "autoencoder", "regression")
TASK_CHOICES = ("auto", *TASKS)

#: lowest mean cosine similarity with the outputs of the Keras model an artifact was converted from, for a
#: non-classifier artifact of each precision to ship (a classifier is held to top-1 agreement instead)
MIN_COSINE = {"float32": 0.999, "float16": 0.999, "dynamic": 0.99, "int8": 0.98}

_DECLARE = "declare it: --task classification | autoencoder | regression (a recipe: [convert] task = \"...\")"


@dataclass(frozen=True)
class Task:
    """The task a run or an evaluation scores, and how it was settled (detected from what, or declared)."""

    name: str
    how: str

    @property
    def classifier(self) -> bool:
        return self.name == "classification"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "how": self.how, "metric": gate_metric_doc(self.name)}


def _count(shape: tuple) -> int | None:
    dims = [d for d in shape if d is not None]
    return int(np.prod(dims)) if len(dims) == len(shape) else None


def _integer_labels(y: np.ndarray | None) -> bool:
    return y is not None and y.ndim == 1 and (np.issubdtype(y.dtype, np.integer)
                                              or bool(np.all(np.equal(np.mod(y, 1), 0))))


def resolve_task(declared: str | None, input_shape: tuple, output_shape: tuple, y: np.ndarray | None,
                 model: str = "the model") -> Task:
    """The task of a model with these per-sample input/output shapes (batch left out) on labels `y`.

    Detected: outputs shaped like the inputs = an autoencoder; integer labels that index two or more outputs = a
    classifier; labels with one value per output that are not all integers = regression. Anything else, or a
    declared task the shapes and labels contradict, is refused with a KitError.
    """
    declared = declared or "auto"
    if declared not in TASK_CHOICES:
        raise KitError(f"unknown task {declared!r}", f"use one of {', '.join(TASK_CHOICES)}")
    n_in, n_out = _count(tuple(input_shape)), _count(tuple(output_shape))
    same = tuple(input_shape) == tuple(output_shape) or (n_in is not None and n_in == n_out)
    labels = y is not None and len(y) > 0
    fits_classes = (labels and _integer_labels(y) and n_out is not None and n_out >= 2
                    and int(np.min(y)) >= 0 and int(np.max(y)) < n_out)
    one_per_output = labels and n_out is not None and y.reshape(len(y), -1).shape[1] == n_out
    shapes = f"{model} maps inputs of shape {tuple(input_shape)} to outputs of shape {tuple(output_shape)}"
    if declared == "classification":
        if n_out is None or n_out < 2:
            raise KitError(f"{shapes}: a classifier needs one output per class (at least two)",
                           "declare --task regression for a model with one output")
        if labels and not fits_classes:
            top = y.max() if _integer_labels(y) else "non-integer values"
            raise KitError(f"the labels ({top}) are not class indices 0..{n_out - 1} of {model}'s {n_out} outputs",
                           "use class labels for a classifier, or declare the task the model has")
        return Task("classification", "declared")
    if declared == "autoencoder":
        if not same:
            raise KitError(f"{shapes}: an autoencoder's output has its input's shape",
                           "declare --task classification or regression, or evaluate the autoencoder itself")
        return Task("autoencoder", "declared")
    if declared == "regression":
        if labels and not one_per_output:
            raise KitError(f"the labels hold {y.reshape(len(y), -1).shape[1]} value(s) per sample but {model} "
                           f"has {n_out} outputs", "regression targets have one value per model output")
        return Task("regression", "declared")
    if same and n_out is not None and n_out > 1:
        return Task("autoencoder", "detected: outputs shaped like the inputs")
    if fits_classes:
        return Task("classification", "detected: integer labels that index the outputs")
    if one_per_output and not _integer_labels(y):
        return Task("regression", "detected: one non-integer target per output")
    if labels and _integer_labels(y) and n_out == 1:
        raise DataError(f"{model} has 1 output, so top-1 of a classifier means nothing, and the labels are whole "
                        f"numbers up to {int(np.max(y))}, which read as class indices rather than regression targets",
                        "a classifier has one output per class; for a regression model declare --task regression "
                        "(a recipe: [convert] task = \"regression\")")
    if labels and _integer_labels(y):
        outputs = f"{n_out} output{'' if n_out == 1 else 's'}" if n_out is not None else "outputs of unknown size"
        raise DataError(f"the data has labels up to {int(np.max(y))}, but {model} has {outputs}, and they are not "
                        f"shaped like its inputs {tuple(input_shape)}: it is neither a classifier of these labels nor "
                        "an autoencoder", f"use data whose labels are 0..outputs-1, or {_DECLARE}")
    what = "no labels" if not labels else f"labels of shape {y.shape} ({y.dtype})"
    raise KitError(f"cannot tell what {model} computes: {shapes}, with {what}", _DECLARE)


def gate_metric_doc(task: str) -> str:
    """How `[convert] max_accuracy_drop` is read for a task: the figure an artifact may lose against the original."""
    return {"classification": "points of top-1",
            "autoencoder": "points of ROC AUC with 0/1 anomaly labels, else per cent of reconstruction MSE increase",
            "regression": "per cent of MSE increase"}[task]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over samples of the cosine similarity of two output rows (both all-zero: 1, one all-zero: 0).

    A model with one output (a single regression target) has rows of one value, whose cosine is only the sign
    agreement; there the similarity is that of the two output columns over all samples instead."""
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    if a.shape[1] == 1 and len(a):
        a, b = a.T, b.T
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    dot = np.sum(a * b, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.where((na == 0) & (nb == 0), 1.0, np.where((na == 0) | (nb == 0), 0.0, dot / (na * nb)))
    return float(np.mean(c)) if len(c) else float("nan")


def anomaly_scores(out: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Per-sample reconstruction MSE: an autoencoder's anomaly score (higher = more anomalous)."""
    return np.mean((out.reshape(len(out), -1) - x.reshape(len(x), -1).astype(np.float32)) ** 2, axis=1)


def roc_auc(y: np.ndarray, scores: np.ndarray) -> tuple[float | None, str | None]:
    """(ROC AUC, None), or (None, why not) when `y` does not hold both 0 and 1 and nothing else."""
    values = set(np.unique(y).tolist())
    if not values <= {0, 1}:
        return None, f"labels hold {len(values)} values, not 0/1 anomaly labels"
    if len(values) < 2:
        return None, "labels hold one class only; ROC AUC needs normal (0) and anomalous (1) samples"
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y.astype(np.int64), scores)), None


def task_scores(task: str, out: np.ndarray, x: np.ndarray | None, y: np.ndarray | None,
                reference: np.ndarray | None) -> dict[str, Any]:
    """The figures of one model's outputs `out` on inputs `x` for `task` (RuntimeCheck field names)."""
    out = out.reshape(len(out), -1)
    r: dict[str, Any] = {"task": task}
    if task == "classification":
        pred = out.argmax(axis=1)
        if y is not None:
            r["top1"] = float(np.mean(pred == y))
            if out.shape[1] > 5:
                top5 = np.argsort(-out, axis=1)[:, :5]
                r["top5"] = float(np.mean((top5 == y[:, None]).any(axis=1)))
        if reference is not None:
            r["agreement"] = float(np.mean(pred == reference.reshape(len(out), -1).argmax(axis=1)))
    elif task == "autoencoder":
        if x is not None:
            scores = anomaly_scores(out, x)
            r["mse"] = float(np.mean(scores))
            if y is not None:
                r["auc"], r["auc_note"] = roc_auc(y, scores)
    elif task == "regression":
        if y is not None and y.reshape(len(y), -1).shape[1] == out.shape[1]:
            r["mse"] = float(np.mean((out - y.reshape(len(y), -1).astype(np.float32)) ** 2))
    else:
        raise KitError(f"unknown task {task!r}", f"use one of {', '.join(TASKS)}")
    if reference is not None:
        ref = reference.reshape(len(out), -1)
        r["max_abs_error"] = float(np.max(np.abs(out - ref))) if out.size else None
        if task != "classification":
            r["cosine"] = cosine(out, ref)
    return r


def gate_figure(task: str, figures: Mapping[str, Any]) -> tuple[str, float] | None:
    """(metric, value) that `[convert] max_accuracy_drop` compares for a task: top-1 for classifiers, ROC AUC
    for autoencoders with anomaly labels, else MSE. `figures`: `task_scores` or a RuntimeCheck's dict.
    None: not measured."""
    if task == "classification":
        return None if figures.get("top1") is None else ("top1", figures["top1"])
    if task == "autoencoder" and figures.get("auc") is not None:
        return "auc", figures["auc"]
    return None if figures.get("mse") is None else ("mse", figures["mse"])


def loss_against(metric: str, value: float, ref: float) -> float:
    """What an artifact lost against the original, in the unit max_accuracy_drop is read in for `metric`:
    points for top-1 and AUC, per cent of the original's MSE for MSE (0 when the original's MSE is 0 and the
    artifact's is too)."""
    if metric == "mse":
        if ref <= 0:
            return 0.0 if value <= 0 else float("inf")
        return 100.0 * (value - ref) / ref
    return 100.0 * (ref - value)


def describe_loss(metric: str, value: float, ref: float) -> str:
    """`0.0123 vs 0.0120` for MSE, `91.20% vs 93.00%` for the others."""
    if metric == "mse":
        return f"MSE {value:.4g} vs {ref:.4g}"
    return f"{'ROC AUC' if metric == 'auc' else 'top-1'} {value:.2%} vs {ref:.2%}"


#: display names of the figures gate_figure returns
FIGURE_NAMES = {"top1": "top-1", "auc": "ROC AUC", "mse": "MSE"}


def describe_figure(metric: str, value: float | None) -> str:
    """One figure with its name, as tables show it: `top-1 91.20%`, `ROC AUC 0.912`, `MSE 0.0123`."""
    name = FIGURE_NAMES.get(metric, metric)
    if value is None:
        return f"{name} -"
    if metric == "top1":
        return f"{name} {value:.2%}"
    if metric == "auc":
        return f"{name} {value:.3f}"
    return f"{name} {value:.4g}"


def higher_is_better(metric: str) -> bool:
    """top-1 and ROC AUC grow with quality; an error (MSE) shrinks."""
    return metric != "mse"
