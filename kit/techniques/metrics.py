"""Figures for judging a compressed model beyond top-1: size, sparsity, cost, speed, energy, robustness, fidelity.

Definitions (the report and manifest use exactly these):
  compression rate   bytes before / bytes after (deployable files)
  sparsity           zero fraction of the Dense/Conv kernels, per kernel and over all kernels (biases excluded)
  pruning rate       1 - nonzero parameters after / parameters before (counts removed layers and units too)
  MACs               multiply-accumulates per inference of the dense graph; "effective" MACs scale each
                     layer by its kernel's nonzero fraction (what a sparse kernel has to compute)
  top-k              fraction of samples whose label is among the k highest outputs
  FPS                1e6 / median latency in microseconds (batch 1)
  CO2e               grams per million inferences = energy per inference (uJ) * grid factor (g/kWh) / 3.6e6
  robustness         top-1 on inputs + N(0, sigma^2) noise (one fixed draw per sigma, the same for every model,
                     not clipped), and on images shifted by s pixels (mean over up/down/left/right, zero fill)
  MSE / PSNR         of outputs against the original model's; PSNR = 10 log10(peak^2 / MSE), peak = the
                     reference outputs' range unless given
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from kit.core.errors import KitError

Predict = Callable[[np.ndarray], np.ndarray]


def compression_rate(bytes_before: int, bytes_after: int) -> float:
    if bytes_after <= 0:
        raise KitError(f"artifact size must be positive, got {bytes_after}")
    return bytes_before / bytes_after


def topk(outputs: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    out = outputs.reshape(len(outputs), -1)
    if k > out.shape[1]:
        raise KitError(f"top-{k} needs at least {k} outputs, the model has {out.shape[1]}")
    best = np.argsort(-out, axis=1, kind="stable")[:, :k]
    return float(np.mean((best == np.asarray(labels).reshape(-1, 1)).any(axis=1)))


def mse_psnr(reference: np.ndarray, outputs: np.ndarray, peak: float | None = None) -> tuple[float, float]:
    """Mean squared error of `outputs` against `reference`, and the PSNR in dB (inf when identical)."""
    ref, out = np.asarray(reference, np.float64), np.asarray(outputs, np.float64)
    if ref.shape != out.shape:
        raise KitError(f"outputs {out.shape} and reference {ref.shape} differ in shape")
    mse = float(np.mean((out - ref) ** 2))
    peak = float(ref.max() - ref.min()) if peak is None else float(peak)
    if mse == 0:
        return 0.0, math.inf
    if peak <= 0:
        raise KitError("PSNR needs a positive peak value", "give peak= (e.g. 1.0 for data in [0, 1])")
    return mse, float(10 * np.log10(peak ** 2 / mse))


def fps(median_us: float | None) -> float | None:
    return None if not median_us else 1e6 / median_us


def co2e_grams_per_million(energy_uj_per_inference: float | None, grid_g_per_kwh: float | None) -> float | None:
    """Grams CO2-equivalent per million inferences, or None when energy or grid factor is unknown."""
    if energy_uj_per_inference is None or grid_g_per_kwh is None:
        return None
    if grid_g_per_kwh < 0 or energy_uj_per_inference < 0:
        raise KitError("energy and grid factor must be >= 0")
    return energy_uj_per_inference * grid_g_per_kwh / 3.6e6


def add_noise(x: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    return (x + np.random.default_rng(seed).normal(0.0, sigma, x.shape)).astype(x.dtype)


def shift(x: np.ndarray, dy: int, dx: int, image_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Images moved by (dy, dx) pixels with zero fill; `image_shape` (H, W[, C]) for flattened inputs."""
    shape = x.shape[1:] if image_shape is None else tuple(image_shape)
    if len(shape) < 2:
        raise KitError(f"inputs of shape {x.shape[1:]} are not images", "give image_shape, e.g. (28, 28)")
    img = x.reshape((len(x), *shape))
    out = np.zeros_like(img)
    h, w = shape[0], shape[1]
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[:, yd, xd] = img[:, ys, xs]
    return out.reshape(x.shape)


@dataclass
class Robustness:
    clean: dict[str, float]  # model name -> top-1 on clean inputs
    noise: dict[str, dict[str, float]] = field(default_factory=dict)  # "sigma=0.1" -> model -> top-1
    shift: dict[str, dict[str, float]] = field(default_factory=dict)  # "shift=1px" -> model -> top-1

    def to_dict(self) -> dict:
        return asdict(self)


def robustness(models: dict[str, Predict], x: np.ndarray, y: np.ndarray, sigmas=(0.1, 0.2), shifts=(1,),
               image_shape: tuple[int, ...] | None = None, seed: int = 0) -> Robustness:
    """Top-1 of each model (name -> batch predict function) on clean, noisy and shifted inputs."""
    r = Robustness({n: topk(f(x), y) for n, f in models.items()})
    for s in sigmas:
        noisy = add_noise(x, s, seed)
        r.noise[f"sigma={s:g}"] = {n: topk(f(noisy), y) for n, f in models.items()}
    for s in shifts:
        moved = [shift(x, dy, dx, image_shape) for dy, dx in ((s, 0), (-s, 0), (0, s), (0, -s))]
        r.shift[f"shift={s}px"] = {n: float(np.mean([topk(f(m), y) for m in moved])) for n, f in models.items()}
    return r


@dataclass
class ModelFigures:
    params: int
    nonzero_params: int
    kernel_sparsity: float  # over all Dense/Conv kernels
    layers: dict[str, dict]  # per kernel: shape, params, sparsity
    macs: int
    effective_macs: int

    def to_dict(self) -> dict:
        return asdict(self)


def model_figures(model) -> ModelFigures:
    """Parameter counts, per-kernel sparsity and MACs of a tf_keras model."""
    from kit.techniques.prune import kernel_sparsity
    from kit.techniques.structured.cost import model_cost

    layers = kernel_sparsity(model)
    params = int(model.count_params())
    nonzero = int(sum(np.count_nonzero(w) for w in model.get_weights()))
    total = sum(v["params"] for v in layers.values())
    zeros = sum(v["params"] * v["sparsity"] for v in layers.values())
    macs = effective = 0
    for c in model_cost(model).layers:
        macs += c.macs
        densities = [1 - v["sparsity"] for k, v in layers.items() if k.split("/")[0] == c.name]
        effective += int(round(c.macs * (float(np.mean(densities)) if densities else 1.0)))
    return ModelFigures(params, nonzero, float(zeros / total) if total else 0.0, layers, int(macs), int(effective))


def pruning_rate(before: ModelFigures, after: ModelFigures) -> float:
    return 1.0 - after.nonzero_params / before.params if before.params else 0.0


def keras_predict(model) -> Predict:
    return lambda x: model.predict(x, batch_size=512, verbose=0)
