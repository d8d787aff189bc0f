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

    from kit.commands.compress import OUTPUT_MARK
    from kit.core.paths import check_output_dir
    from kit.pipeline.compress import compress
    from kit.pipeline.manifest import MANIFEST
    from targets.base import RunSettings
    from targets.registry import get_target

    settings = RunSettings(runs=args.runs, warmup=20)  # refused now, not after the training
    check_output_dir(args.out, (MANIFEST, OUTPUT_MARK), force=args.force)
    result = compress(args.model, recipe=args.recipe, data=args.data, out=args.out)
    print(f"\nprofiling on this host (LiteRT, 1 thread, median of {args.runs}) ...")
    profiled = {}
    with get_target("local") as host:
        cpu = host.device_info().cpu
        for a in [result.baseline, *result.artifacts]:
            lit = a.check_on("litert")
            if a.shipped and lit is not None and lit.loads:
                profiled[a.name] = host.profile(a.path, settings).latency.median_us
    print()
    print(summary(result, profiled, args.runs))
    print(f"host: {cpu}; data: {result.dataset}")
    print(f"report: {Path(args.out) / 'report.md'}   manifest: {Path(args.out) / 'manifest.json'}")
    return 0 if result.shipped else 1


def summary(result, profiled: dict[str, float | None], runs: int) -> str:
    """The demo's table and what each column was measured on: top-1 on the test split; the latency that chose
    what ships (the frontier's) beside the host profile of each shipped artifact (`profiled`, by name)."""
    from kit.core.tables import format_table
    from kit.pipeline.report import split_of

    rows = []
    for a in [result.baseline, *result.artifacts]:
        shipped = ("default" if getattr(a, "default", False) else "yes") if a.shipped else "no"
        rows.append([a.name, shipped, a.bytes, a.gzip_bytes, f"{result.baseline.bytes / a.bytes:.1f}x",
                     _pct(a.accuracy), None if a.latency_us is None else round(a.latency_us, 1), profiled.get(a.name),
                     ", ".join(a.runtimes) or "none",
                     "" if a.shipped else a.reason[:90]])
    lines = [format_table(["artifact", "shipped", "bytes", "gzip", "smaller", "top-1 (test split)", "frontier us",
                           "median us", "runs correctly on", "why not shipped"], rows), "",
             f"top-1: {split_of(result)} of {result.dataset}, on the first runtime that runs each artifact correctly"]
    frontier = getattr(result.steps.get("convert"), "frontier", None)
    if frontier is not None and frontier.latency_method:
        lines.append(f"frontier us: the latency that chose what ships: {frontier.latency_method}")
    lines.append(f"median us: the host profile of each shipped artifact, LiteRT 1 thread, median of {runs} runs")
    if frontier is not None and frontier.default:
        lines.append(f"default: {frontier.default} ({frontier.why_default})")
    return "\n".join(lines)


def _pct(x):
    return None if x is None else f"{100 * x:.2f}%"
