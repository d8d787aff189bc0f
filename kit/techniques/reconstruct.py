"""Pruning by layer-wise reconstruction: one-shot masks, then the kept weights re-solved by least squares.

For a pre-trained model and a few hundred inputs (no labels needed), gradient fine-tuning is the weak link: it
over-fits the few samples, and BatchNormalization statistics re-estimated from them can describe other data than
the model was trained on. Reconstruction uses the inputs only to measure activations. Layer by layer, in graph
order, the kept weights of each output unit are chosen to reproduce what the *original* layer computed on the
original model's inputs, from the inputs the *pruned* model now feeds that layer:

    min over w_j (kept entries only) of || X_pruned w_j + b_j - (X_original W_original[:, j] + b_original_j) ||^2

a ridge-regularised least-squares problem per unit (normal equations of a few dozen to a few thousand weights),
so the errors of earlier layers are corrected by later ones instead of adding up. Which weights go is chosen per
layer by their optimal-brain-surgeon saliency in that same problem, w^2 / [H^-1]_ii with H the Gram matrix of the
layer's inputs: the output error removing each weight alone costs (magnitude ignores how large its input is).
With `scope = "global"` one magnitude ranking over all layers chooses the masks instead.

On the MLPerf Tiny DS-CNN keyword spotter with 500 teacher-labelled stand-in inputs (benchmarks/bench_recovery.py
data), one-shot magnitude masks at 50% keep 15% agreement with the original; reconstruction brings that to about
97%, with no gradient step.

Dense and Conv2D layers (any stride and padding, no dilation or groups) are reconstructed; the other kernels the
recipe prunes (depthwise, 1-D/3-D, separable convolutions) are left dense, and the report says so: magnitude
masks alone are what fails on these models.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from kit.techniques.importance import layer_mask, scores, select_sparsity
from kit.techniques.masking import Masks
from kit.techniques.metrics import topk

#: ridge added to the normal equations, relative to their mean diagonal: keeps nearly collinear inputs solvable
RIDGE = 1e-3
#: rows (positions x samples) accumulated per layer, sampled evenly: bounds time and memory on large feature maps
MAX_ROWS = 60_000
#: input samples pushed through the models at a time
BATCH = 64


@dataclass
class ReconstructReport:
    samples: int
    layers: dict[str, dict] = field(default_factory=dict)  # layer -> sparsity, rows, error before/after
    skipped: dict[str, str] = field(default_factory=dict)  # layer -> why its weights were not re-solved
    finetune: str | None = None  # what the fine-tune after it did to the fidelity, and which weights were kept

    def to_dict(self) -> dict:
        return asdict(self)


def reconstruct_prune(model, original, kernels: dict, targets: dict[str, float], x: np.ndarray,
                      scope: str = "layer", pooled: set[str] | None = None, seed: int = 0,
                      log=None) -> tuple[Masks, ReconstructReport]:
    """Prune `kernels` ("layer/kernel" -> variable of `model`) to `targets` and re-solve each reconstructable
    layer's kept weights against `original` on inputs `x`, in graph order. `model` changes in place (it starts
    as a copy of `original`); layers that cannot be re-solved stay dense."""
    report = ReconstructReport(len(x))
    layers = {layer.name: layer for layer in model.layers}
    for key in list(targets):
        name = key.split("/")[0]
        why = _unsupported(layers[name]) if name in layers else "inside a nested model"
        if why:
            report.skipped[name] = why + ": left dense"
    targets = {k: v for k, v in targets.items() if k.split("/")[0] not in report.skipped}
    given: Masks = {}
    if scope != "layer":  # one ranking over all layers needs every mask before the first solve
        given = select_sparsity(scores(model, kernels, "magnitude"), targets, scope,
                                None if pooled is None else set(pooled) & set(targets)).masks
    rng = np.random.default_rng(seed)
    by_layer = {k.split("/")[0]: k for k in targets}
    masks: Masks = {}
    for layer in model.layers:
        key = by_layer.get(layer.name)
        if key is None:
            continue
        figures, masks[key] = _solve_layer(model, original, layer, given.get(key), targets[key], x, rng)
        report.layers[layer.name] = {"sparsity": round(1.0 - float(masks[key].mean()), 4), **figures}
        if log:
            log(f"  reconstructed {layer.name}: relative output error {figures['error_before']:.3f} (magnitude "
                f"masks alone) -> {figures['error_after']:.3f} ({figures['rows']:,} rows)")
    return masks, report


def keep_better_finetune(model, original, x: np.ndarray, finetune, validation_split: float,
                         report: ReconstructReport, log=None):
    """Run `finetune()` (the recipe's masked fine-tune) and keep its weights only if they agree better with
    `original` (top-1; the method trains classifiers only) on the held-out tail of `x` that the fine-tune
    validates on; else restore the reconstruction. Returns the fine-tune's history."""
    n_val = int(len(x) * validation_split)
    if n_val < 1:
        report.finetune = "fine-tuned; no validation split to compare with the reconstruction, so its weights are kept"
        return finetune()
    held = x[len(x) - n_val:]
    reference = original.predict(held, verbose=0).reshape(n_val, -1).argmax(1)
    before, saved = topk(model.predict(held, verbose=0), reference), model.get_weights()
    history = finetune()
    after = topk(model.predict(held, verbose=0), reference)
    kept = after > before
    if not kept:
        model.set_weights(saved)
    report.finetune = (f"top-1 agreement with the original on {n_val} held-out inputs: {before:.4f} after "
                       f"reconstruction, {after:.4f} after the fine-tune; the "
                       f"{'fine-tuned' if kept else 'reconstructed'} weights are kept")
    if log:
        log(f"  {report.finetune}")
    return history


def _unsupported(layer) -> str | None:
    kind = type(layer).__name__
    if kind == "Dense":
        return None
    if kind != "Conv2D":
        return f"{kind} is not reconstructed"
    if tuple(layer.dilation_rate) != (1, 1) or getattr(layer, "groups", 1) != 1:
        return "a dilated or grouped Conv2D is not reconstructed"
    if layer.data_format != "channels_last":
        return "a channels_first Conv2D is not reconstructed"
    return None


def _solve_layer(model, original, layer, mask: np.ndarray | None, sparsity: float, x: np.ndarray,
                 rng) -> tuple[dict, np.ndarray]:
    """Accumulate the layer's normal equations over `x` in batches, choose its mask (unless given), solve per
    output unit and write kernel (and bias). Returns the figures and the mask in the kernel's shape."""
    import tf_keras as keras

    reference = original.get_layer(layer.name)
    feed_pruned = keras.Model(model.inputs, layer.input)
    feed_original = keras.Model(original.inputs, reference.input)
    w_orig = reference.kernel.numpy().reshape(-1, reference.kernel.shape[-1]).astype(np.float64)
    b_orig = reference.bias.numpy().astype(np.float64) if reference.use_bias else 0.0
    n_in, d = w_orig.shape[0], w_orig.shape[0] + (1 if layer.use_bias else 0)
    gram, cross = np.zeros((d, d)), np.zeros((d, w_orig.shape[1]))
    per_row = max(1, MAX_ROWS // max(len(x), 1))
    target_sq, rows = 0.0, 0
    for start in range(0, len(x), BATCH):
        xb = x[start:start + BATCH]
        positions = int(rng.integers(1 << 31))  # the same rows of both models
        p_now = _rows(layer, feed_pruned.predict(xb, verbose=0), per_row, positions)
        target = _rows(layer, feed_original.predict(xb, verbose=0), per_row, positions) @ w_orig + b_orig
        target_sq += float(np.sum(target ** 2))
        if layer.use_bias:
            p_now = np.concatenate([p_now, np.ones((len(p_now), 1))], axis=1)
        gram += p_now.T @ p_now
        cross += p_now.T @ target
        rows += len(p_now)
    ridge = RIDGE * float(np.trace(gram)) / d
    if mask is None:
        magnitude, keep = layer_mask(np.abs(w_orig), sparsity), _saliency_mask(gram, cross, ridge, n_in, sparsity)
    else:
        magnitude = keep = mask.reshape(w_orig.shape)
    solved = np.zeros((d, w_orig.shape[1]))
    for j in range(w_orig.shape[1]):
        idx = np.flatnonzero(keep[:, j])
        if layer.use_bias:
            idx = np.append(idx, d - 1)
        if len(idx):
            solved[idx, j] = np.linalg.solve(gram[np.ix_(idx, idx)] + ridge * np.eye(len(idx)), cross[idx, j])
    before = w_orig * magnitude
    if layer.use_bias:
        before = np.concatenate([before, np.broadcast_to(b_orig, (1, w_orig.shape[1]))], axis=0)
    layer.kernel.assign(solved[:n_in].reshape(layer.kernel.shape).astype(np.float32))
    if layer.use_bias:
        layer.bias.assign(solved[n_in].astype(np.float32))
    scale = target_sq or 1.0
    return ({"rows": rows, "error_before": _relative_error(gram, cross, before, target_sq, scale),
             "error_after": _relative_error(gram, cross, solved, target_sq, scale)}, keep.reshape(layer.kernel.shape))


def _relative_error(gram: np.ndarray, cross: np.ndarray, w: np.ndarray, target_sq: float, scale: float) -> float:
    """sqrt(||P w - t||^2 / ||t||^2) from the normal equations: ||P w - t||^2 = w'Gw - 2 w'c + ||t||^2."""
    residual = float(np.sum(w * (gram @ w)) - 2.0 * np.sum(w * cross) + target_sq)
    return float(np.sqrt(max(residual, 0.0) / scale))


def _saliency_mask(gram: np.ndarray, cross: np.ndarray, ridge: float, n_in: int, sparsity: float) -> np.ndarray:
    """Optimal-brain-surgeon saliency of each weight of the layer's dense least-squares solution, w^2 / [H^-1]_ii:
    the output error its removal alone costs. The lowest `sparsity` of the layer go."""
    inverse = np.linalg.inv(gram + ridge * np.eye(len(gram)))
    dense = inverse @ cross
    return layer_mask(dense[:n_in] ** 2 / np.diag(inverse)[:n_in, None], sparsity)


def _rows(layer, inputs: np.ndarray, per_sample: int, seed: int) -> np.ndarray:
    """The layer's input as rows of its matrix product: patches for a convolution, vectors for Dense; at most
    `per_sample` rows per sample, the same positions for both models (same seed)."""
    if type(layer).__name__ == "Conv2D":
        import tensorflow as tf

        kh, kw = layer.kernel_size
        sh, sw = layer.strides
        patches = tf.image.extract_patches(inputs, [1, kh, kw, 1], [1, sh, sw, 1], [1, 1, 1, 1],
                                           layer.padding.upper()).numpy()
        inputs = patches.reshape(len(inputs), -1, patches.shape[-1])
    else:
        inputs = inputs.reshape(len(inputs), -1, inputs.shape[-1])
    n, positions, _ = inputs.shape
    if positions > per_sample:
        pick = np.random.default_rng(seed).choice(positions, per_sample, replace=False)
        inputs = inputs[:, np.sort(pick)]
    return inputs.reshape(-1, inputs.shape[-1]).astype(np.float64)
