"""Query a farm run's measurements: filter, print, export CSV, or compare with an earlier run.

RUN is the `out` folder of `kit run` (its run.json and results store). Every
row the store holds for the pipeline is listed, also those of earlier runs
with another `--select`; rows of the latest run's plan are marked `*`
(`--latest`: only those). Memory is shown per kind: a process's peak (RSS or
footprint) and a TFLite Micro board's tensor arena are different figures.

Examples:
  kit results runs/release
  kit results runs/release --class mcu-m4 --status failed
  kit results runs/release --csv results.csv
  kit results runs/release --compare runs/main --fail-on-regression 10
"""
from __future__ import annotations

import argparse
import csv
import fnmatch
import sys

from kit.core.errors import KitError

_CSV_COLUMNS = ("latest", "artifact", "artifact_sha256", "format", "bytes", "accuracy", "device", "device_class",
                "profile", "status", "latency_median_us", "latency_mean_us", "latency_p90_us", "latency_p99_us",
                "latency_min_us", "latency_max_us", "latency_std_us", "latency_count", "init_us",
                "process_peak_bytes", "process_growth_bytes", "arena_bytes", "peak_memory_bytes", "memory_method",
                "energy_uj", "energy_method", "estimate", "attempts", "seconds", "finished", "error")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run folder (the pipeline's `out`)")
    p.add_argument("--device", action="append", default=[], metavar="PATTERN", help="device name (wildcards ok)")
    p.add_argument("--class", dest="device_class", action="append", default=[], metavar="PATTERN",
                   help="device class (wildcards ok)")
    p.add_argument("--artifact", action="append", default=[], metavar="PATTERN",
                   help="artifact label model/recipe/name or sha256 prefix (wildcards ok, any case)")
    p.add_argument("--status", choices=("ok", "failed"), default=None)
    p.add_argument("--latest", action="store_true", help="only the rows of the latest run's plan")
    p.add_argument("--csv", default=None, metavar="FILE", help="write the rows as CSV ('-' for stdout)")
    p.add_argument("--compare", default=None, metavar="RUN", help="compare median latencies with an earlier run")
    p.add_argument("--fail-on-regression", type=float, default=None, metavar="PCT",
                   help="with --compare: exit 1 when a median latency is more than PCT %% above the earlier run's")


def run(args: argparse.Namespace) -> int:
    from kit.farm.rundata import load_run, store_rows
    from kit.core.tables import format_table

    if args.fail_on_regression is not None and not args.compare:
        raise KitError("--fail-on-regression needs --compare RUN")
    run_data = load_run(args.run)
    stored, artifacts = store_rows(run_data)
    rows = [r for r in (_row(run_data, artifacts, m) for m in stored) if _keep(r, args)]
    if args.csv:
        out = sys.stdout if args.csv == "-" else _open_output(args.csv)
        try:
            writer = csv.DictWriter(out, fieldnames=_CSV_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        finally:
            if out is not sys.stdout:
                out.close()
        if args.csv != "-":
            print(f"wrote {len(rows)} row(s) to {args.csv}")
    else:
        memory = [k for k in MEMORY_COLUMNS if any(r[k] is not None for r in rows)]
        table = [["*" if r["latest"] else "", r["artifact"], r["format"], r["device"], r["device_class"], r["status"],
                  r["latency_median_us"], r["latency_p99_us"], *(r[k] for k in memory), r["energy_uj"],
                  "estimate" if r["estimate"] else "", (r["error"] or "")[:80]] for r in rows]
        print(format_table(["", "artifact", "format", "device", "class", "status", "median us", "p99 us",
                            *(MEMORY_COLUMNS[k] for k in memory), "energy uJ", "", "error"], table))
        latest = sum(1 for r in rows if r["latest"])
        print(f"{len(rows)} row(s); {latest} of the latest run (marked *), {len(rows) - latest} from earlier runs "
              f"with another selection")
    if args.compare:
        from kit.commands.run import changes_table
        from kit.farm.compare import compare_runs

        threshold = args.fail_on_regression
        changes = compare_runs(run_data, load_run(args.compare), threshold if threshold is not None else 0.0)
        print(changes_table(changes))
        if threshold is not None and any(c.regressed for c in changes):
            print(f"latency regression above {threshold:g} % against {args.compare}", file=sys.stderr)
            return 1
    return 0


def _open_output(path: str):
    try:
        return open(path, "w", newline="")
    except OSError as e:
        raise KitError(f"cannot write the CSV file {path}: {e.strerror or e}",
                       "pass a file in an existing, writable folder (or '-' for stdout)") from None


#: result key -> table heading: one column per kind of memory figure (kit.farm.rundata.memory_kind)
MEMORY_COLUMNS = {"process_peak_bytes": "process peak B", "process_growth_bytes": "process growth B",
                  "arena_bytes": "TFLM arena B"}
_KIND_COLUMN = {"process": "process_peak_bytes", "growth": "process_growth_bytes", "arena": "arena_bytes"}


def _row(run, artifacts: dict, m: dict) -> dict:
    """A store row with its artifact's label (from the plan, else from the store) and its memory by kind."""
    import json

    from kit.farm.rundata import memory_kind

    a = run.artifacts.get(m["artifact_sha256"])
    stored = artifacts.get(m["artifact_sha256"])
    if a is not None:
        label, fmt, size, accuracy = a.label, a.format.name, a.bytes, a.accuracy
    elif stored is not None:
        label = json.loads(stored["meta"] or "{}").get("label") or stored["name"]
        fmt, size, accuracy = stored["fmt"], stored["bytes"], stored["accuracy"]
    else:
        label, fmt, size, accuracy = m["artifact_sha256"][:12], None, None, None
    row = {**m, "artifact": label, "format": fmt, "bytes": size, "accuracy": accuracy,
           **{k: None for k in MEMORY_COLUMNS}}
    kind = memory_kind(m["memory_method"])
    if kind is not None:
        row[_KIND_COLUMN[kind]] = m["peak_memory_bytes"]
    return row


def _keep(r: dict, args: argparse.Namespace) -> bool:
    def match(value, patterns) -> bool:
        return not patterns or any(fnmatch.fnmatchcase(str(value), p) for p in patterns)

    artifact_ok = not args.artifact or any(fnmatch.fnmatchcase(r["artifact"].lower(), p.lower()) or
                                           r["artifact_sha256"].startswith(p.lower()) for p in args.artifact)
    return (match(r["device"], args.device) and match(r["device_class"], args.device_class) and artifact_ok
            and (args.status is None or r["status"] == args.status) and (r["latest"] or not args.latest))
