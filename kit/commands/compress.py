"""Compress a Keras model with a recipe: prune, fine-tune, cluster, quantize, convert, check on every runtime.

Examples:
  kit compress model.h5 --recipe default --data mnist5k -o runs/a
  kit compress lenet5 --recipe my.toml --data data.npz -o runs/b    # built-in architecture, trained first
  kit compress lenet-300-100 --recipe best --budget accuracy-drop=0.5 -o runs/c   # per-layer sparsity chosen
  kit compress model.h5 --budget accuracy-drop=1 --objective latency --target local -o runs/d

With --budget, per-layer sparsity is chosen automatically (kit/budget.py): sensitivity on a validation split
held out from the training data, a greedy allocation path, and fine-tuned probes along it; every shipped
artifact's drop on that split (plus --sigmas standard errors, default none) stays within the budget, and the
chosen setting is fine-tuned again and must pass there again. The accuracy gate on the test split refuses
anything over the budget. The choice is recorded in budget.json and in the manifest.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from kit.core.errors import KitError
from kit.core.metrics import TASK_CHOICES
from kit.core.paths import check_output_dir
from kit.core.tables import format_table
from kit.pipeline.manifest import MANIFEST
from kit.pipeline.report import comparison_headers, comparison_rows

#: written first into every output folder, so a run that stopped before its manifest can be repeated there
OUTPUT_MARK = ".kit-compress"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help=".h5, .keras, SavedModel folder, or a built-in name (lenet-300-100, lenet5)")
    p.add_argument("--recipe", default="default", help="built-in recipe name or TOML path (default: default)")
    p.add_argument("--data", default="mnist5k", help="digits | mnist5k | path to .npz (default: mnist5k)")
    p.add_argument("-o", "--out", default="runs/compress", help="output folder (new, empty, or an earlier run's)")
    p.add_argument("--force", action="store_true",
                   help="write into a non-empty output folder that another tool made (files of the same name are "
                        "replaced)")
    p.add_argument("--eval-samples", type=int, default=None, help="evaluate on the first N test samples only")
    p.add_argument("--task", choices=TASK_CHOICES, default=None,
                   help="what the model computes, which picks the figures and the accuracy gate's metric (default: "
                        "the recipe's [convert] task, else detected: outputs shaped like the inputs = autoencoder, "
                        "integer labels indexing the outputs = classifier)")
    p.add_argument("--budget", default=None, metavar="accuracy-drop=P",
                   help="choose per-layer sparsity so every shipped artifact loses at most P top-1 points on a "
                        "validation split")
    p.add_argument("--objective", choices=("size", "latency"), default=None,
                   help="with --budget: what the chosen sparsity buys (default: size)")
    p.add_argument("--target", default=None,
                   help="with --budget: device to measure latency on (default for --objective latency: local)")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="with --budget: fraction of the training data held out for validation (default: 0.2)")
    p.add_argument("--max-probes", type=int, default=8,
                   help="with --budget: most fine-tuned pipeline runs of the search (default: 8)")
    p.add_argument("--sigmas", type=float, default=0.0,
                   help="with --budget: a setting passes when its validation drop plus this many standard errors "
                        "is within the budget (default: 0, the drop alone; 1 keeps a margin of one standard error)")


def run(args: argparse.Namespace) -> int:
    from kit.data import check_samples
    from kit.recipe import load_recipe

    check_samples(args.eval_samples, "--eval-samples")
    load_recipe(args.recipe)  # recipe mistakes first: they are the likelier ones
    check_output_dir(args.out, (MANIFEST, OUTPUT_MARK), force=args.force)  # before training
    if args.budget is None:
        if args.objective is not None or args.target is not None:
            raise KitError("--objective and --target choose what the budget search optimizes",
                           "add --budget accuracy-drop=P, or drop them")
        return _plain(args)
    if args.task not in (None, "auto", "classification"):
        raise KitError(f"--budget searches per-layer sparsity by top-1, so it needs a classifier, not --task {args.task}",
                       "drop --budget and compress with a post-training recipe (quantize, convert)")
    if args.eval_samples is not None:
        raise KitError("--eval-samples cannot be combined with --budget",
                       "the budget search reports the whole test split; drop --eval-samples")
    if args.max_probes < 1:
        raise KitError(f"--max-probes must be at least 1, got {args.max_probes}")
    if not 0.0 < args.val_fraction < 0.5:  # the search checks it too, but only after training the model
        raise KitError(f"--val-fraction must be between 0 and 0.5, got {args.val_fraction}")
    from kit.search.budget import parse_budget, search

    budget = parse_budget(args.budget)
    _mark_output(args.out)
    result = search(args.model, args.recipe, args.data, args.out, budget,
                    objective=args.objective or "size", target=args.target, val_fraction=args.val_fraction,
                    max_probes=args.max_probes, sigmas=args.sigmas)
    print()
    print(format_table(comparison_headers(result.run), comparison_rows(result.run)))
    print(f"\nper-layer sparsity chosen for {result.budget} ({result.objective}):")
    print(result.layer_table())
    print()
    print(result.table())
    for note in result.notes:
        print(f"note: {note}")
    print(f"\nwrote {result.out_dir}/ (manifest.json, report.md, budget.json, budget.md, sensitivity/)")
    return 0 if result.run.shipped else 1


def _plain(args: argparse.Namespace) -> int:
    from kit.pipeline.compress import compress

    _mark_output(args.out)
    result = compress(args.model, recipe=args.recipe, data=args.data, out=args.out, eval_samples=args.eval_samples,
                      task=args.task)
    print()
    print(format_table(comparison_headers(result), comparison_rows(result)))
    print(f"\nwrote {result.out_dir}/ (manifest.json, report.md) in {result.seconds['total']:.0f} s")
    if not result.shipped:
        convert = result.steps.get("convert")
        print(f"\nnothing shipped: {convert.advice if convert is not None and convert.advice else 'see report.md'}")
        return 1
    return 0


def _mark_output(out: str) -> None:
    """Claim the folder before the long work, so a run that stops early can be repeated into it."""
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    (path / OUTPUT_MARK).write_text("made by `kit compress`\n")
