"""Deploy a .tflite model to a target, run it and report latency, memory and energy.

Examples:
  kit profile model.tflite                                   # the host, LiteRT
  kit profile model.tflite --target ssh://pi@raspberrypi --profile raspberry-pi-5
  kit profile model.tflite --target adb://SERIAL --benchmark-binary ./benchmark_model
  kit profile model.tflite --target serial:///dev/ttyACM0?baud=115200
"""
from __future__ import annotations

import argparse
from pathlib import Path

from kit.core.errors import KitError
from kit.core.jsonio import dumps as strict_dumps
from kit.core.paths import check_output_file, write_output


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="+", help=".tflite file(s)")
    p.add_argument("--target", default="local", help="local | ssh://user@host[:port] | adb://SERIAL[@host:port] | "
                   "edgetpu+local | edgetpu+ssh://… | serial:///dev/tty…?baud=N | rfc2217://host:port")
    p.add_argument("--profile", dest="device_profile", default=None, help="device profile name or TOML path")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--instances", type=int, default=1,
                   help="split the runs over this many fresh interpreters (runner targets); one interpreter's "
                        "speed depends on where its buffers land in memory")
    p.add_argument("--delegate", default="default", help="default | none | xnnpack | gpu | nnapi | edgetpu")
    p.add_argument("--core-mask", default=None, help="CPU affinity as a hex mask, e.g. f0")
    p.add_argument("--input", default=None, help=".npy file with one input batch (random data otherwise)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per run")
    p.add_argument("--trust-on-first-use", action="store_true",
                   help="SSH: accept and record an unknown host key (refused otherwise)")
    p.add_argument("--benchmark-binary", default=None, help="ADB: path of TFLite's benchmark_model for the phone")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="extra target option, repeatable")
    p.add_argument("--op-profiling", action="store_true",
                   help="add per-op times from the runtime's own profiler (same as --option op_profiling=true)")
    p.add_argument("--json", dest="json_out", nargs="?", const="-", default=None, metavar="FILE",
                   help="write the results as strict JSON to FILE; `--json` alone (after the models) prints it "
                        "instead of the tables")


def target_options(args: argparse.Namespace) -> dict:
    options: dict = {}
    if args.trust_on_first_use:
        options["trust_on_first_use"] = True
    if args.benchmark_binary:
        options["benchmark_binary"] = args.benchmark_binary
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise KitError(f"--option {item!r} is not KEY=VALUE")
        options[key.replace("-", "_")] = value
    return options


def run(args: argparse.Namespace) -> int:
    from kit.api import profile_many, stderr_progress
    from kit.core.tables import profile_table

    to_stdout = args.json_out == "-"
    if args.json_out and not to_stdout:  # checked now: a measurement is not lost to a bad path after it ran
        check_output_file(args.json_out, "--json file", overwrite=True)
    if args.input:
        from kit.core.input_batch import check_input_batch

        check_input_batch(args.input, [m for m in args.model if Path(m).is_file()])
    options = target_options(args)
    results = profile_many(args.model, args.target, device_profile=args.device_profile, threads=args.threads,
                           warmup=args.warmup, runs=args.runs, instances=args.instances, delegate=args.delegate,
                           core_mask=args.core_mask, input=args.input, timeout_s=args.timeout,
                           op_profiling=args.op_profiling, options=options, progress=stderr_progress)
    text = strict_dumps([r.to_dict() for r in results])
    if to_stdout:
        print(text)
        return 0
    print(profile_table(results))
    for r in results:
        print(op_table(r))
    if args.json_out:
        write_output(args.json_out, text, "--json file")
        print(f"wrote {args.json_out}")
    return 0


def op_table(result, top: int = 10) -> str:
    """The per-op breakdown under the latency table: the slowest op types, or why there is none."""
    from kit.core.tables import format_table

    ops = result.op_profile
    if not ops:
        return ""
    name = result.artifact.path.rsplit("/", 1)[-1]
    if "unavailable" in ops:
        return f"\n{name}: {ops['unavailable']}"
    rows = [[o["op"], o["nodes"], o["avg_us"], f"{o['percent']:.1f}%"] for o in ops["by_type"][:top]]
    return (f"\n{name}: time by op type ({ops['method']})\n"
            + format_table(["op type", "nodes", "avg us", "share"], rows))
