"""STAND-IN for TFLite's `benchmark_model`, run only by the emulated phone of the ADB tests.

This is not the real tool. It runs the model with the LiteRT Python
interpreter on the host and prints the result in benchmark_model's text format
(as in the real outputs under ../shared/reference/benchmark_model/, with the
`INFO: ` prefix of newer LiteRT builds), so that the ADB target's push, run,
parse and clean-up path runs end to end on real model timings. Its first
output line says it is a stand-in. The tests copy it with a shebang for the
test interpreter and push that copy as the "benchmark_model binary".
"""
import math
import os
import resource
import sys
import time

_KNOWN = {"graph", "num_threads", "warmup_runs", "num_runs", "warmup_min_secs", "min_secs", "max_secs",
          "use_xnnpack", "use_gpu", "use_nnapi", "enable_op_profiling"}


def log(text=""):
    print(f"INFO: {text}", flush=True)


def error(text):
    print(f"ERROR: {text}", flush=True)


def _rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _stats(samples):
    """benchmark_model's Stat<int64_t> line: integers, the average with 6 significant digits."""
    if len(set(samples)) == 1:
        return f"count={len(samples)} curr={samples[-1]}" + ("(all same)" if len(samples) > 1 else "")
    avg = sum(samples) / len(samples)
    std = int(math.sqrt(max(sum(s * s for s in samples) / len(samples) - avg * avg, 0.0)))
    return (f"count={len(samples)} first={samples[0]} curr={samples[-1]} min={min(samples)} max={max(samples)} "
            f"avg={avg:g} std={std}")


def _timed_invokes(interpreter, n):
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        interpreter.invoke()
        out.append(int(round((time.perf_counter() - t0) * 1e6)))
    return out


def _fill_inputs(np, interpreter):
    rng = np.random.default_rng(0)
    for detail in interpreter.get_input_details():
        shape = [max(int(d), 1) for d in detail["shape"]]
        dtype = detail["dtype"]
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            value = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
        else:
            value = rng.random(size=shape).astype(dtype)
        interpreter.set_tensor(detail["index"], value)


def main(argv):
    start_rss = _rss_mb()
    log("[stand-in] prunekit test stand-in for benchmark_model: LiteRT Python interpreter on the test host, "
        "not TFLite's benchmark_model binary")
    flags = {}
    for arg in argv:
        key, sep, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        if not sep:
            error(f"cannot read argument {arg!r}")
            return 1
        flags[key] = value
    unknown = sorted(set(flags) - _KNOWN)
    if unknown:
        error("Unconsumed cmdline flags: " + " ".join(f"--{k}" for k in unknown))
        return 1
    log("STARTING!")
    log("Log parameter values verbosely: [0]")
    graph = flags.get("graph", "")
    threads = int(flags.get("num_threads", "-1"))
    warmup = int(flags.get("warmup_runs", "1"))
    runs = int(flags.get("num_runs", "50"))
    log(f"Num threads: [{threads}]")
    log(f"Graph: [{graph}]")
    if flags.get("use_gpu") == "true" or flags.get("use_nnapi") == "true":
        error("[stand-in] the emulated phone has no GPU or NNAPI delegate")
        error("Benchmarking failed.")
        return 1
    if not graph:
        error("Please specify the name of your TF Lite input file with --graph")
        error("Benchmarking failed.")
        return 1
    log(f"#threads used for CPU inference: [{threads}]")
    if flags.get("enable_op_profiling") == "true":
        log("[stand-in] op profiling is not emulated: no op tables follow")

    import numpy as np
    from ai_edge_litert import interpreter as litert

    resolver = (litert.OpResolverType.AUTO if flags.get("use_xnnpack", "true") == "true"
                else litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    t0 = time.perf_counter()
    try:
        interpreter = litert.Interpreter(model_path=graph, num_threads=threads if threads > 0 else None,
                                         experimental_op_resolver_type=resolver)
        interpreter.allocate_tensors()
    except Exception as e:  # the real tool reports any load failure the same way
        error(f"Failed to load model {graph}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
        error("Benchmarking failed.")
        return 1
    init_us = int(round((time.perf_counter() - t0) * 1e6))
    init_rss = _rss_mb()
    log(f"Loaded model {graph}")
    log(f"The input model file size (MB): {os.path.getsize(graph) / 1024 / 1024:g}")
    log(f"Initialized session in {init_us / 1000:g}ms.")
    _fill_inputs(np, interpreter)

    log(f"Running benchmark for at least {warmup} iterations and at least 0 seconds but terminate if "
        "exceeding 150 seconds.")
    warm = _timed_invokes(interpreter, warmup)
    log(_stats(warm) if warm else "count=0")
    log()
    log(f"Running benchmark for at least {runs} iterations and at least 0 seconds but terminate if "
        "exceeding 150 seconds.")
    timed = _timed_invokes(interpreter, runs)
    log(_stats(timed))
    log()
    first = (warm or timed)[0]
    warm_avg = sum(warm) / len(warm) if warm else 0.0
    log(f"Inference timings in us: Init: {init_us}, First inference: {first}, Warmup (avg): {warm_avg:g}, "
        f"Inference (avg): {sum(timed) / len(timed):g}")
    log("Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the "
        "actual memory footprint of the model at runtime. Take the information at your discretion.")
    overall = _rss_mb()
    log(f"Memory footprint delta from the start of the tool (MB): init={init_rss - start_rss:g} "
        f"overall={overall - start_rss:g}")
    log(f"Overall peak memory footprint (MB) via periodic monitoring: {overall:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
