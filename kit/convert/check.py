"""Load an artifact on each runtime it may run on and measure what it computes there.

Runtimes: LiteRT with its default delegate (XNNPACK), LiteRT built-in kernels
only, and TensorFlow Lite Micro's Python runtime. A runtime that refuses the
model is recorded with its own error message, never as a success.
"""
from __future__ import annotations

import time

import numpy as np

from kit.core.artifact import RuntimeCheck
from kit.core.native import capture_native_output, runtime_messages
from kit.core.vocab import RUNTIMES

__all__ = ["RUNTIMES", "RuntimeCheck", "check", "load_error", "predict", "score"]


class _Runner:
    """Batch-1 inference with (de)quantization of int8/uint8 inputs and outputs."""

    def __init__(self, model: bytes, runtime: str):
        self.runtime = runtime
        if runtime == "tflm":
            from tflite_micro.python.tflite_micro import runtime as tflm

            self.it = tflm.Interpreter.from_bytes(model)
            self.inp = self.it.get_input_details(0)
            self.out = self.it.get_output_details(0)
        else:
            from ai_edge_litert.interpreter import Interpreter, OpResolverType

            kwargs = {}
            if runtime == "litert-builtin":
                kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
            self.it = Interpreter(model_content=model, num_threads=1, **kwargs)
            self.it.allocate_tensors()
            self.inp = self.it.get_input_details()[0]
            self.out = self.it.get_output_details()[0]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        q = _quantize(x[None], self.inp)
        if self.runtime == "tflm":
            self.it.set_input(q.reshape(self.inp["shape"]), 0)
            self.it.invoke()
            y = self.it.get_output(0)
        else:
            self.it.set_tensor(self.inp["index"], q.reshape(self.inp["shape"]))
            self.it.invoke()
            y = self.it.get_tensor(self.out["index"])
        return _dequantize(y, self.out).reshape(-1)


def _qparams(detail: dict) -> tuple[float, int]:
    qp = detail.get("quantization_parameters") or {}
    scales = qp.get("scales", [])
    zps = qp.get("zero_points", [])
    if len(scales):
        return float(scales[0]), int(zps[0]) if len(zps) else 0
    scale, zp = detail.get("quantization", (0.0, 0))
    return float(scale), int(zp)


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return x.astype(dtype)
    scale, zp = _qparams(detail)
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zp), info.min, info.max).astype(dtype)


def _dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return y.astype(np.float32)
    scale, zp = _qparams(detail)
    return ((y.astype(np.float32) - zp) * scale).astype(np.float32)


def load_error(model: bytes, runtime: str) -> str | None:
    """None when the runtime loads the model, else the runtime's own error text."""
    try:
        with capture_native_output() as log:
            _Runner(model, runtime)
        return None
    except Exception as e:
        return _describe(e, log.text)


def _describe(e: Exception, native: str) -> str:
    detail = runtime_messages(native)
    text = str(e).strip() or type(e).__name__
    return f"{text} ({detail})" if detail and detail not in text else text


def predict(model: bytes, runtime: str, x: np.ndarray) -> np.ndarray:
    with capture_native_output():
        run = _Runner(model, runtime)
    return np.stack([run(xi) for xi in x])


def check(model: bytes, x: np.ndarray, y: np.ndarray | None, reference: np.ndarray | None,
          runtimes: tuple[str, ...] = RUNTIMES) -> list[RuntimeCheck]:
    """Run `model` on every runtime over `x`; compare with labels `y` and reference outputs."""
    results = []
    for rt in runtimes:
        t0 = time.perf_counter()
        try:
            with capture_native_output() as log:
                run = _Runner(model, rt)
        except Exception as e:
            results.append(RuntimeCheck(rt, loads=False, error=_describe(e, log.text)))
            continue
        try:
            out = np.stack([run(xi) for xi in x])
        except Exception as e:
            results.append(RuntimeCheck(rt, loads=False, error=f"loads but fails to run: {e}"))
            continue
        results.append(score(rt, out, y, reference, time.perf_counter() - t0))
    return results


def score(runtime: str, out: np.ndarray, y: np.ndarray | None, reference: np.ndarray | None,
          seconds: float | None = None) -> RuntimeCheck:
    r = RuntimeCheck(runtime, loads=True, samples=len(out), seconds=seconds)
    pred = out.argmax(axis=1)
    if y is not None:
        r.top1 = float(np.mean(pred == y))
        if out.shape[1] > 5:
            top5 = np.argsort(-out, axis=1)[:, :5]
            r.top5 = float(np.mean((top5 == y[:, None]).any(axis=1)))
    if reference is not None:
        ref = reference.reshape(len(out), -1)
        r.agreement = float(np.mean(pred == ref.argmax(axis=1)))
        r.max_abs_error = float(np.max(np.abs(out - ref)))
    return r
