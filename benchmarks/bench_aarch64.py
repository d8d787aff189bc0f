"""Do artifacts load on aarch64 LiteRT, and do they predict what x86 LiteRT predicts?

Runs every artifact on x86 LiteRT (this venv) and on the emulated aarch64 board (`kit board arm64 DIR`,
aarch64 CPython + ai-edge-litert under qemu-user) with the same test inputs, with the default delegate
(XNNPACK) and with the built-in kernels only, and prints per artifact and kernel set: loads on aarch64
(yes / no with the runtime's message), top-1 agreement x86 vs aarch64 and the largest output difference.
Latency under emulation means nothing and is not printed.

  KIT_ARM64_BOARD=~/.cache/prunekit/arm64-board python benchmarks/bench_aarch64.py [ARTIFACT.tflite ...]

Without artifacts it trains a small pruned MLP on `digits` and converts it to every format.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# runs on both interpreters; prints one JSON line per (model, kernels)
PROBE = r'''
import json, sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType
inputs = np.load(sys.argv[1])
for path in sys.argv[2:]:
    x = inputs[path]
    for kernels in ("default", "builtin"):
        rec = {"model": path, "kernels": kernels}
        kw = {"model_path": path, "num_threads": 1}
        if kernels == "builtin":
            kw["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            it = Interpreter(**kw)
            d, o = it.get_input_details()[0], it.get_output_details()[0]
            it.resize_tensor_input(d["index"], [len(x), *d["shape"][1:]])
            it.allocate_tensors()
            it.set_tensor(d["index"], x)
            it.invoke()
            y = it.get_tensor(o["index"]).astype(np.float64)
            if o["dtype"] != np.float32:
                s, z = o["quantization"]
                y = (y - z) * s
            rec["out"] = y.reshape(len(x), -1).tolist()
        except Exception as e:
            rec["error"] = f"{type(e).__name__}: {e}".replace("\n", " ")[:300]
        print(json.dumps(rec), flush=True)
'''


def run_probe(python: list[str], script: Path, inputs: Path, models: list[Path]) -> dict:
    res = subprocess.run([*python, str(script), str(inputs), *map(str, models)], capture_output=True, text=True,
                         timeout=3600, check=False)
    rows = [json.loads(ln) for ln in res.stdout.splitlines() if ln.startswith("{")]
    if not rows:
        raise SystemExit(f"{python[0]} printed nothing: {res.stderr[-800:]}")
    return {(r["model"], r["kernels"]): r for r in rows}


def main() -> int:
    import numpy as np

    from targets.emulated_arm64 import WRAPPER_NAME
    from tests.support.arm64_board import board_dir, digits_artifacts, quantized_input

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("artifacts", nargs="*", type=Path)
    p.add_argument("--samples", type=int, default=100, help="test inputs per artifact")
    a = p.parse_args()
    board, why = board_dir()
    if board is None:
        print(f"no board: {why}")
        return 2
    work = Path(tempfile.mkdtemp(prefix="bench-aarch64-"))
    if a.artifacts:
        models = a.artifacts
        batch = None
    else:
        formats = ("float32", "float16", "dynamic", "int8", "float32-sparse", "float16-sparse", "int8-sparse")
        made, _, x_test = digits_artifacts(work, formats)
        models, batch = list(made.values()), x_test[:a.samples].astype(np.float32)
    arrays = {}
    for m in models:
        from ai_edge_litert.interpreter import Interpreter

        shape = Interpreter(model_path=str(m)).get_input_details()[0]["shape"]
        x = batch if batch is not None and list(shape[1:]) == list(batch.shape[1:]) else \
            np.random.default_rng(0).random((a.samples, *shape[1:]), dtype=np.float32)
        arrays[str(m)] = quantized_input(m, x)
    np.savez(work / "inputs.npz", **arrays)
    script = work / "probe.py"
    script.write_text(PROBE)
    t0 = time.time()
    x86 = run_probe([sys.executable], script, work / "inputs.npz", models)
    t1 = time.time()
    arm = run_probe([str(board / WRAPPER_NAME)], script, work / "inputs.npz", models)
    t2 = time.time()
    print(f"x86 LiteRT {t1 - t0:.1f} s, emulated aarch64 LiteRT {t2 - t1:.1f} s (wall, all artifacts)")
    print(f"{'artifact':32} {'kernels':8} {'x86':10} {'aarch64':44} {'top-1 agree':>11} {'max |diff|':>10}")
    for key in sorted(x86):
        r, o = x86[key], arm.get(key, {"error": "missing"})
        name = Path(key[0]).name
        loads_x86 = "yes" if "out" in r else "no"
        loads_arm = "yes" if "out" in o else f"no: {o['error'][:40]}"
        agree = diff = "-"
        if "out" in r and "out" in o:
            yr, yo = np.array(r["out"]), np.array(o["out"])
            agree = f"{np.mean(yr.argmax(1) == yo.argmax(1)) * 100:.1f}%"
            diff = f"{np.max(np.abs(yr - yo)):.2e}"
        print(f"{name:32} {key[1]:8} {loads_x86:10} {loads_arm:44} {agree:>11} {diff:>10}")
        if "error" in o and "out" not in o:
            print(f"{'':41} aarch64: {o['error']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
