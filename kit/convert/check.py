"""Load an artifact on each runtime it may run on and measure what it computes there.

Runtimes: LiteRT's Interpreter API with its default delegate (XNNPACK), LiteRT
built-in kernels only, TensorFlow Lite Micro's Python runtime, and (opt-in)
LiteRT's CompiledModel API on its CPU accelerator and (opt-in) aarch64 LiteRT with its default
delegate on the emulated aarch64 board (`kit board arm64`), whose XNNPACK kernels are the ones phones and
Pis run. A runtime that refuses the
model is recorded with its own error message, never as a success; a LiteRT
without the CompiledModel API is recorded as "not available on this LiteRT". The C++
runtimes trust the flatbuffer, so each (artifact, runtime) pair is loaded and
run over all samples in one child process with a time limit: a crash or a spin
is recorded as that runtime's error instead of ending the kit. The aarch64 runtime runs in the board's own
process (kit.convert.batch_predict under qemu-user) with the same limits.
"""
from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from kit.convert import batch_predict
from kit.convert.batch_predict import dequantize, quantize
from kit.core.arm64_board import WRAPPER_NAME, find_board
from kit.core.artifact import RuntimeCheck
from kit.core.errors import KitError, ModelError
from kit.core.isolate import (
    DEFAULT_TIMEOUT_S,
    ChildException,
    RuntimeFailure,
    progress,
    run_isolated,
)
from kit.core.metrics import task_scores
from kit.core.native import capture_native_output, runtime_messages
from kit.core.vocab import DEFAULT_CHECK_RUNTIMES, RUNTIMES

__all__ = ["DEFAULT_CHECK_RUNTIMES", "EVAL_RUNTIMES", "RUNTIMES", "RuntimeCheck", "aarch64_python", "check", "load_error",
           "predict", "score"]

#: the runtimes `kit eval` runs when none is named: every one of this machine but the emulated aarch64 board's,
#: which is opt-in (emulation is slow)
EVAL_RUNTIMES = tuple(r for r in RUNTIMES if r != "litert-aarch64")

#: what the check calls on LiteRT's CompiledModel Python API (ai_edge_litert.compiled_model)
_COMPILED_API = ("from_buffer", "get_signature_by_index", "get_input_tensor_details", "get_output_tensor_details",
                 "create_input_buffers", "create_output_buffers", "run_by_index")


class _Unavailable(Exception):
    """The installed LiteRT lacks the API a runtime needs."""


def _litert_version() -> str:
    """`this LiteRT (ai-edge-litert 2.3.0)`, for a runtime the installed wheel cannot provide."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"this LiteRT (ai-edge-litert {version('ai-edge-litert')})"
    except PackageNotFoundError:
        return "this LiteRT (no ai-edge-litert installed)"


class _CompiledRunner:
    """Batch-1 inference through LiteRT's CompiledModel API on the CPU accelerator, one thread; the I/O tensors'
    quantization comes from the flatbuffer, as the CompiledModel's tensor details do not carry it."""

    def __init__(self, model: bytes):
        try:
            from ai_edge_litert.compiled_model import CompiledModel
            from ai_edge_litert.hardware_accelerator import HardwareAccelerator
        except ImportError as e:
            raise _Unavailable(f"not available on {_litert_version()}: {e}") from None
        missing = [m for m in _COMPILED_API if not hasattr(CompiledModel, m)]
        if missing:
            raise _Unavailable(f"not available on {_litert_version()}: its CompiledModel has no "
                               f"{', '.join(missing)}")
        from kit.core.tflite_file import read_tflite

        self.cm = CompiledModel.from_buffer(model, hardware_accel=HardwareAccelerator.CPU)  # its own error first
        info = read_tflite(model)
        key = self.cm.get_signature_by_index(0)["key"]
        ins = list(self.cm.get_input_tensor_details(key).values())
        outs = list(self.cm.get_output_tensor_details(key).values())
        if len(ins) != 1 or not outs:
            raise ModelError(f"the model's first signature has {len(ins)} inputs and {len(outs)} outputs; "
                             "the check runs models with one input")
        first_out = info.outputs[0] if info.outputs else None
        self.out_at = next((i for i, o in enumerate(outs) if o.get("index") == first_out), 0)
        self.inp = _detail(ins[0], info)
        self.out = _detail(outs[self.out_at], info)
        self.in_buffers = self.cm.create_input_buffers(0)
        self.out_buffers = self.cm.create_output_buffers(0)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.in_buffers[0].write(quantize(x[None], self.inp).reshape(self.inp["shape"]))
        self.cm.run_by_index(0, self.in_buffers, self.out_buffers)
        y = self.out_buffers[self.out_at].read(int(np.prod(self.out["shape"])), self.out["dtype"])
        return dequantize(y, self.out).reshape(-1)


def _detail(d: dict, info) -> dict:
    """A CompiledModel tensor detail in the Interpreter's terms (dtype, shape, per-tensor quantization)."""
    index = d.get("index")
    t = info.tensor(index) if isinstance(index, int) and 0 <= index < len(info.tensors) else None
    q = t.quantization if t is not None else None
    scale = q.scale if q is not None and q.scale is not None else 0.0
    zero_point = q.zero_point if q is not None and q.zero_point is not None else 0
    return {"dtype": np.dtype(d["dtype"]), "shape": list(d["shape"]), "quantization": (scale, zero_point)}


class Runner:
    """Batch-1 inference with (de)quantization of int8/uint8 inputs and outputs."""

    def __init__(self, model: bytes, runtime: str):
        self.runtime = runtime
        if runtime == "litert-compiled":
            self.compiled = _CompiledRunner(model)
        elif runtime == "tflm":
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
        if self.runtime == "litert-compiled":
            return self.compiled(x)
        q = quantize(x[None], self.inp)
        if self.runtime == "tflm":
            self.it.set_input(q.reshape(self.inp["shape"]), 0)
            self.it.invoke()
            y = self.it.get_output(0)
        else:
            self.it.set_tensor(self.inp["index"], q.reshape(self.inp["shape"]))
            self.it.invoke()
            y = self.it.get_tensor(self.out["index"])
        return dequantize(y, self.out).reshape(-1)


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
            run = Runner(model, runtime)
    except _Unavailable as e:
        return "load", str(e), None, 0.0
    except Exception as e:
        return "load", _describe(e, log.text, runtime), None, 0.0
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
    if runtime == "litert-aarch64":
        return _on_aarch64(model, x, name, timeout_s)
    return run_isolated(_load_and_run, (model, runtime, x), runtime=runtime, file=name, action="loading",
                        timeout_s=timeout_s)


def aarch64_python() -> Path:
    """The emulated aarch64 board's python; KitError naming how to build the board when there is none."""
    board, why = find_board()
    if board is None:
        raise KitError(f"the runtime litert-aarch64 needs the emulated aarch64 board: {why}",
                       "or drop litert-aarch64 from the recipe's [convert] targets")
    return board / WRAPPER_NAME


def _on_aarch64(model: bytes, x: np.ndarray | None, name: str,
                timeout_s: float) -> tuple[str, str | None, np.ndarray | None, float]:
    """`_load_and_run` on the emulated aarch64 board: batch_predict.py under its python, in a child process
    that is killed after `timeout_s` per stretch of samples between progress reports (plus the emulator's
    start); a crash is recorded with its exit status."""
    python = aarch64_python()
    batch = np.zeros((1, *np.shape(x)[1:]), np.float32) if x is None else np.asarray(x, np.float32)
    limit = timeout_s * (2 + len(batch) // _PROGRESS_EVERY)
    with tempfile.TemporaryDirectory(prefix="kit-aarch64-") as tmp:
        folder = Path(tmp)
        (folder / "model.tflite").write_bytes(model)
        np.save(folder / "inputs.npy", batch)
        command = [str(python), str(Path(batch_predict.__file__)), str(folder / "model.tflite"),
                   str(folder / "inputs.npy"), str(folder / "outputs.npy")]
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=limit, check=False)
        except subprocess.TimeoutExpired:
            return "load", f"litert-aarch64 did not finish {name} within {limit:.0f} s (emulated)", None, 0.0
        except OSError as e:
            return "load", f"cannot start the aarch64 board's python {python}: {e}", None, 0.0
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        try:
            status = json.loads(lines[-1]) if lines else {}
        except json.JSONDecodeError:
            status = {}
        if status.get("status") == "ok":
            out = np.load(folder / "outputs.npy", allow_pickle=False)
            return "ok", None, None if x is None else out, float(status.get("seconds", 0.0))
        if status.get("status") in ("load", "run"):
            return status["status"], str(status.get("error")), None, 0.0
        tail = " ".join(runtime_messages(proc.stderr).split()[-40:]) or proc.stderr.strip()[-300:]
        return "load", (f"litert-aarch64 ended with exit status {proc.returncode} on {name}"
                        + (f": {tail}" if tail else "")), None, 0.0


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


#: LiteRT environment lines about NPU and vendor compiler plugins it could not load: noise for a CPU check
_PLUGIN_NOISE = ("compiler_plugin", "Could not load shared library", "NPU accelerator could not be loaded")


def _describe(e: Exception, native: str, runtime: str = "") -> str:
    text = str(e).strip() or type(e).__name__
    if runtime == "litert-compiled":  # its errors span lines; its environment logs every plugin it tried
        text = " ".join(text.split())
        kept = [ln for ln in native.splitlines() if not any(n in ln for n in _PLUGIN_NOISE)]
        native = "\n".join(dict.fromkeys(kept))
    detail = runtime_messages(native)
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
          runtimes: tuple[str, ...] = DEFAULT_CHECK_RUNTIMES, name: str = "model.tflite",
          timeout_s: float = DEFAULT_TIMEOUT_S, task: str = "classification") -> list[RuntimeCheck]:
    """Run `model` on every runtime over `x`; score it for `task` against labels `y` and reference outputs.

    `timeout_s` bounds loading and each stretch of samples between progress reports, not the whole run.
    """
    results = []
    x86 = None  # LiteRT's outputs, which every other runtime's are compared with
    for rt in runtimes:
        try:
            status, error, out, seconds = _isolated(model, rt, x, name, timeout_s)
        except RuntimeFailure as e:
            results.append(RuntimeCheck(rt, loads=False, error=e.message, task=task))
            continue
        except ChildException as e:
            results.append(RuntimeCheck(rt, loads=False, error=f"{rt} failed on {name}: {e}", task=task))
            continue
        if status == "load":
            results.append(RuntimeCheck(rt, loads=False, error=error, task=task))
        elif status == "run":
            results.append(RuntimeCheck(rt, loads=False, error=f"loads but fails to run: {error}", task=task))
        else:
            results.append(score(rt, out, y, reference, seconds, task=task, x=x))
            if rt == "litert":
                x86 = out
            elif x86 is not None and x86.shape == out.shape and len(out):
                c = results[-1]
                diff = float(np.max(np.abs(out.astype(np.float64) - x86)))
                c.litert_max_diff = diff if np.isfinite(diff) else None
                if task == "classification":
                    c.litert_agreement = float(np.mean(out.argmax(axis=1) == x86.argmax(axis=1)))
    return results


def score(runtime: str, out: np.ndarray, y: np.ndarray | None, reference: np.ndarray | None,
          seconds: float | None = None, task: str = "classification", x: np.ndarray | None = None) -> RuntimeCheck:
    """The figures of `task` for one runtime's outputs (kit.core.metrics); `x` = the inputs, an autoencoder's
    targets."""
    figures = task_scores(task, out, x, y, reference)
    return RuntimeCheck(runtime, loads=True, samples=len(out), seconds=seconds, **figures)
