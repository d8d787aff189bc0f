"""Compress a model, profile every artifact on a device farm, choose one per device class and export it.

pipeline.toml names the model and recipes (or ready .tflite files), the farm
and which devices, the constraints per device class (max latency, flash, RAM,
min accuracy) and where to export. Jobs run concurrently, one per device at a
time; each measurement is stored as it finishes, so running the same command
again after a crash or Ctrl-C only runs what is missing. See docs/farm.md.

Exit codes: 0 done; 1 a latency regression beyond --fail-on-regression, or
(with --require-all-classes) a class without a model; 2 bad input; 130 interrupted.

Examples:
  kit run pipeline.toml
  kit run pipeline.toml --select mcu
  kit run pipeline.toml --baseline runs/main --fail-on-regression 10
"""
from __future__ import annotations

import argparse
import signal
import sys

from kit.core.errors import KitError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pipeline", help="pipeline.toml")
    p.add_argument("--select", action="append", default=None, metavar="PATTERN",
                   help="profile only on these devices (name, class, profile, chipset or tag); overrides the file")
    p.add_argument("--no-export", action="store_true", help="skip the [export] section")
    p.add_argument("--baseline", default=None, metavar="RUN", help="an earlier run folder to compare latencies with")
    p.add_argument("--fail-on-regression", type=float, default=None, metavar="PCT",
                   help="exit 1 when a median latency is more than PCT %% above the baseline's")
    p.add_argument("--require-all-classes", action="store_true",
                   help="exit 1 when a device class has no model meeting its constraints")
    p.add_argument("--quiet", action="store_true", help="no per-job progress lines")


def run(args: argparse.Namespace) -> int:
    from kit.farm.orchestrate import run_pipeline
    from kit.farm.spec import ExportSpec, load_pipeline

    if args.fail_on_regression is not None and not args.baseline:
        raise KitError("--fail-on-regression needs --baseline RUN", "pass the folder of the run to compare with")
    baseline = _load_baseline(args.baseline) if args.baseline else None
    spec = load_pipeline(args.pipeline)
    if args.select:
        spec.select = args.select
    if args.no_export:
        spec.export = ExportSpec(labels=spec.export.labels, normalisation=spec.export.normalisation,
                                 board=spec.export.board)
    from kit.core.paths import check_output_dir

    for key, folder in (("android", spec.export.android), ("firmware", spec.export.firmware)):
        if folder is not None:  # before the jobs: the export comes last, after every measurement
            check_output_dir(folder, (), force=True, what=f"[export] {key} folder")
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        outcome = run_pipeline(spec, quiet_progress=args.quiet)
    finally:
        signal.signal(signal.SIGTERM, previous)
    report = outcome.report
    print(_choices_table(outcome.choices))
    failed = [o for o in report.outcomes if o.status == "failed"]
    lines, named = failure_lines(outcome.run_dir, outcome.invocation)
    for line in lines:
        print(line)
    for name, cause in report.unhealthy.items():
        if name not in named:
            print(f"unhealthy: {name}: {cause}")
    done = report.count("ok")
    print(f"{done} measured now, {outcome.skipped} from earlier runs, {len(failed)} failed, "
          f"{report.count('cancelled')} not run; results in {outcome.run_dir}")
    print(f"wall time {outcome.wall_s:.1f} s: compression {outcome.compress_s:.1f} s, profiling on the devices "
          f"{outcome.profile_s:.1f} s, the rest (planning, store, choice, export) "
          f"{max(0.0, outcome.wall_s - outcome.compress_s - outcome.profile_s):.1f} s")
    if report.interrupted:
        print("interrupted: run the same command again to finish the remaining jobs", file=sys.stderr)
        return 130
    code = 0
    if baseline is not None:
        code = max(code, _regressions(outcome.run_dir, baseline, args.fail_on_regression))
    if args.require_all_classes and any(c.winner is None for c in outcome.choices):
        print("some device class has no model that meets its constraints", file=sys.stderr)
        code = 1
    return code


def failure_lines(run_dir, invocation: str) -> tuple[list[str], set[str]]:
    """This invocation's failures, one entry per cause with its devices named (a dead device once, with its jobs);
    and the devices named."""
    from kit.farm.rundata import load_run

    run = load_run(run_dir)
    rows = [m for m in run.failed() if m["invocation"] == invocation]
    lines: list[str] = []
    for g in run.failure_groups(rows):
        lines.append(g.headline())
        lines += [f"    {line}" for line in g.cause.strip().splitlines()[1:]]
        verb = "not measured" if g.device_lost else "failed"
        each = f" (on each of {len(g.devices)} devices)" if len(g.devices) > 1 else ""
        lines.append(f"    {g.jobs} job(s) {verb}: {', '.join(g.artifacts)}{each}")
    return lines, {m["device"] for m in rows}


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _load_baseline(path: str):
    from kit.farm.rundata import load_run

    return load_run(path)


def _regressions(run_dir, baseline, threshold: float | None) -> int:
    from kit.farm.compare import compare_runs
    from kit.farm.rundata import load_run

    changes = compare_runs(load_run(run_dir), baseline, threshold if threshold is not None else 0.0)
    print(changes_table(changes))
    if threshold is not None and any(c.regressed for c in changes):
        bad = [c for c in changes if c.regressed]
        print(f"{len(bad)} latency regression(s) above {threshold:g} %", file=sys.stderr)
        return 1
    return 0


def changes_table(changes) -> str:
    from kit.core.tables import format_table

    rows = [[c.what, c.baseline_us, c.current_us, f"{c.change_pct:+.1f}%", "REGRESSED" if c.regressed else "",
             c.note] for c in changes]
    return format_table(["what", "baseline us", "now us", "change", "", "note"], rows)


def _choices_table(choices) -> str:
    from kit.core.tables import format_table

    rows = []
    for c in choices:
        w = c.winner
        if w is None:
            rows.append([c.device_class, "none", None, None, None, None, c.why_none])
        else:
            if w.measured_latency_us is not None and w.estimated_latency_us is not None:
                latency = (f"{w.measured_latency_us / 1000:.3f} ms measured, {w.estimated_latency_us / 1000:.3f} ms "
                           f"(estimate)")
            else:
                latency = f"{w.latency_us / 1000:.3f} ms" + (" (estimate)" if w.estimate else "")
            rows.append([c.device_class, w.artifact.label, w.artifact.format.name, w.artifact.bytes, latency,
                         _figure(w.artifact), ""])
    return format_table(["class", "chosen", "format", "bytes", "latency (worst device)", "accuracy", "why none"], rows)


def _figure(a) -> str | None:
    """A classifier's top-1; another model's task figure by name (`MSE 0.0123`), never an empty accuracy."""
    if a.classifier:
        return None if a.accuracy is None else f"{a.accuracy:.2%}"
    return a.score_text()
