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


def _load_runtime():
    try:
        from ai_edge_litert import interpreter as mod

        import ai_edge_litert

        return mod, "ai_edge_litert", getattr(ai_edge_litert, "__version__", None) or _dist_version("ai-edge-litert")
    except ImportError:
        pass
    try:
        from tflite_runtime import interpreter as mod

        import tflite_runtime

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
    rng = np.random.default_rng(a.seed)
    batch = np.load(a.input) if a.input else None
    live, samples, medians = [], [], []
    clock = time.perf_counter_ns
    instances = max(1, min(a.instances, a.runs))
    for i in range(instances):
        t0 = clock()
        try:
            it = mod.Interpreter(**kwargs)
            it.allocate_tensors()
        except Exception as e:  # the runtime's own message is the useful part
            print(json.dumps({"error": f"model does not load on {runtime}: {e}"}))
            return 4
        if i == 0:
            init_us = (clock() - t0) / 1e3
            details = it.get_input_details()
            if batch is not None:
                inputs = [batch.astype(details[0]["dtype"]).reshape(details[0]["shape"])]
            else:
                inputs = [_make_input(np, d, rng) for d in details]
        for d, x in zip(details, inputs):
            it.set_tensor(d["index"], x)
        live.append(it)  # kept alive, so the next interpreter's buffers land elsewhere
        invoke = it.invoke
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
            rss_after = _rss_bytes()  # memory of one interpreter, as a deployment has
    out = it.get_tensor(it.get_output_details()[0]["index"])
    print(
        json.dumps(
            {
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
