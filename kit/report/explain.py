"""Plots that show what pruning did: sparsity maps, the first layer's input importance, score and weight histograms.

The input-importance map answers "which inputs does the model still look at": for a first Dense layer,
the number of surviving connections out of each input (e.g. each MNIST pixel); inputs with none left
are drawn in red, the model has stopped reading them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from kit.core.tables import format_table


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _kernels(model) -> dict[str, np.ndarray]:
    from kit.techniques.masking import KERNEL_NAMES, flat_layers

    out = {}
    for layer in flat_layers(model):
        for w in layer.weights:
            short = w.name.split("/")[-1].split(":")[0]
            if short in KERNEL_NAMES:
                out[f"{layer.name}/{short}"] = w.numpy()
    return out


def sparsity_maps(model, path: Path, max_side: int = 400) -> bool:
    """One panel per kernel: kept (dark) and pruned (white) weights, [inputs x outputs] (conv: taps x filters)."""
    kernels = _kernels(model)
    if not kernels:
        return False
    plt = _plt()
    fig, axes = plt.subplots(1, len(kernels), figsize=(3.2 * len(kernels), 3.4), squeeze=False)
    for ax, (name, w) in zip(axes[0], kernels.items()):
        flat = (w.reshape(-1, w.shape[-1]) != 0).astype(np.float32)
        step_r, step_c = max(1, flat.shape[0] // max_side), max(1, flat.shape[1] // max_side)
        shown = flat[::step_r, ::step_c]
        ax.imshow(shown, cmap="Greys", aspect="auto", interpolation="nearest", vmin=0, vmax=1)
        ax.set_title(f"{name}\n{1 - flat.mean():.1%} pruned", fontsize=8)
        ax.set_xlabel("outputs", fontsize=7)
        ax.set_ylabel("inputs", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.suptitle("sparsity maps (dark = kept)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def input_connections(model) -> np.ndarray | None:
    """Surviving outgoing connections of every input of the first Dense layer (None for other first layers)."""
    from kit.techniques.masking import flat_layers

    for layer in flat_layers(model):
        if getattr(layer, "kernel", None) is None:
            continue
        if type(layer).__name__ != "Dense":
            return None
        return np.count_nonzero(layer.kernel.numpy(), axis=1)
    return None


def input_importance(model, path: Path, image_shape: tuple[int, int] | None) -> int | None:
    """Map of surviving connections per input pixel; returns the number of inputs with none left."""
    counts = input_connections(model)
    if counts is None:
        return None
    dead = int(np.sum(counts == 0))
    if image_shape is None or int(np.prod(image_shape)) != counts.size:
        return dead
    plt = _plt()
    img = counts.reshape(image_shape).astype(float)
    fig, ax = plt.subplots(figsize=(4, 3.6))
    shown = ax.imshow(img, cmap="viridis")
    ys, xs = np.nonzero(img == 0)
    ax.scatter(xs, ys, marker="s", s=12, color="red", label=f"no connection left ({dead})")
    fig.colorbar(shown, ax=ax, label="surviving connections")
    ax.set_title("first-layer input importance", fontsize=9)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, -0.22), fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return dead


def importance_histograms(scores: dict[str, np.ndarray], path: Path, title: str = "importance scores") -> bool:
    """log10 of the scores per kernel (zeros left out)."""
    if not scores:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, s in scores.items():
        v = np.asarray(s).reshape(-1)
        v = v[v > 0]
        if v.size:
            ax.hist(np.log10(v), bins=60, histtype="step", label=name)
    ax.set_xlabel("log10 score")
    ax.set_ylabel("weights")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def weight_histograms(histogram: dict[str, list], path: Path, threshold: float | None = None) -> bool:
    """Kernel weight distribution before and after regularisation (from RegularizeReport.histogram)."""
    if not histogram:
        return False
    plt = _plt()
    edges = np.asarray(histogram["edges"])
    centers = (edges[:-1] + edges[1:]) / 2
    width = edges[1] - edges[0]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(centers, histogram["before"], width=width, alpha=0.5, label="before")
    ax.bar(centers, histogram["after"], width=width, alpha=0.5, label="after")
    if threshold:
        for t in (-threshold, threshold):
            ax.axvline(t, color="k", lw=0.8, ls="--")
    ax.set_yscale("log")
    ax.set_xlabel("weight value")
    ax.set_ylabel("weights")
    ax.set_title("kernel weights before / after regularisation", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def append_sections(report_path: Path, model, metrics: dict | None, techniques: dict, image_shape=None,
                    scores: dict[str, np.ndarray] | None = None) -> None:
    """Add the metrics table, technique summaries and explanation plots to a run's report.md."""
    out = report_path.parent
    lines = []
    if metrics:
        lines += _metrics_lines(metrics)
    reg = techniques.get("regularize")
    if reg:
        lines += ["## Regularisation", "",
                  f"{reg['kind']} {reg['strengths']} for {reg['epochs']} epochs: weights with |w| < "
                  f"{reg['threshold']:g} went from {reg['near_zero_before']:.1%} to {reg['near_zero_after']:.1%} "
                  "before any mask.", ""]
        if weight_histograms(reg["histogram"], out / "weights_regularisation.png", reg["threshold"]):
            lines += ["![weights](weights_regularisation.png)", ""]
    for key, title in (("soft", "Soft pruning"), ("learned", "Learned masks"), ("iterative", "Iterative pruning"),
                       ("lowrank", "Low-rank factorisation"), ("merge", "Weight merging"),
                       ("layer_prune", "Layer pruning"), ("structured", "Structured pruning")):
        if techniques.get(key):
            lines += [f"## {title}", "", *_technique_lines(key, techniques[key]), ""]
    lines += ["## What was pruned", ""]
    if sparsity_maps(model, out / "sparsity_maps.png"):
        lines += ["![sparsity maps](sparsity_maps.png)", ""]
    dead = input_importance(model, out / "input_importance.png", image_shape)
    if dead is not None:
        lines += [f"Inputs with no connection left in the first layer: {dead}.", ""]
        if (out / "input_importance.png").exists():
            lines += ["![input importance](input_importance.png)", ""]
    if scores and importance_histograms(scores, out / "importance.png",
                                        "importance of the weights before pruning"):
        lines += ["![importance](importance.png)", ""]
    with open(report_path, "a") as f:
        f.write("\n".join(["", *lines]))


def _metrics_lines(m: dict) -> list[str]:
    rows = [["parameters", m["before"]["params"], m["after"]["params"]],
            ["nonzero parameters", m["before"]["nonzero_params"], m["after"]["nonzero_params"]],
            ["kernel sparsity", f"{m['before']['kernel_sparsity']:.1%}", f"{m['after']['kernel_sparsity']:.1%}"],
            ["MACs", m["before"]["macs"], m["after"]["macs"]],
            ["effective MACs (sparse)", m["before"]["effective_macs"], m["after"]["effective_macs"]],
            ["top-1 (Keras)", _pct(m["top1"]["original"]), _pct(m["top1"]["compressed"])],
            ["top-5 (Keras)", _pct(m["top5"].get("original")), _pct(m["top5"].get("compressed"))]]
    lines = ["## Metrics", "", format_table(["", "original", "compressed"], rows, markdown=True), "",
             f"Pruning rate {m['pruning_rate']:.1%}; output MSE vs the original {m['output_mse']:.4g}, "
             f"PSNR {m['output_psnr_db']:.1f} dB.", ""]
    if m.get("compression"):
        rows = [[a, c["bytes"], f"{c['rate']:.1f}x", c.get("median_us"), c.get("fps"), c.get("energy_uj"),
                 c.get("co2e_g_per_million")] for a, c in m["compression"].items()]
        lines += [format_table(["artifact", "bytes", "compression", "median us", "FPS", "energy uJ",
                                "g CO2e / 1M inf"], rows, markdown=True), ""]
        if m.get("energy_note"):
            lines += [f"Energy: {m['energy_note']}", ""]
    rob = m.get("robustness")
    if rob:
        rows = [["clean", *(_pct(v) for v in rob["clean"].values())]]
        rows += [[k, *(_pct(v) for v in d.values())] for k, d in {**rob["noise"], **rob["shift"]}.items()]
        lines += ["Robustness (top-1, Keras):", "",
                  format_table(["inputs", *rob["clean"].keys()], rows, markdown=True), ""]
    return lines


def _technique_lines(key: str, t: dict) -> list[str]:
    if key == "soft":
        return [f"{t['updates']} mask updates; {t['ever_masked']:,} weights were masked at some point, "
                f"{t['revived']:,} of them came back at a later update and {t['revived_in_final']:,} are in the "
                f"final mask ({t['final_sparsity']:.1%} sparse)."]
    if key == "learned":
        return [f"{t['gate']} gate, {t['granularity']}, {t['scope']} scope: learned sparsity "
                f"{t['learned_sparsity']:.2%}, final {t['final_sparsity']:.2%}.",
                "", format_table(["kernel", "learned", "final"],
                                 [[k, f"{v:.1%}", f"{t['layer_sparsity'][k]:.1%}"]
                                  for k, v in t["layer_learned_sparsity"].items()], markdown=True)]
    if key == "iterative":
        rows = [[r["cycle"], f"{r['target']:.1%}", f"{r['sparsity']:.1%}", _pct(r["val_accuracy"])]
                for r in t["records"]]
        return [f"{t['cycles']} cycles, {t['importance']} importance, {t['scope']} ranking ({t['rule']}), "
                f"epochs per cycle {t['epochs_per_cycle']}.", "",
                format_table(["cycle", "target", "sparsity", "val top-1"], rows, markdown=True)]
    if key == "lowrank":
        rows = [[c["layer"], "x".join(map(str, c["shape"])), c["rank"], f"{c['energy']:.1%}", c["bytes_now"],
                 c["bytes_lowrank"], "yes" if c["factorized"] else "no"] for c in t["layers"]]
        return [f"Rule {t['rule']}; parameters {t['params_before']:,} -> {t['params_after']:,}.", "",
                format_table(["layer", "in x out", "rank", "energy", "bytes now", "bytes factors", "factorised"],
                             rows, markdown=True)]
    if key == "merge":
        return [f"{r['layer']}: {r['units_before']} -> {r['units_after']} neurons, merged into {r['next_layer']}"
                for r in t]
    if key == "layer_prune":
        rows = [[c["block"], c["params"], c["cost"], _pct(c["agreement"])] for c in t["candidates"]]
        return [f"Cost: {t['criterion']}. Removed: {', '.join(r['block'] for r in t['removed']) or 'none'}.", "",
                format_table(["block", "params", "cost", "agreement"], rows, markdown=True)]
    if key == "structured":
        return _structured_lines(t)
    return []


def _structured_lines(t: dict) -> list[str]:
    lines = [f"MACs {t['macs']['before']:,} -> {t['macs']['after']:,}; parameters {t['params']['before']:,} -> "
             f"{t['params']['after']:,}.", ""]
    ch = t.get("channels")
    if ch:
        rows = [[", ".join(g["layers"]), g["channels"], g["kept"]] for g in ch["groups"] if g["kept"] != g["channels"]]
        lines += [f"Channels ({ch['criterion']}, {ch['scope']} scope):", "",
                  format_table(["layers (coupled)", "channels", "kept"], rows, markdown=True), ""]
    if t.get("kernels"):
        rows = [[k["layer"], "x".join(map(str, k["before"])), "x".join(map(str, k["after"])),
                 f"{k['removed_share']:.1%}"] for k in t["kernels"]]
        lines += ["Kernels (outer rings cut):", "",
                  format_table(["layer", "before", "after", "squared weights cut"], rows, markdown=True), ""]
    crop = t.get("input_border")
    if crop:
        share = crop.get("saliency_share")
        lines += [f"Input border {crop['border']} (top, bottom, left, right): "
                  f"{'x'.join(map(str, crop['input_before']))} -> {'x'.join(map(str, crop['input_after']))}"
                  + (f", {share:.2%} of the input saliency" if share is not None else "") + "."]
        lines += [f"- {n}" for n in crop["notes"]]
    return lines


def _pct(x) -> str | None:
    return None if x is None else f"{100 * x:.2f}%"
