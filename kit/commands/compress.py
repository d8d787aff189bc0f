"""Compress a Keras model with a recipe: prune, fine-tune, cluster, quantize, convert, check on every runtime.

Examples:
  kit compress model.h5 --recipe default --data mnist5k -o runs/a
  kit compress lenet5 --recipe my.toml --data data.npz -o runs/b    # built-in architecture, trained first
"""
from __future__ import annotations

import argparse

from kit.report.run_report import COMPARISON_HEADERS, comparison_rows
from kit.report.tables import format_table


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help=".h5, .keras, SavedModel folder, or a built-in name (lenet-300-100, lenet5)")
    p.add_argument("--recipe", default="default", help="built-in recipe name or TOML path (default: default)")
    p.add_argument("--data", default="mnist5k", help="digits | mnist5k | path to .npz (default: mnist5k)")
    p.add_argument("-o", "--out", default="runs/compress", help="output folder")
    p.add_argument("--eval-samples", type=int, default=None, help="evaluate on the first N test samples only")


def run(args: argparse.Namespace) -> int:
    from kit.pipeline import compress

    result = compress(args.model, recipe=args.recipe, data=args.data, out=args.out, eval_samples=args.eval_samples)
    print()
    print(format_table(COMPARISON_HEADERS, comparison_rows(result)))
    print(f"\nwrote {result.out_dir}/ (manifest.json, report.md) in {result.seconds['total']:.0f} s")
    return 0 if result.shipped else 1
