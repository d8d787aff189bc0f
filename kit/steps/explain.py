"""Plots that show what pruning did: sparsity maps, the first layer's input importance, score and weight histograms.

The input-importance map answers "which inputs does the model still look at": for a first Dense layer,
the number of surviving connections out of each input (e.g. each MNIST pixel); inputs with none left
are drawn in red, the model has stopped reading them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


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


def pruned_section(model, out: Path, image_shape=None) -> str:
    """"What was pruned": sparsity maps of the final model and its first layer's input importance."""
    lines = ["## What was pruned", ""]
    if sparsity_maps(model, out / "sparsity_maps.png"):
        lines += ["![sparsity maps](sparsity_maps.png)", ""]
    dead = input_importance(model, out / "input_importance.png", image_shape)
    if dead is not None:
        lines += [f"Inputs with no connection left in the first layer: {dead}.", ""]
        if (out / "input_importance.png").exists():
            lines += ["![input importance](input_importance.png)", ""]
    return "\n".join(lines)
