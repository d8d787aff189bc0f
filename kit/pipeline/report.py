"""The report of one compression run (report.md): a comparison table, per-layer sparsity, each step's section
and plots (Markdown + PNG). The pipeline writes it once, whole."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kit.convert.frontier import LATENCY_TIE, LATENCY_TIE_US
from kit.core.tables import format_table


def _classifier(result) -> bool:
    task = getattr(result, "task", None)
    return task is None or task.classifier


def _has_auc(result) -> bool:
    return any(c.auc is not None for a in [result.baseline, *result.artifacts] for c in a.checks)


def split_of(result) -> str:
    """`test split, 2,000 samples`: where the run's figures were measured (the samples every check scored)."""
    samples = next((c.samples for c in result.baseline.checks if c.loads and c.samples), None)
    return "test split" + ("" if samples is None else f", {samples:,} samples")


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


COMPARISON_HEADERS = ["artifact", "shipped", "bytes", "gzip", "vs float32", "top-1 (test split)", "agree",
                      "runs correctly on"]


def comparison_headers(result) -> list[str]:
    """COMPARISON_HEADERS for a classifier; MSE, cosine (and ROC AUC with anomaly labels) for the other tasks."""
    if _classifier(result):
        return COMPARISON_HEADERS
    return [*COMPARISON_HEADERS[:5], "mse (test split)", "cosine", *(["roc auc (test split)"] if _has_auc(result)
                                                                      else []), "runs correctly on"]


@dataclass
class ReportInput:
    """What every section of report.md may read: the run, the compressed model, the image layout, the folder."""

    result: Any
    model: Any
    image_shape: tuple[int, ...] | None
    out: Path


def _artifacts(r: ReportInput) -> str:
    split = split_of(r.result)
    if _classifier(r.result):
        note = (f"`top-1 (test split)` = on the {split}, on the first runtime that runs the artifact correctly; "
                "`agree` = top-1 agreement with the Keras model that was converted, on LiteRT, on the same split.")
    else:
        note = (f"Task: {r.result.task.name} ({r.result.task.how}). " + _TASK_NOTES[r.result.task.name]
                + " `cosine` = mean cosine similarity of the outputs with the Keras model that was converted, "
                  f"on LiteRT. Every figure on the {split}.")
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
    names = (["top-1 (test split)", "top-5 (test split)", "agree"] if classifier
             else ["mse (test split)", "cosine", "roc auc (test split)"])
    return "\n".join(["## Per runtime", "", format_table(["artifact", "runtime", "loads", *names, "max abs err",
                                                         "problem"], rows, markdown=True), "",
                      f"Every figure on the {split_of(r.result)}.", ""])


def _frontier(r: ReportInput) -> str:
    """The candidates (correct on the targets, within the gate) on the four axes, what ships and the default."""
    convert = r.result.steps.get("convert") if hasattr(r.result, "steps") else None
    decision = getattr(convert, "frontier", None)
    timed = [a for a in r.result.artifacts if a.latency_us is not None or a.latency_note]
    if decision is None or not timed:
        return ""
    classifier = _classifier(r.result)
    rows = []
    for a in timed:
        state = ("default" if a.default else "yes") if a.shipped else "no"
        rows.append([a.name, a.storage, a.bytes, a.gzip_bytes,
                     round(a.latency_us, 2) if a.latency_us is not None else a.latency_note,
                     _pct(a.accuracy) if classifier else a.figures, state, "" if a.shipped else a.reason])
    figure = "top-1 (test split)" if classifier else "figures (test split)"
    lines = ["## Frontier", "",
             ("What ships is every artifact no other one beats at once on bytes on disk, gzip bytes, median latency "
              f"and the task's figure; latencies within {LATENCY_TIE:.0%} or {LATENCY_TIE_US:g} µs of each other "
              "count as equal (timing noise)."), "",
             format_table(["artifact", "weights stored as", "bytes", "gzip", "median us", figure, "shipped",
                           "why not"], rows, markdown=True), "",
             ("The converter picks each weight tensor's encoding from its zeros (1xN blocks or unstructured "
              "CSR, or dense where neither pays); the sparse artifacts are compared as it encoded them."), "",
             (f"Latency: {decision.latency_method or 'not measured'}. Figures on the {split_of(r.result)}, on "
              "the first runtime that runs each artifact correctly."), ""]
    if decision.default:
        lines += [f"Default: `{decision.default}` ({decision.why_default}).", ""]
    return "\n".join(lines)


def _runtime_differences(r: ReportInput) -> str:
    """Where a runtime computes or accepts differently from LiteRT on x86: another architecture's kernels
    (litert-aarch64: NEON, native fp16), another API or another kernel set; every aarch64 check is listed."""
    lines = []
    for a in [r.result.baseline, *r.result.artifacts]:
        x86 = a.check_on("litert")
        for c in a.checks:
            if c.runtime == "litert" or x86 is None:
                continue
            if c.loads != x86.loads:
                refused = f"refused ({(c.error or '')[:160]}), where x86 LiteRT loads it"
                lines.append(f"- `{a.name}` on {c.runtime}: "
                             + ("loads, where x86 LiteRT refuses it" if c.loads else refused))
            elif c.loads and (c.runtime == "litert-aarch64" or (c.litert_agreement or 1.0) < 1.0):
                agree = "" if c.litert_agreement is None else f"top-1 agreement {_pct(c.litert_agreement)}, "
                diff = "-" if c.litert_max_diff is None else f"{c.litert_max_diff:.3g}"
                lines.append(f"- `{a.name}` on {c.runtime}: {agree}largest output difference {diff}")
            elif c.runtime == "litert-aarch64":
                lines.append(f"- `{a.name}` on {c.runtime}: refused on both ({(c.error or '')[:160]})")
    if not lines:
        return ""
    intro = ("The same artifact on the other runtimes, compared with LiteRT's default delegate on this x86 host "
             "(outputs, not the Keras model).")
    return "\n".join(["## Against LiteRT on x86", "", intro, "", *lines, ""])


def _not_shipped(r: ReportInput) -> str:
    rejected = [a for a in r.result.artifacts if not a.shipped]
    return "\n".join(["## Not shipped", ""] + [f"- `{a.name}`: {a.reason}" for a in rejected] + [""]) if rejected else ""


def _backed_off(r: ReportInput) -> str:
    """Earlier attempts that shipped nothing ([prune] back_off), so the reader knows why the sparsity is lower."""
    tries = r.result.backed_off
    if not tries:
        return ""
    lines = ["## Backed off", "", (f"Nothing shipped at a higher sparsity; the run ended at "
                                   f"{r.result.recipe.prune.final_sparsity:.0%} ([prune] back_off). Each attempt "
                                   "started from the original model."), ""]
    for t in tries:
        why = "; ".join(f"{name}: {reason}" for name, reason in t["not_shipped"].items()) or "no artifact was built"
        lines.append(f"- {t['final_sparsity']:.0%}: {why}")
    return "\n".join([*lines, ""])


def _keras_accuracy(r: ReportInput) -> str:
    split = split_of(r.result)
    subset = (r.result.metrics or {}).get("samples")
    samples = next((c.samples for c in r.result.baseline.checks if c.loads and c.samples), None)
    note = ([f"The Metrics section scores the first {subset:,} of these samples, so its figures differ.", ""]
            if subset and samples and subset < samples else [])
    if _classifier(r.result):
        return "\n".join([f"## Keras accuracy ({split})", ""]
                         + [f"- {k}: top-1 {_pct(v)} ({split})" for k, v in r.result.keras_accuracy.items()]
                         + ["", *note])
    lines = [f"## Keras figures ({split})", ""]
    for label, scores in r.result.keras_scores.items():
        parts = [f"MSE {scores['mse']:.4g}" if scores.get("mse") is not None else None,
                 f"ROC AUC {_pct(scores['auc'])}" if scores.get("auc") is not None else scores.get("auc_note")]
        lines.append(f"- {label}: " + ("; ".join(p for p in parts if p) or "no figure (no targets)"))
    return "\n".join([*lines, "", *note])


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
    _artifacts, _backed_off, _frontier, _per_runtime, _runtime_differences, _not_shipped, _keras_accuracy,
    _sparsity, _plots, _time, _steps, _pruned,
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
        ax.plot(h.epoch, [v or 0 for v in h.val_accuracy], "s-", color="tab:blue",
                label="accuracy on the fine-tune's validation split")
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
