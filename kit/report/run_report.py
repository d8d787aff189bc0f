"""The report of one compression run: a comparison table, per-layer sparsity and plots (Markdown + PNG)."""
from __future__ import annotations

from pathlib import Path

from kit.core.tables import format_table

RUNTIME_ORDER = ("litert", "litert-builtin", "tflm")


def comparison_rows(result) -> list[list]:
    base = result.baseline
    rows = []
    for a in [base, *result.artifacts]:
        loads = [c.runtime for c in a.checks if c.loads and c.problem is None]
        lit = a.check_on("litert")
        rows.append([
            a.name, "yes" if a.shipped else "no", a.bytes, a.gzip_bytes, f"{base.bytes / a.bytes:.1f}x",
            _pct(a.accuracy), _pct(lit.agreement if lit and lit.loads else None),
            ", ".join(loads) or "none",
        ])
    return rows


COMPARISON_HEADERS = ["artifact", "shipped", "bytes", "gzip", "vs float32", "top-1", "agree", "runs correctly on"]


def write_report(result) -> Path:
    out: Path = result.out_dir
    lines = [f"# Compression report: {result.recipe.name}", "", f"Data: {result.dataset}", ""]
    lines += ["## Artifacts", "", format_table(COMPARISON_HEADERS, comparison_rows(result), markdown=True), ""]
    lines += ["`agree` = top-1 agreement with the Keras model that was converted, on LiteRT.", ""]
    lines += ["## Per runtime", ""]
    rows = []
    for a in [result.baseline, *result.artifacts]:
        for c in a.checks:
            rows.append([a.name, c.runtime, "yes" if c.loads else "no", _pct(c.top1), _pct(c.top5),
                         _pct(c.agreement), c.max_abs_error, (c.problem or "")[:140]])
    lines += [format_table(["artifact", "runtime", "loads", "top-1", "top-5", "agree", "max abs err", "problem"], rows,
                           markdown=True), ""]
    rejected = [a for a in result.artifacts if not a.shipped]
    if rejected:
        lines += ["## Not shipped", ""] + [f"- `{a.name}`: {a.reason}" for a in rejected] + [""]
    lines += ["## Keras accuracy", ""] + [f"- {k}: {_pct(v)}" for k, v in result.keras_accuracy.items()] + [""]
    if result.layer_sparsity:
        rows = [[k, "x".join(map(str, v["shape"])), v["params"], f"{v['sparsity']:.1%}"]
                for k, v in result.layer_sparsity.items()]
        lines += ["## Sparsity per layer (biases are never pruned)", "",
                  format_table(["weight", "shape", "params", "zeros"], rows, markdown=True), ""]
    for name, fn in (("schedule.png", _plot_schedule), ("sizes.png", _plot_sizes)):
        if fn(result, out / name):
            lines += [f"![{name}]({name})", ""]
    lines += ["## Time", ""] + [f"- {k}: {v:.1f} s" for k, v in result.seconds.items()] + [""]
    path = out / "report.md"
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
