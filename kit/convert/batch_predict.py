"""Run one .tflite over a batch of inputs, one sample at a time, on whatever LiteRT this Python has.

Standalone on purpose: the check runtime `litert-aarch64` runs this file with the emulated aarch64 board's
Python (aarch64 CPython + ai-edge-litert + numpy under qemu-user, no kit), and `kit.convert.check` imports
its (de)quantization so both architectures feed and read the model the same way. Imports only numpy and,
in `main`, ai_edge_litert.

    python batch_predict.py MODEL INPUTS.npy OUTPUTS.npy [--kernels default|builtin]

INPUTS holds float samples (N, *input shape without the batch); OUTPUTS gets the first output, dequantized,
as float32 (N, elements). One JSON line on stdout says how it went: {"status": "ok", "seconds": …} or
{"status": "load" | "run", "error": …}.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def qparams(detail: dict) -> tuple[float, int]:
    """(scale, zero point) of an Interpreter tensor detail: per-tensor, or the first channel's."""
    qp = detail.get("quantization_parameters") or {}
    scales = qp.get("scales", [])
    zps = qp.get("zero_points", [])
    if len(scales):
        return float(scales[0]), int(zps[0]) if len(zps) else 0
    scale, zp = detail.get("quantization", (0.0, 0))
    return float(scale), int(zp)


def quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    """Float samples in the tensor's dtype: cast for float tensors, scaled, rounded and clipped for integers."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return x.astype(dtype)
    scale, zp = qparams(detail)
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zp), info.min, info.max).astype(dtype)


def dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    """A tensor's values as float32."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return y.astype(np.float32)
    scale, zp = qparams(detail)
    return ((y.astype(np.float32) - zp) * scale).astype(np.float32)


def _report(**fields) -> int:
    print(json.dumps(fields), flush=True)
    return 0 if fields.get("status") == "ok" else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("inputs")
    p.add_argument("outputs")
    p.add_argument("--kernels", choices=("default", "builtin"), default="default",
                   help="LiteRT's default delegate (XNNPACK) or its built-in kernels only")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        kwargs = {}
        if a.kernels == "builtin":
            kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        it = Interpreter(model_path=a.model, num_threads=1, **kwargs)
        it.allocate_tensors()
        inp, out = it.get_input_details()[0], it.get_output_details()[0]
    except Exception as e:  # the runtime's own words are the finding
        return _report(status="load", error=" ".join(f"{e}".split()) or type(e).__name__)
    x = np.load(a.inputs, allow_pickle=False)
    outs = []
    try:
        for xi in x:
            it.set_tensor(inp["index"], quantize(xi[None], inp).reshape(inp["shape"]))
            it.invoke()
            outs.append(dequantize(it.get_tensor(out["index"]), out).reshape(-1))
    except Exception as e:
        return _report(status="run", error=" ".join(f"{e}".split()) or type(e).__name__)
    np.save(a.outputs, np.stack(outs) if outs else np.zeros((0, 0), np.float32))
    return _report(status="ok", seconds=time.perf_counter() - t0)


if __name__ == "__main__":
    sys.exit(main())
