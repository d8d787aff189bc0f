#!/usr/bin/env python3
"""Self-contained device runner: times a .tflite model and prints one JSON object.

Copied as-is to boards (it needs only numpy and ai_edge_litert or
tflite_runtime) and run locally in a fresh process, so that every Linux
target measures the same way. Keep it free of project imports.
"""
import argparse
import json
import os
import platform
import resource
import sys
import time
from typing import Callable, NamedTuple


def _load_runtime():
    try:
        import ai_edge_litert
        from ai_edge_litert import interpreter as mod

        return mod, "ai_edge_litert", getattr(ai_edge_litert, "__version__", None) or _dist_version("ai-edge-litert")
    except ImportError:
        pass
    try:
        import tflite_runtime
        from tflite_runtime import interpreter as mod

        return mod, "tflite_runtime", getattr(tflite_runtime, "__version__", None)
    except ImportError:
        pass
    raise SystemExit(json.dumps({"error": "neither ai_edge_litert nor tflite_runtime is installed on this device"}))


def _dist_version(name):
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return None


def _cpu_name():
    """x86 says `model name`, ARM boards `Hardware`/`Model` (Raspberry Pi names itself there)."""
    found = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if ":" in line:
                    key, value = line.split(":", 1)
                    found.setdefault(key.strip().lower(), value.strip())
    except OSError:
        pass
    for key in ("model name", "model", "hardware", "cpu model"):
        if found.get(key) and not found[key].isdigit():
            return found[key]
    return platform.processor() or platform.machine()


def _rss_bytes():
    """Peak resident set size of this process so far."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _make_input(np, detail, rng):
    shape = [int(d) if d > 0 else 1 for d in detail["shape"]]
    dtype = detail["dtype"]
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(bool)
    return rng.random(size=shape, dtype=np.float32).astype(dtype)


#: sizeof(LiteRtLayout): rank and has_strides bit fields in one uint32, int32 dimensions[8], uint32 strides[8]
_LAYOUT_BYTES = 4 + 8 * 4 + 8 * 4


def _op_profile(np, model_path, threads, runs, inputs):
    """Per-op time from LiteRT's own profiler: {"summary": text} or {"error": why not}.

    The Python `Interpreter` has no profiler, so this drives the runtime's C API (libLiteRt, shipped in the
    ai_edge_litert wheel) through ctypes: a CompiledModel on the CPU accelerator (XNNPACK) with runtime
    option `enable_profiling`, run `runs` times on the same input, then the runtime's own summary (the
    tables `benchmark_model --enable_op_profiling` prints). Any step that fails names itself.
    """
    import ctypes

    try:
        import ai_edge_litert
    except ImportError:
        return {"error": "the device runs tflite_runtime, which has no profiler API (ai-edge-litert 2.x has one)"}
    path = os.path.join(os.path.dirname(ai_edge_litert.__file__), "libLiteRt.so")
    if not os.path.isfile(path):
        return {"error": f"this ai_edge_litert has no {os.path.basename(path)} with the profiler API"}
    try:
        lib = ctypes.CDLL(path)
    except OSError as e:
        return {"error": f"cannot load {path}: {e}"}
    if not hasattr(lib, "LiteRtGetProfileSummary"):
        return {"error": "this LiteRT build does not export LiteRtGetProfileSummary"}
    P, size_t = ctypes.c_void_p, ctypes.c_size_t
    for name in ("LiteRtDestroyEnvironment", "LiteRtDestroyModel", "LiteRtDestroyCompiledModel",
                 "LiteRtDestroyOptions", "LiteRtDestroyTensorBuffer"):
        getattr(lib, name).restype = None

    class Failed(Exception):
        pass

    def call(name, *args):
        status = getattr(lib, name)(*args)
        if status != 0:
            raise Failed(f"{name} returned LiteRT status {status}")

    env, model, options, cm, profiler, signature = P(), P(), P(), P(), P(), P()
    keep = []  # option payloads and the no-op destructor outlive the compiled model
    buffers = []
    try:
        call("LiteRtCreateEnvironment", ctypes.c_int(0), None, ctypes.byref(env))
        call("LiteRtCreateModelFromFile", env, ctypes.c_char_p(model_path.encode()), ctypes.byref(model))
        call("LiteRtCreateOptions", ctypes.byref(options))
        call("LiteRtSetOptionsHardwareAccelerators", options, ctypes.c_int(1))  # kLiteRtHwAcceleratorCpu
        no_op = ctypes.CFUNCTYPE(None, P)(lambda _: None)
        keep.append(no_op)
        for identifier, toml in ((b"runtime_options_string", "enable_profiling = true\n"),
                                 (b"xnnpack", f"num_threads = {int(threads)}\n")):
            payload, opaque = ctypes.create_string_buffer(toml.encode()), P()
            keep.append(payload)
            call("LiteRtCreateOpaqueOptions", ctypes.c_char_p(identifier), ctypes.cast(payload, P), no_op,
                 ctypes.byref(opaque))
            call("LiteRtAddOpaqueOptions", options, opaque)
        call("LiteRtCreateCompiledModel", env, model, options, ctypes.byref(cm))
        call("LiteRtCompiledModelGetProfiler", cm, ctypes.byref(profiler))
        if not profiler.value:
            raise Failed("the compiled model has no profiler")
        call("LiteRtGetModelSignature", model, size_t(0), ctypes.byref(signature))
        lists = {}
        for kind in ("Input", "Output"):
            count = size_t()
            call(f"LiteRtGetNumSignature{kind}s", signature, ctypes.byref(count))
            lists[kind] = []
            if kind == "Output":
                layouts = ctypes.create_string_buffer(_LAYOUT_BYTES * max(1, count.value))
                call("LiteRtGetCompiledModelOutputTensorLayouts", cm, size_t(0), count, layouts, ctypes.c_bool(True))
            for i in range(count.value):
                tensor, req, buf = P(), P(), P()
                tensor_type = ctypes.create_string_buffer(512)  # LiteRtRankedTensorType, passed back unread
                call(f"LiteRtGetSignature{kind}TensorByIndex", signature, size_t(i), ctypes.byref(tensor))
                call("LiteRtGetRankedTensorType", tensor, tensor_type)
                call(f"LiteRtGetCompiledModel{kind}BufferRequirements", cm, size_t(0), size_t(i),
                     ctypes.byref(req))
                # the compiled shape (a declared -1 batch is 1 there); the layout follows the int32 element type
                if kind == "Input":
                    call("LiteRtGetCompiledModelInputTensorLayout", cm, size_t(0), size_t(i),
                         ctypes.byref(tensor_type, 4))
                else:
                    ctypes.memmove(ctypes.byref(tensor_type, 4), ctypes.byref(layouts, i * _LAYOUT_BYTES),
                                   _LAYOUT_BYTES)
                call("LiteRtCreateManagedTensorBufferFromRequirements", env, tensor_type, req, ctypes.byref(buf))
                buffers.append(buf)
                lists[kind].append(buf)
        if len(lists["Input"]) != len(inputs):
            raise Failed(f"the signature has {len(lists['Input'])} inputs, the interpreter {len(inputs)}")
        for buf, x in zip(lists["Input"], inputs):
            data = np.ascontiguousarray(x).tobytes()
            size, addr = size_t(), P()
            call("LiteRtGetTensorBufferSize", buf, ctypes.byref(size))
            call("LiteRtLockTensorBuffer", buf, ctypes.byref(addr), ctypes.c_int(1))  # write
            ctypes.memmove(addr, data, min(size.value, len(data)))
            call("LiteRtUnlockTensorBuffer", buf)
        ins = (P * len(lists["Input"]))(*lists["Input"])
        outs = (P * len(lists["Output"]))(*lists["Output"])
        run = (cm, size_t(0), size_t(len(lists["Input"])), ins, size_t(len(lists["Output"])), outs)
        call("LiteRtRunCompiledModel", *run)  # first run outside the profile, as the timed runs have warm-up
        call("LiteRtStartProfiler", profiler)
        for _ in range(runs):
            call("LiteRtRunCompiledModel", *run)
        call("LiteRtStopProfiler", profiler)
        summary = ctypes.c_char_p()
        call("LiteRtGetProfileSummary", profiler, cm, ctypes.byref(summary))
        text = (summary.value or b"").decode("utf-8", "replace")
        return {"summary": text, "runs": runs, "threads": int(threads),
                "how": "LiteRT CompiledModel profiler (C API), CPU accelerator"}
    except (Failed, AttributeError, OSError) as e:
        return {"error": f"LiteRT's profiler could not run: {e}"}
    finally:
        for buf in buffers:
            lib.LiteRtDestroyTensorBuffer(buf)
        if cm.value:
            lib.LiteRtDestroyCompiledModel(cm)
        if options.value:
            lib.LiteRtDestroyOptions(options)
        if model.value:
            lib.LiteRtDestroyModel(model)
        if env.value:
            lib.LiteRtDestroyEnvironment(env)


class _InterpreterMaker:
    """Makes Interpreter instances: `make()` -> an object with input_details, set_inputs, invoke, output."""

    def __init__(self, mod, kwargs):
        self.mod, self.kwargs = mod, kwargs

    def __call__(self):
        it = self.mod.Interpreter(**self.kwargs)
        it.allocate_tensors()
        details = it.get_input_details()

        def set_inputs(xs):
            for d, x in zip(details, xs):
                it.set_tensor(d["index"], x)

        return _Instance(details, set_inputs, it.invoke,
                         lambda: it.get_tensor(it.get_output_details()[0]["index"]), it)


class _CompiledMaker:
    """Makes CompiledModel instances (LiteRT's newer API, CPU accelerator = XNNPACK, `threads` threads)."""

    def __init__(self, model_path, threads):
        from ai_edge_litert.compiled_model import (
            CompiledModel,
            CpuOptions,
            HardwareAccelerator,
            Options,
        )

        self.model_path, self.threads = model_path, threads
        self.CompiledModel, self.CpuOptions, self.HardwareAccelerator, self.Options = (
            CompiledModel, CpuOptions, HardwareAccelerator, Options)

    def __call__(self):
        import numpy as np

        options = self.Options(hardware_accelerators=self.HardwareAccelerator.CPU,
                               cpu_options=self.CpuOptions(num_threads=int(self.threads)))
        cm = self.CompiledModel.from_file(self.model_path, options=options)
        key = cm.get_signature_by_index(0)["key"]
        ins = list(cm.get_input_tensor_details(key).values())
        outs = list(cm.get_output_tensor_details(key).values())
        in_buffers, out_buffers = cm.create_input_buffers(0), cm.create_output_buffers(0)
        details = [{"dtype": np.dtype(d["dtype"]), "shape": list(d["shape"])} for d in ins]

        def set_inputs(xs):
            for buf, x in zip(in_buffers, xs):
                buf.write(np.ascontiguousarray(x))

        first = outs[0]
        return _Instance(details, set_inputs, lambda: cm.run_by_index(0, in_buffers, out_buffers),
                         lambda: out_buffers[0].read(int(np.prod(first["shape"])), np.dtype(first["dtype"])),
                         (cm, in_buffers, out_buffers))


class _Instance(NamedTuple):
    """One loaded model of either API, as the timing loop uses it; `keep` holds what must outlive it."""

    input_details: list
    set_inputs: Callable
    invoke: Callable
    output: Callable
    keep: object


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("model", nargs="?")
    p.add_argument("--info", action="store_true", help="print only the device description")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--delegate", default="default", help="default | none | xnnpack | edgetpu")
    p.add_argument("--delegate-library", default=None, help="shared library of an external delegate")
    p.add_argument("--input", default=None, help=".npy file with the input batch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--instances", type=int, default=1,
                   help="split the runs over this many fresh interpreters, all kept alive")
    p.add_argument("--api", choices=("interpreter", "compiled"), default="interpreter",
                   help="LiteRT's Interpreter API, or its CompiledModel API on the CPU accelerator")
    p.add_argument("--op-profiling", action="store_true",
                   help="after the timed runs, time every op with LiteRT's own profiler")
    a = p.parse_args(argv)

    import numpy as np

    mod, runtime, runtime_version = _load_runtime()
    device = {
        "name": platform.node(),
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "python": platform.python_version(),
        "runtime": runtime,
        "runtime_version": runtime_version,
    }
    if a.info or not a.model:
        print(json.dumps({"device": device}))
        return 0
    rss_before = _rss_bytes()
    if a.api == "compiled":
        if a.delegate not in ("default", "xnnpack"):
            print(json.dumps({"error": f"the CompiledModel API runs LiteRT's CPU accelerator (XNNPACK); delegate "
                                       f"{a.delegate!r} is the Interpreter's: use --option api=interpreter"}))
            return 3
        try:
            make = _CompiledMaker(a.model, a.threads)
        except ImportError as e:
            print(json.dumps({"error": f"{runtime} {runtime_version} has no CompiledModel API ({e})"}))
            return 3
        device["api"] = "CompiledModel, CPU accelerator"
        device["runtime"] = f"{runtime} CompiledModel"
    else:
        kwargs = {"model_path": a.model, "num_threads": a.threads}
        if a.delegate == "none":
            kwargs["experimental_op_resolver_type"] = mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        elif a.delegate == "edgetpu":
            library = a.delegate_library or "libedgetpu.so.1"
            try:
                kwargs["experimental_delegates"] = [mod.load_delegate(library)]
            except (ValueError, OSError, RuntimeError) as e:
                print(json.dumps({"error": f"cannot load the delegate library {library}: {e}"}))
                return 5
        elif a.delegate not in ("default", "xnnpack"):
            print(json.dumps({"error": f"delegate {a.delegate!r} is not available in the Python runtime"}))
            return 3
        make = _InterpreterMaker(mod, kwargs)
    rng = np.random.default_rng(a.seed)
    batch = np.load(a.input) if a.input else None
    live, samples, medians = [], [], []
    clock = time.perf_counter_ns
    instances = max(1, min(a.instances, a.runs))
    for i in range(instances):
        t0 = clock()
        try:
            inst = make()
        except Exception as e:  # the runtime's own message is the useful part
            print(json.dumps({"error": f"model does not load on {runtime}: {e}"}))
            return 4
        if i == 0:
            init_us = (clock() - t0) / 1e3
            details = inst.input_details
            if batch is not None:
                inputs = [batch.astype(details[0]["dtype"]).reshape(details[0]["shape"])]
            else:
                inputs = [_make_input(np, d, rng) for d in details]
        inst.set_inputs(inputs)
        live.append(inst)  # kept alive, so the next instance's buffers land elsewhere
        invoke = inst.invoke
        t0 = clock()
        invoke()
        if i == 0:
            first_us = (clock() - t0) / 1e3
        for _ in range(a.warmup):
            invoke()
        own = []
        for _ in range(a.runs // instances + (1 if i < a.runs % instances else 0)):
            t0 = clock()
            invoke()
            own.append((clock() - t0) / 1e3)
        samples += own
        medians.append(float(np.median(own)))
        if i == 0:
            rss_after = _rss_bytes()  # memory of one instance, as a deployment has
    out = inst.output()
    extra = {}
    if a.op_profiling:
        if a.delegate in ("default", "xnnpack"):
            extra["op_profile"] = _op_profile(np, a.model, a.threads, max(1, min(a.runs, 100)), inputs)
        else:
            extra["op_profile"] = {"error": f"per-op times come from LiteRT's CPU accelerator (XNNPACK); "
                                            f"not available with delegate {a.delegate!r}"}
    print(
        json.dumps(
            {
                **extra,
                "samples_us": samples,
                "instance_medians_us": medians,
                "init_us": init_us,
                "first_inference_us": first_us,
                "peak_rss_bytes": rss_after,
                "model_rss_bytes": max(0, rss_after - rss_before),
                "output_checksum": float(np.asarray(out, dtype=np.float64).sum()),
                "device": device,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
