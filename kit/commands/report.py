"""Write one self-contained HTML page for a farm run: winners, latency distributions, Pareto fronts, energy.

Examples:
  kit report runs/release -o report.html
"""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run folder (the pipeline's `out`)")
    p.add_argument("-o", "--out", default=None, help="HTML file to write (default: RUN/report.html)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kit.core.errors import KitError
    from kit.report.html import write_report
    from kit.farm.rundata import load_run

    run_data = load_run(args.run)
    out = Path(args.out) if args.out else Path(args.run) / "report.html"
    if out.is_dir():
        raise KitError(f"-o {out} is a folder", "name the HTML file to write, e.g. -o report.html")
    try:
        path = write_report(run_data, out)
    except OSError as e:
        raise KitError(f"cannot write the report {out}: {e.strerror or e}",
                       "pass -o a file in an existing, writable folder") from None
    print(f"wrote {path}")
    return 0
