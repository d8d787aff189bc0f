"""Per-layer sensitivity: prune one layer alone at several ratios and measure what it costs.

Unstructured (or block) rows are one-shot magnitude pruning without retraining:
the smallest-magnitude weights of one layer are zeroed (blocks ranked by their
mean |w|, as TF-MOT ranks them). Structured rows remove that layer's least
important output channels with `kit.techniques.structured` (coupled layers go with it);
"kernel HxW" rows cut a convolution's outer kernel rings, and "input border"
rows (layer "input") crop 1-4 pixels off every side of an image input.
Every row is scored on a validation split carved from the training data, never
on the test split, because these figures are used to choose settings. A row
records the top-1 drop, the mean KL divergence of the pruned model's outputs
from the original's (it keeps growing where accuracy has already collapsed, so
it still ranks layers at high ratios), and optionally the median latency of
the pruned model on a target.
"""
from __future__ import annotations

import csv
import json
import math
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kit.data import Dataset
from kit.core.errors import DataError, KitError
from kit.core.jsonio import dumps as strict_dumps
from kit.core.vocab import DELEGATE_OF_RUNTIME
from kit.recipe import PruneStep
from kit.techniques.criteria import criterion_class

DEFAULT_RATIOS = (0.5, 0.7, 0.9, 0.95)


@dataclass
class ValidationSplit:
    """Training data without the validation samples, and the validation samples themselves."""

    train: Dataset
    x: np.ndarray
    y: np.ndarray
    description: str


def split_validation(data: Dataset, fraction: float = 0.2) -> ValidationSplit:
    """Hold out the last `fraction` of the training split (the samples Keras' `validation_split` holds out)."""
    if not 0.0 < fraction < 0.5:
        raise DataError(f"validation fraction must be between 0 and 0.5, got {fraction}",
                        "e.g. --val-fraction 0.1 holds out the last 10% of the training data")
    n = len(data.x_train)
    split_at = int(n * (1.0 - fraction))
    if split_at < 1 or split_at >= n:
        raise DataError(f"data set {data.name!r} has {n} training samples: too few to hold out {fraction:.0%}")
    desc = f"last {n - split_at} of {n} training samples of {data.name} (held out from training)"
    train = Dataset(data.name, data.x_train[:split_at], data.y_train[:split_at], data.x_test, data.y_test,
                    data.x_calib, f"{data.description}; {desc.replace('training samples', 'samples')} "
                                  "kept for validation")
    return ValidationSplit(train, data.x_train[split_at:], data.y_train[split_at:], desc)


@dataclass
class SensitivityRow:
    layer: str
    method: str  # "unstructured", "block 1x4" (runtime [out, in] layout), "structured", "kernel 3x3", "input border"
    ratio: float  # fraction removed: weights, output channels (structured), kernel taps or input pixels
    accuracy: float  # top-1 on the validation split
    drop: float  # baseline accuracy - accuracy, in percentage points
    kl: float  # mean KL(original || pruned) of the output distributions, in nats
    params: int  # weights in the layer's prunable tensors
    removed: int  # weights zeroed (one-shot) or parameters cut from the whole model (structured)
    latency_us: float | None = None  # median on the target
    gain_us: float | None = None  # baseline median - latency_us


@dataclass
class SensitivityResult:
    model: str
    validation: str
    baseline_accuracy: float
    rows: list[SensitivityRow]
    target: str | None = None
    runtime: str | None = None
    fmt: str | None = None
    baseline_latency_us: float | None = None
    notes: list[str] = field(default_factory=list)

    HEADERS = ["layer", "method", "ratio", "val top-1", "drop (pts)", "KL", "weights", "removed", "median us",
               "gain us"]

    def layers(self) -> list[str]:
        return list(dict.fromkeys(r.layer for r in self.rows))

    def methods(self) -> list[str]:
        return list(dict.fromkeys(r.method for r in self.rows))

    def curve(self, layer: str, method: str) -> list[SensitivityRow]:
        """Rows of one layer and method, by increasing ratio."""
        return sorted((r for r in self.rows if r.layer == layer and r.method == method), key=lambda r: r.ratio)

    def table(self, markdown: bool = False) -> str:
        from kit.core.tables import format_table

        rows = [[r.layer, r.method, f"{100 * r.ratio:.4g}%", f"{100 * r.accuracy:.2f}", f"{r.drop:+.2f}",
                 f"{r.kl:.4f}", r.params, r.removed, r.latency_us, r.gain_us] for r in self.rows]
        return format_table(self.HEADERS, rows, markdown)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write(self, out: str | Path) -> dict[str, Path]:
        """sensitivity.csv, sensitivity.md, sensitivity.json and one plot per layer under plots/."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"csv": out / "sensitivity.csv", "markdown": out / "sensitivity.md", "json": out / "sensitivity.json"}
        with open(paths["csv"], "w", newline="") as f:
            w = csv.writer(f)
            w.writerow([k for k in SensitivityRow.__dataclass_fields__])
            for r in self.rows:
                w.writerow([_csv(v) for v in asdict(r).values()])
        paths["json"].write_text(strict_dumps(self.to_dict()))
        plots = _plot_layers(self, out / "plots")
        paths.update({f"plot:{layer}": p for layer, p in plots.items()})
        paths["markdown"].write_text(self._markdown(out, plots))
        return paths

    def _markdown(self, out: Path, plots: dict[str, Path]) -> str:
        lines = [f"# Sensitivity of {self.model}", "",
                 f"Validation split: {self.validation}.", "",
                 f"Baseline top-1 on it: {100 * self.baseline_accuracy:.2f}%."]
        if self.baseline_latency_us is not None:
            lines.append(f"Baseline median latency on {self.target} ({self.runtime}, {self.fmt}): "
                         f"{self.baseline_latency_us:.1f} us.")
        lines += ["", "Each row prunes one layer alone, one-shot (no retraining); `drop` is in top-1 points, "
                      "`KL` is the mean KL divergence from the original outputs.", "", self.table(markdown=True), ""]
        lines += [f"- note: {n}" for n in self.notes]
        for layer, p in plots.items():
            lines += ["", f"![{layer}]({p.relative_to(out).as_posix()})"]
        return "\n".join(lines) + "\n"


def load_sensitivity(path: str | Path) -> SensitivityResult:
    """Read back a `sensitivity.json` written by `SensitivityResult.write`."""
    p = Path(path)
    if p.is_dir():
        p = p / "sensitivity.json"
    try:
        d = json.loads(p.read_text())
        rows = [SensitivityRow(**r) for r in d.pop("rows")]
        return SensitivityResult(rows=rows, **d)
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise KitError(f"{p} is not a sensitivity result ({e})", "pass the sensitivity.json of `kit sensitivity`") \
            from None


def analyze(model, x_val: np.ndarray, y_val: np.ndarray, ratios=DEFAULT_RATIOS, prune_step: PruneStep | None = None,
            structured: bool = False, criterion: str = "l1", round_to: int = 1, calib: np.ndarray | None = None,
            target=None, runtime: str = "litert", fmt: str = "float32", runs: int = 200,
            model_name: str | None = None, validation: str = "validation split", log=print) -> SensitivityResult:
    """Prune every prunable layer alone at each ratio; score on (x_val, y_val).

    prune_step decides which layers are pruned and how (granularity, block, skip, per-layer overrides), exactly as
    in a compression run; default: every prunable layer, unstructured. With `target` (a Target or a URI), every
    pruned variant is converted to `fmt` (sparse encoding for one-shot rows) and its median latency measured there.
    """
    from kit.techniques import prune as pruning
    from kit.techniques.finetune import outputs_logits, to_logits

    ratios = _ratios(ratios)
    if structured:
        criterion_class("channel", criterion)  # an unknown name fails before the one-shot rows, not after
    if len(x_val) == 0 or len(x_val) != len(y_val):
        raise DataError(f"the validation split has {len(x_val)} samples and {len(y_val)} labels",
                        "pass at least one sample and one label per sample")
    step = prune_step or PruneStep(granularity="unstructured")
    plan = pruning.plan(model, step, 1, 1)
    from_logits = outputs_logits(model)
    reference = to_logits(model.predict(x_val, batch_size=512, verbose=0), from_logits)
    base_acc = float(np.mean(reference.argmax(axis=1) == y_val))
    timed = target is not None
    result = SensitivityResult(model_name or model.name, validation, base_acc, [], runtime=runtime if timed else None,
                               fmt=fmt if timed else None)
    profiler = _Profiler(target, runtime, fmt, calib, runs) if timed else None

    def score(m, layer, method, ratio, params, removed, sparse):
        out = to_logits(m.predict(x_val, batch_size=512, verbose=0), from_logits)
        acc = float(np.mean(out.argmax(axis=1) == y_val))
        row = SensitivityRow(layer, method, ratio, acc, 100.0 * (base_acc - acc), _kl(reference, out), params,
                             removed)
        if profiler is not None:
            row.latency_us = profiler.latency(m, sparse)
            row.gain_us = result.baseline_latency_us - row.latency_us
        result.rows.append(row)

    try:
        if profiler is not None:
            result.target = profiler.name
            result.baseline_latency_us = profiler.latency(model, sparse=False)
        _one_shot_rows(model, plan, ratios, result, score, log)
        if structured:
            _structured_rows(model, ratios, criterion, round_to, calib, step, result, score, log)
    finally:
        if profiler is not None:
            profiler.close()
    if plan.skipped:
        result.notes.append("not pruned (skipped by the recipe): " + ", ".join(plan.skipped))
    return result


def magnitude_mask(weights: np.ndarray, ratio: float, block: tuple[int, int] = (1, 1)) -> np.ndarray:
    """Mask (1 keep, 0 prune) zeroing the `ratio` smallest-magnitude weights, or blocks ranked by mean |w|.

    `block` is in the Keras kernel layout (rows, cols of a 2-D kernel); partial blocks at the edges are ranked
    by the mean of the weights they hold.
    """
    w = np.abs(np.asarray(weights, dtype=np.float64))
    if ratio <= 0:
        return np.ones(w.shape, np.float32)
    if w.ndim != 2 or tuple(block) == (1, 1):
        scores = w.ravel()
        expand = None
    else:
        br, bc = int(block[0]), int(block[1])
        rows, cols = -(-w.shape[0] // br), -(-w.shape[1] // bc)
        padded = np.zeros((rows * br, cols * bc))
        counts = np.zeros_like(padded)
        padded[:w.shape[0], :w.shape[1]] = w
        counts[:w.shape[0], :w.shape[1]] = 1
        sums = padded.reshape(rows, br, cols, bc).sum(axis=(1, 3))
        scores = (sums / counts.reshape(rows, br, cols, bc).sum(axis=(1, 3))).ravel()
        expand = (br, bc, rows, cols)
    k = min(len(scores), math.floor(ratio * len(scores) + 1e-9))
    keep = np.ones(len(scores), bool)
    keep[np.argsort(scores, kind="stable")[:k]] = False
    if expand is None:
        return keep.reshape(w.shape).astype(np.float32)
    br, bc, rows, cols = expand
    full = np.repeat(np.repeat(keep.reshape(rows, cols), br, axis=0), bc, axis=1)
    return full[:w.shape[0], :w.shape[1]].astype(np.float32)


def _one_shot_rows(model, plan, ratios, result, score, log) -> None:
    from kit.techniques import prune as pruning

    work = pruning.private_copy(model)
    layers = layers_by_name(work)
    for p in plan.layers:
        layer = layers[p.layer]
        weights = prunable_weights(layer)
        originals = [w.numpy() for w in weights]
        params = int(sum(o.size for o in originals))
        method = _method(p)
        if p.note:
            result.notes.append(f"{p.layer}: {p.note}")
        log(f"  {p.layer}: {method} at {', '.join(f'{r:.0%}' for r in ratios)}")
        for ratio in ratios:
            removed = 0
            for w, o in zip(weights, originals):
                mask = magnitude_mask(o, ratio, p.block_size if p.granularity == "block" else (1, 1))
                w.assign(o * mask)
                removed += int(o.size - mask.sum())
            score(work, p.layer, method, ratio, params, removed, sparse=True)
        for w, o in zip(weights, originals):
            w.assign(o)


def _structured_rows(model, ratios, criterion, round_to, calib, step, result, score, log) -> None:
    from kit.techniques.structured import build_graph, model_cost, prune_channels

    skip = [layer.name for layer in model.layers if any(re.fullmatch(p, layer.name) for p in step.skip)]
    graph = build_graph(model, skip)
    params_before = model_cost(model).params
    for name in graph.sources:
        group = graph.group_of(name)
        if not len(group.units):
            result.notes.append(f"{name}: no output channel can be removed (they feed the model's output, a "
                                "skipped layer or a layer the channel graph does not understand); no structured rows")
            continue
        if len(group.layers) > 1:
            result.notes.append(f"{name}: structured rows remove channels of the coupled layers "
                                f"{', '.join(group.layers)} together")
        params = int(sum(np.prod(w.shape) for w in prunable_weights(model.get_layer(name))))
        log(f"  {name}: structured ({criterion}) at {', '.join(f'{r:.0%}' for r in ratios)}")
        for ratio in ratios:
            pruned = prune_channels(model, ratio=0.0, criterion=criterion, per_layer={name: ratio},
                                    round_to=round_to, calib_data=calib, skip=skip, scope="layer")
            removed = params_before - model_cost(pruned.model).params
            score(pruned.model, name, "structured", ratio, params, int(removed), sparse=False)
    _shape_rows(model, params_before, result, score, log)


def is_one_shot(row: "SensitivityRow") -> bool:
    """Rows that zero weights in place (unstructured or block), as opposed to rows that rebuild the graph."""
    return row.method == "unstructured" or row.method.startswith("block")


def _shape_rows(model, params_before: int, result, score, log) -> None:
    """Kernel rings of every convolution, then the input border, each removed alone without retraining."""
    from kit.core.errors import ModelError
    from kit.techniques.structured import model_cost
    from kit.techniques.structured.kernels import ring_shares, shrink_kernels
    from kit.techniques.structured.spatial import crop_input

    for name, shares in ring_shares(model).items():
        kh, kw = model.get_layer(name).kernel_size
        params = int(sum(np.prod(w.shape) for w in prunable_weights(model.get_layer(name))))
        sizes = [(kh - 2 * r, kw - 2 * r) for r in range(1, len(shares) + 1)]
        log(f"  {name}: kernel {', '.join(f'{h}x{w}' for h, w in sizes)}")
        for size in sizes:
            try:
                small, _ = shrink_kernels(model, {name: size})
            except ModelError as e:
                result.notes.append(f"{name}: no kernel rows ({e.message})")
                break
            score(small, name, f"kernel {size[0]}x{size[1]}", 1 - size[0] * size[1] / (kh * kw), params,
                  int(params_before - model_cost(small).params), sparse=False)
    shape = model.input_shape
    if not isinstance(shape, tuple) or len(shape) != 4:
        return  # not one image input: no border to crop
    h, w, c = (int(d) for d in shape[1:])
    borders = [b for b in range(1, 5) if 2 * b < min(h, w)]
    log(f"  input: border {', '.join(f'{b} px' for b in borders)}")
    shifted = []
    for b in borders:
        try:
            cropped, crop = crop_input(model, b)
        except ModelError as e:
            result.notes.append(f"input: no border rows ({e.message})")
            return
        if not crop.exact_positions:
            shifted.append(f"{b} px")
        score(cropped, "input", "input border", 1 - (h - 2 * b) * (w - 2 * b) / (h * w), h * w * c,
              int(params_before - model_cost(cropped).params), sparse=False)
    if shifted:
        result.notes.append(f"input border {', '.join(shifted)}: the cropped grid does not line up with the "
                            "original after pooling, so the Dense rows move by part of a cell; these rows show that "
                            "shift before fine-tuning, which recovers it (the structured step's saliency share "
                            "tells what the border itself holds)")


class _Profiler:
    """Median latency of a Keras model converted to one format, measured on a target."""

    def __init__(self, target, runtime: str, fmt: str, calib: np.ndarray | None, runs: int):
        from targets.registry import get_target

        if runtime not in DELEGATE_OF_RUNTIME:
            raise KitError(f"latency on runtime {runtime!r} cannot be measured by a target profile",
                           f"use one of {', '.join(DELEGATE_OF_RUNTIME)}")
        self.owned = isinstance(target, str)
        self.target = get_target(target) if self.owned else target
        self.name = str(self.target.uri)
        self.runtime, self.fmt, self.calib, self.runs = runtime, fmt, calib, runs
        self.tmp = Path(tempfile.mkdtemp(prefix="kit-sensitivity-"))
        self.count = 0

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
        if self.owned:
            self.target.close()

    def latency(self, model, sparse: bool) -> float:
        from kit.convert.converter import ArtifactSpec, convert
        from targets.base import RunSettings

        data = convert(model, ArtifactSpec(self.fmt, "sparse" if sparse else "dense"), self.calib)
        self.count += 1
        path = self.tmp / f"variant-{self.count}.tflite"
        path.write_bytes(data)
        try:
            r = self.target.profile(path, RunSettings(threads=1, warmup=max(10, self.runs // 10), runs=self.runs,
                                                      delegate=DELEGATE_OF_RUNTIME[self.runtime]))
        finally:
            path.unlink(missing_ok=True)
        if r.latency is None or r.latency.median_us is None:
            raise KitError(f"the target reported no median latency for a {self.fmt} model")
        return float(r.latency.median_us)


def _kl(p_logits: np.ndarray, q_logits: np.ndarray) -> float:
    lp = _log_softmax(p_logits)
    lq = _log_softmax(q_logits)
    return float(np.mean(np.sum(np.exp(lp) * (lp - lq), axis=1)))


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _ratios(ratios) -> list[float]:
    out = sorted({0.0, *(float(r) for r in ratios)})
    bad = [r for r in out if not 0.0 <= r < 1.0]
    if bad:
        raise KitError(f"pruning ratios must be in [0, 1), got {bad[0]}", "e.g. --ratios 0.5,0.7,0.9,0.95")
    return out


def _method(p) -> str:
    if p.granularity == "block":
        rows, cols = p.block_size[1], p.block_size[0]  # Keras [in, out] -> runtime [out, in]
        return f"block {rows}x{cols}"
    return p.granularity


def prunable_weights(layer) -> list:
    """The variables TF-MOT prunes in this layer (kernel, depthwise/pointwise kernels, embeddings, ...)."""
    from tensorflow_model_optimization.python.core.sparsity.keras import prunable_layer, prune_registry

    if isinstance(layer, prunable_layer.PrunableLayer):
        return list(layer.get_prunable_weights())
    return [getattr(layer, name) for name in prune_registry.PruneRegistry._weight_names(layer)]


def layers_by_name(model) -> dict[str, Any]:
    """Every layer, looking inside nested Sequential/Functional models."""
    out = {}
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.__class__.__name__ in ("Sequential", "Functional", "Model"):
            out.update(layers_by_name(layer))
        else:
            out[layer.name] = layer
    return out


def _csv(v: Any) -> Any:
    return "" if v is None else (round(v, 6) if isinstance(v, float) else v)


def _plot_layers(result: SensitivityResult, folder: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for layer in result.layers():
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        ax2 = None
        for method in result.methods():
            rows = result.curve(layer, method)
            if not rows:
                continue
            x = [100 * r.ratio for r in rows]
            line, = ax.plot(x, [r.drop for r in rows], marker="o", label=f"{method}: top-1 drop")
            if any(r.gain_us is not None for r in rows):
                ax2 = ax2 or ax.twinx()
                ax2.plot(x, [r.gain_us for r in rows], marker="s", linestyle="--", color=line.get_color(),
                         label=f"{method}: latency gain")
        ax.set_xlabel("removed (%)")
        ax.set_ylabel("top-1 drop (points, validation)")
        ax.axhline(0, color="grey", linewidth=0.5)
        params = result.curve(layer, result.methods()[0])
        ax.set_title(f"{layer}" + (f" ({params[0].params:,} weights)" if params else ""))
        handles, labels = ax.get_legend_handles_labels()
        if ax2 is not None:
            ax2.set_ylabel("latency gain (us)")
            h2, l2 = ax2.get_legend_handles_labels()
            handles, labels = handles + h2, labels + l2
        ax.legend(handles, labels, fontsize=7, loc="upper left")
        fig.tight_layout()
        path = folder / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', layer)}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths[layer] = path
    return paths
