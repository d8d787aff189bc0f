"""The report of one compression run (report.md): a comparison table, per-layer sparsity, each step's section
and plots (Markdown + PNG). The pipeline writes it once, whole."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kit.core.tables import format_table


def _classifier(result) -> bool:
    task = getattr(result, "task", None)
    return task is None or task.classifier


def _has_auc(result) -> bool:
    return any(c.auc is not None for a in [result.baseline, *result.artifacts] for c in a.checks)


def comparison_rows(result) -> list[list]:
    """One row per artifact: size, the task's figures on the first runtime that runs it correctly, and fidelity
    to the Keras model it was converted from on LiteRT (top-1 agreement, or cosine similarity of the outputs)."""
    from kit.core.artifact import first_correct

    base = result.baseline
    classifier, auc = _classifier(result), _has_auc(result)
    rows = []
    for a in [base, *result.artifacts]:
        lit = a.check_on("litert")
        lit = lit if lit and lit.loads else None
        first = first_correct(a.checks)
        if classifier:
            figures = [_pct(a.accuracy), _pct(lit.agreement if lit else None)]
        else:
            figures = [None if first is None or first.mse is None else f"{first.mse:.4g}",
                       None if lit is None or lit.cosine is None else f"{lit.cosine:.4f}"]
            if auc:
                figures.append(_pct(first.auc if first else None))
        rows.append([a.name, "yes" if a.shipped else "no", a.bytes, a.gzip_bytes, f"{base.bytes / a.bytes:.1f}x",
                     *figures, ", ".join(a.runtimes) or "none"])
    return rows


COMPARISON_HEADERS = ["artifact", "shipped", "bytes", "gzip", "vs float32", "top-1", "agree", "runs correctly on"]


def comparison_headers(result) -> list[str]:
    """COMPARISON_HEADERS for a classifier; MSE, cosine (and ROC AUC with anomaly labels) for the other tasks."""
    if _classifier(result):
        return COMPARISON_HEADERS
    return [*COMPARISON_HEADERS[:5], "mse", "cosine", *(["roc auc"] if _has_auc(result) else []),
            "runs correctly on"]


@dataclass
class ReportInput:
    """What every section of report.md may read: the run, the compressed model, the image layout, the folder."""

    result: Any
    model: Any
    image_shape: tuple[int, ...] | None
    out: Path


def _artifacts(r: ReportInput) -> str:
    if _classifier(r.result):
        note = "`agree` = top-1 agreement with the Keras model that was converted, on LiteRT."
    else:
        note = (f"Task: {r.result.task.name} ({r.result.task.how}). " + _TASK_NOTES[r.result.task.name]
                + " `cosine` = mean cosine similarity of the outputs with the Keras model that was converted, "
                  "on LiteRT.")
    return "\n".join(["## Artifacts", "", format_table(comparison_headers(r.result), comparison_rows(r.result),
                                                       markdown=True), "", note, ""])


_TASK_NOTES = {
    "autoencoder": "`mse` = reconstruction error against the inputs; `roc auc` = area under the ROC curve of the "
                   "per-sample reconstruction MSE as anomaly score against the 0/1 labels.",
    "regression": "`mse` = mean squared error against the labels.",
}


def _per_runtime(r: ReportInput) -> str:
    rows = []
    classifier = _classifier(r.result)
    for a in [r.result.baseline, *r.result.artifacts]:
        for c in a.checks:
            figures = ([_pct(c.top1), _pct(c.top5), _pct(c.agreement)] if classifier else
                       [c.mse, c.cosine, _pct(c.auc) if c.auc is not None else c.auc_note])
            rows.append([a.name, c.runtime, "yes" if c.loads else "no", *figures, c.max_abs_error,
                         (c.problem or "")[:140]])
    names = ["top-1", "top-5", "agree"] if classifier else ["mse", "cosine", "roc auc"]
    return "\n".join(["## Per runtime", "", format_table(["artifact", "runtime", "loads", *names, "max abs err",
                                                         "problem"], rows, markdown=True), ""])


def _not_shipped(r: ReportInput) -> str:
    rejected = [a for a in r.result.artifacts if not a.shipped]
    return "\n".join(["## Not shipped", ""] + [f"- `{a.name}`: {a.reason}" for a in rejected] + [""]) if rejected else ""


def _keras_accuracy(r: ReportInput) -> str:
    if _classifier(r.result):
        return "\n".join(["## Keras accuracy", ""]
                         + [f"- {k}: {_pct(v)}" for k, v in r.result.keras_accuracy.items()] + [""])
    lines = ["## Keras figures", ""]
    for label, scores in r.result.keras_scores.items():
        parts = [f"MSE {scores['mse']:.4g}" if scores.get("mse") is not None else None,
                 f"ROC AUC {_pct(scores['auc'])}" if scores.get("auc") is not None else scores.get("auc_note")]
        lines.append(f"- {label}: " + ("; ".join(p for p in parts if p) or "no figure (no targets)"))
    return "\n".join([*lines, ""])


def _sparsity(r: ReportInput) -> str:
    if not r.result.layer_sparsity:
        return ""
    rows = [[k, "x".join(map(str, v["shape"])), v["params"], f"{v['sparsity']:.1%}"]
            for k, v in r.result.layer_sparsity.items()]
    return "\n".join(["## Sparsity per layer (biases are never pruned)", "",
                      format_table(["weight", "shape", "params", "zeros"], rows, markdown=True), ""])


def _plots(r: ReportInput) -> str:
    lines = []
    for name, fn in (("schedule.png", _plot_schedule), ("sizes.png", _plot_sizes)):
        if fn(r.result, r.out / name):
            lines += [f"![{name}]({name})", ""]
    return "\n".join(lines)


def _time(r: ReportInput) -> str:
    return "\n".join(["## Time", ""] + [f"- {k}: {v:.1f} s" for k, v in r.result.seconds.items()] + [""])


def _steps(r: ReportInput) -> str:
    """Each step that ran renders its own section (kit/steps/<step>.py `render`), in registry order."""
    from kit.steps.registry import STEPS

    sections = [spec.render(r.result.steps[spec.name], r.out) for spec in STEPS
                if r.result.steps.get(spec.name) is not None]
    return "\n".join(s for s in sections if s)


def _pruned(r: ReportInput) -> str:
    from kit.steps.explain import pruned_section

    return pruned_section(r.model, r.out, r.image_shape)


#: report.md, top to bottom: a section is a function of the ReportInput returning Markdown ("" = nothing to say)
SECTIONS: list[Callable[[ReportInput], str]] = [
    _artifacts, _per_runtime, _not_shipped, _keras_accuracy, _sparsity, _plots, _time, _steps, _pruned,
]


def write_report(result, model, image_shape: tuple[int, ...] | None = None) -> Path:
    """report.md of a run; `model` is the compressed model the plots of what was pruned show."""
    r = ReportInput(result, model, image_shape, Path(result.out_dir))
    lines = [f"# Compression report: {result.recipe.name}", "", f"Data: {result.dataset}", ""]
    lines += [text for text in (section(r) for section in SECTIONS) if text]
    path = r.out / "report.md"
    path.write_text("\n".join(lines))
    return path


def _pct(x: float | None) -> str | None:
    return None if x is None else f"{100 * x:.2f}%"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_schedule(result, path: Path) -> bool:
    h = result.history
    if not h or not h.epoch:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if any(s is not None for s in h.sparsity):
        ax.plot(h.epoch, [s or 0 for s in h.sparsity], "o-", color="tab:red", label="sparsity (masks)")
    if any(v is not None for v in h.val_accuracy):
        ax.plot(h.epoch, [v or 0 for v in h.val_accuracy], "s-", color="tab:blue", label="validation accuracy")
    ax.set_xlabel("epoch")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title("accuracy vs sparsity during the schedule")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _plot_sizes(result, path: Path) -> bool:
    plt = _plt()
    arts = [result.baseline, *result.artifacts]
    names = [a.name for a in arts]
    sparse_index = [sum(t["index_bytes"] for t in a.tensors) / 1024 for a in arts]
    weights = [a.weight_bytes / 1024 - si for a, si in zip(arts, sparse_index)]
    graph = [a.graph_bytes / 1024 for a in arts]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.barh(names, weights, label="weight values")
    ax.barh(names, sparse_index, left=weights, label="sparse indices")
    ax.barh(names, graph, left=[w + s for w, s in zip(weights, sparse_index)], label="graph + metadata")
    ax.set_xlabel("KiB")
    ax.set_title("size breakdown per artifact")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
