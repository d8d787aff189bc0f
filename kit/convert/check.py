"""Load an artifact on each runtime it may run on and measure what it computes there.

Runtimes: LiteRT with its default delegate (XNNPACK), LiteRT built-in kernels
only, and TensorFlow Lite Micro's Python runtime. A runtime that refuses the
model is recorded with its own error message, never as a success. The C++
runtimes trust the flatbuffer, so each (artifact, runtime) pair is loaded and
run over all samples in one child process with a time limit: a crash or a spin
is recorded as that runtime's error instead of ending the kit.
"""
from __future__ import annotations

import time

import numpy as np

from kit.core.artifact import RuntimeCheck
from kit.core.errors import ModelError
from kit.core.isolate import DEFAULT_TIMEOUT_S, ChildException, RuntimeFailure, progress, run_isolated
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


#: samples between progress reports; each report restarts the child's time limit
_PROGRESS_EVERY = 256


def _load_and_run(model: bytes, runtime: str, x: np.ndarray | None) -> tuple[str, str | None, np.ndarray | None,
                                                                              float]:
    """In a child: ("load", error, …) when the runtime refuses the model, ("run", error, …) when it fails on
    a sample, else ("ok", None, outputs, seconds) — outputs None when `x` is None (load only); seconds is
    the wall time of loading and running in the child."""
    t0 = time.perf_counter()
    try:
        with capture_native_output() as log:
            run = _Runner(model, runtime)
    except Exception as e:
        return "load", _describe(e, log.text), None, 0.0
    if x is None:
        return "ok", None, None, time.perf_counter() - t0
    progress("running")
    outs = []
    try:
        for i, xi in enumerate(x):
            if i and i % _PROGRESS_EVERY == 0:
                progress("running")
            outs.append(run(xi))
    except Exception as e:
        return "run", str(e).strip() or type(e).__name__, None, 0.0
    return "ok", None, np.stack(outs) if outs else np.zeros((0, 0), np.float32), time.perf_counter() - t0


def _isolated(model: bytes, runtime: str, x: np.ndarray | None, name: str,
              timeout_s: float) -> tuple[str, str | None, np.ndarray | None, float]:
    return run_isolated(_load_and_run, (model, runtime, x), runtime=runtime, file=name, action="loading",
                        timeout_s=timeout_s)


def load_error(model: bytes, runtime: str, name: str = "model.tflite",
               timeout_s: float = DEFAULT_TIMEOUT_S) -> str | None:
    """None when the runtime loads the model, else the runtime's own error text (or how it crashed)."""
    try:
        status, error, _, _ = _isolated(model, runtime, None, name, timeout_s)
    except RuntimeFailure as e:
        return e.message
    except ChildException as e:
        return f"{runtime} failed loading {name}: {e}"
    return error if status != "ok" else None


def _describe(e: Exception, native: str) -> str:
    detail = runtime_messages(native)
    text = str(e).strip() or type(e).__name__
    return f"{text} ({detail})" if detail and detail not in text else text


def predict(model: bytes, runtime: str, x: np.ndarray, name: str = "model.tflite",
            timeout_s: float = DEFAULT_TIMEOUT_S) -> np.ndarray:
    """Outputs of `model` on `runtime` for every sample of `x` (run in a child); ModelError when it fails."""
    status, error, out, _ = _isolated(model, runtime, x, name, timeout_s)
    if status == "load":
        raise ModelError(f"{runtime} cannot load {name}: {error}")
    if status == "run":
        raise ModelError(f"{runtime} loads {name} but fails to run it: {error}")
    return out


def check(model: bytes, x: np.ndarray, y: np.ndarray | None, reference: np.ndarray | None,
          runtimes: tuple[str, ...] = RUNTIMES, name: str = "model.tflite",
          timeout_s: float = DEFAULT_TIMEOUT_S) -> list[RuntimeCheck]:
    """Run `model` on every runtime over `x`; compare with labels `y` and reference outputs.

    `timeout_s` bounds loading and each stretch of samples between progress reports, not the whole run.
    """
    results = []
    for rt in runtimes:
        try:
            status, error, out, seconds = _isolated(model, rt, x, name, timeout_s)
        except RuntimeFailure as e:
            results.append(RuntimeCheck(rt, loads=False, error=e.message))
            continue
        except ChildException as e:
            results.append(RuntimeCheck(rt, loads=False, error=f"{rt} failed on {name}: {e}"))
            continue
        if status == "load":
            results.append(RuntimeCheck(rt, loads=False, error=error))
        elif status == "run":
            results.append(RuntimeCheck(rt, loads=False, error=f"loads but fails to run: {error}"))
        else:
            results.append(score(rt, out, y, reference, seconds))
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
