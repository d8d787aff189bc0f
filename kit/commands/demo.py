"""Train the built-in LeNet-300-100 on built-in MNIST, compress it, check every runtime, profile on this host.

No network and no hardware needed: the whole kit on its default settings.
"""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="lenet-300-100", help="built-in architecture: lenet-300-100 | lenet5")
    p.add_argument("--data", default="mnist5k", help="digits | mnist5k | .npz (default: mnist5k)")
    p.add_argument("--recipe", default="default")
    p.add_argument("-o", "--out", default="demo-out")
    p.add_argument("--force", action="store_true",
                   help="write into a non-empty output folder that another tool made (files of the same name are "
                        "replaced)")
    p.add_argument("--runs", type=int, default=200, help="timed runs per artifact on the host")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kit.pipeline.compress import compress
    from kit.core.tables import format_table
    from targets.base import RunSettings
    from targets.registry import get_target
    from kit.commands.compress import OUTPUT_MARK
    from kit.core.paths import check_output_dir
    from kit.pipeline.manifest import MANIFEST

    settings = RunSettings(runs=args.runs, warmup=20)  # refused now, not after the training
    check_output_dir(args.out, (MANIFEST, OUTPUT_MARK), force=args.force)
    result = compress(args.model, recipe=args.recipe, data=args.data, out=args.out)
    print("\nprofiling on this host (LiteRT, 1 thread) ...")
    rows = []
    with get_target("local") as host:
        cpu = host.device_info().cpu
        for a in [result.baseline, *result.artifacts]:
            lit = a.check_on("litert")
            if a.shipped and lit is not None and lit.loads:
                p = host.profile(a.path, settings)
                latency = p.latency.median_us
            else:
                latency = None
            rows.append([a.name, "yes" if a.shipped else "no", a.bytes, f"{result.baseline.bytes / a.bytes:.1f}x",
                         _pct(a.accuracy), ", ".join(a.runtimes) or "none", latency,
                         "" if a.shipped else a.reason[:70]])
    print()
    print(format_table(["artifact", "shipped", "bytes", "smaller", "top-1", "runs correctly on", "median us", "why not shipped"],
                       rows))
    print(f"\nhost: {cpu}; data: {result.dataset}")
    print(f"report: {Path(args.out) / 'report.md'}   manifest: {Path(args.out) / 'manifest.json'}")
    return 0 if result.shipped else 1


def _pct(x):
    return None if x is None else f"{100 * x:.2f}%"
