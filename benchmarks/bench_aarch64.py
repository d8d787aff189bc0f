"""Do the kit's artifacts load on aarch64 LiteRT, and compute there what x86 LiteRT computes?

For the artifacts of the `default`, `best`, `mcu` and `lenet5-latency` recipes (each run by `kit compress`
on its zoo model and `mnist5k`; shipped and rejected artifacts alike) and the MLPerf Tiny reference models,
prints per artifact: loads on aarch64 (yes, or the runtime's reason), top-1 agreement of aarch64 LiteRT with
x86 LiteRT and the largest output difference, and top-1 agreement of LiteRT's CompiledModel API with its
Interpreter API on x86. Every figure comes from the kit's own check runtimes (kit.convert.check):
`litert` (x86, XNNPACK), `litert-aarch64` (the emulated board, `kit board arm64`; aarch64 CPython and
ai-edge-litert under qemu-user, XNNPACK's NEON kernels) and `litert-compiled` (x86). Latency under
emulation means nothing and is not printed.

  KIT_ARM64_BOARD=~/.cache/prunekit/arm64-board python benchmarks/bench_aarch64.py
  python benchmarks/bench_aarch64.py --recipes default --samples 200      # one recipe, fewer inputs
  python benchmarks/bench_aarch64.py --recipes "" --models a.tflite b.tflite

Inputs: the mnist5k test split for the recipes' artifacts; seeded uniform random inputs for the MLPerf
models (no labelled data of theirs ships offline), which is enough to compare two runtimes.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: recipe -> the zoo model it is meant for
RECIPES = {"default": "lenet-300-100", "best": "lenet-300-100", "mcu": "lenet-300-100", "lenet5-latency": "lenet5",
           "lenet-40x": "lenet-300-100"}
#: the recipes the issue's table covers (the default of --recipes)
TABLE_RECIPES = ("default", "best", "mcu", "lenet5-latency")
MLPERF = ("kws_ref_model.tflite", "kws_ref_model_float32.tflite", "vww_96_int8.tflite", "vww_96_float.tflite",
          "pretrainedResnet_quant.tflite", "pretrainedResnet.tflite", "ad01_int8.tflite", "ad01_fp32.tflite")
RUNTIMES = ("litert", "litert-aarch64", "litert-compiled")


def recipe_artifacts(recipe: str, work: Path, log) -> list[Path]:
    """Run the recipe on its zoo model; every .tflite it wrote (shipped, then rejected)."""
    from kit.pipeline.compress import compress

    out = work / recipe
    t0 = time.time()
    compress(RECIPES[recipe], recipe, "mnist5k", out, log=lambda _: None)
    log(f"{recipe}: kit compress {RECIPES[recipe]} took {time.time() - t0:.0f} s")
    return sorted(out.glob("*.tflite")) + sorted((out / "rejected").glob("*.tflite"))


def inputs_for(model: bytes, samples: int, mnist):
    """The mnist5k test images where the model takes them, else seeded uniform inputs of its input shape."""
    import numpy as np

    from kit.core.tflite_file import read_tflite

    info = read_tflite(model)
    shape = tuple(info.tensor(info.inputs[0]).shape[1:])
    if int(np.prod(shape)) == int(np.prod(mnist.x_test.shape[1:])):
        return mnist.x_test[:samples].reshape((-1, *shape)).astype(np.float32), "mnist5k test"
    return np.random.default_rng(0).random((samples, *shape), dtype=np.float32), "uniform random"


def row(name: str, data: bytes, x, where: str) -> list[str]:
    from kit.convert import check as checks

    from kit.core.tflite_file import read_tflite

    info = read_tflite(data)
    same_shape = info.tensor(info.outputs[0]).shape == info.tensor(info.inputs[0]).shape
    task = "autoencoder" if same_shape else "classification"  # top-1 means nothing for a reconstruction
    by = {c.runtime: c for c in checks.check(data, x, None, None, RUNTIMES, name=name, timeout_s=600, task=task)}
    x86, arm, compiled = by["litert"], by["litert-aarch64"], by["litert-compiled"]

    def loads(c) -> str:
        return "yes" if c.loads else f"no: {(c.error or '')[:70]}"

    def agree(c) -> str:
        if not (c.loads and x86.loads):
            return "-"
        top1 = "" if c.litert_agreement is None else f"{100 * c.litert_agreement:.1f}% "
        diff = "" if c.litert_max_diff is None else f"(max diff {c.litert_max_diff:.2g})"
        return (top1 + diff).strip() or "-"

    return [name, f"{len(data):,}", where, loads(x86), loads(arm), agree(arm), loads(compiled), agree(compiled)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipes", default=",".join(TABLE_RECIPES),
                   help=f"comma-separated, of {', '.join(RECIPES)} (default: {', '.join(TABLE_RECIPES)})")
    p.add_argument("--models", nargs="*", type=Path, default=None,
                   help=".tflite files instead of the MLPerf Tiny ones (default: those in ../shared)")
    p.add_argument("--samples", type=int, default=500, help="inputs per artifact (default 500)")
    a = p.parse_args()

    from kit.convert.check import aarch64_python
    from kit.core.errors import KitError
    from kit.core.paths import shared_dir
    from kit.core.tables import format_table
    from kit.data import load_data

    try:
        python = aarch64_python()
    except KitError as e:
        print(f"no board: {e.message}")
        return 2
    print(f"aarch64 board: {python}")
    mnist = load_data("mnist5k")
    work = Path(tempfile.mkdtemp(prefix="bench-aarch64-"))
    models: list[tuple[str, Path]] = []
    for recipe in [r for r in a.recipes.split(",") if r]:
        if recipe not in RECIPES:
            print(f"unknown recipe {recipe!r}: use {', '.join(RECIPES)}")
            return 2
        models += [(f"{recipe}/{m.parent.name + '/' if m.parent.name == 'rejected' else ''}{m.name}", m)
                   for m in recipe_artifacts(recipe, work, print)]
    if a.models is not None:
        models += [(m.name, m) for m in a.models]
    else:
        shared = shared_dir()
        folder = shared / "models" / "mlperf-tiny" if shared else None
        if folder is None or not folder.is_dir():
            print("../shared is absent: the MLPerf Tiny models are left out")
        else:
            models += [(f"mlperf/{n}", folder / n) for n in MLPERF if (folder / n).is_file()]
    rows = []
    t0 = time.time()
    for name, path in models:
        data = path.read_bytes()
        x, where = inputs_for(data, a.samples, mnist)
        rows.append(row(name, data, x, f"{len(x)} {where}"))
        print(f"  {name}: {time.time() - t0:.0f} s", flush=True)
    print()
    print(format_table(["artifact", "bytes", "inputs", "x86 LiteRT loads", "aarch64 loads",
                        "aarch64 vs x86: top-1 agree (max diff)", "CompiledModel loads",
                        "CompiledModel vs Interpreter (x86)"], rows, markdown=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
