"""Per-layer sensitivity: prune each layer alone at several ratios and measure the accuracy drop (and latency).

Examples:
  kit sensitivity model.h5 --data mnist5k -o runs/sens
  kit sensitivity lenet-300-100 --data digits --ratios 0.5,0.9,0.95 --structured
  kit sensitivity model.h5 --data data.npz --granularity block --block 1x4 --target local

Scores come from a validation split held out from the training data (the last --val-fraction of it), never from
the test split. Writes sensitivity.csv, sensitivity.md, sensitivity.json and plots/<layer>.png; with --json the
run's result (the rows, the files written, the latency plan with --target) is also printed on stdout as one strict
JSON document, and the progress goes to stderr.
"""
from __future__ import annotations

import argparse
import re
import sys

from kit.core.errors import KitError
from kit.core.jsonio import dumps as strict_dumps
from kit.core.paths import check_output_dir
from kit.techniques.criteria import CHANNEL_CRITERIA


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help=".h5, .keras, SavedModel folder, or a built-in name (trained first)")
    p.add_argument("--data", required=True, help="digits | mnist5k | path to .npz")
    p.add_argument("-o", "--out", default="runs/sensitivity", help="output folder (default: runs/sensitivity)")
    p.add_argument("--force", action="store_true",
                   help="write into a non-empty output folder that another tool made (files of the same name are "
                        "replaced)")
    p.add_argument("--ratios", default="0.5,0.7,0.9,0.95", help="comma-separated fractions to remove")
    p.add_argument("--structured", action="store_true", help="also remove whole output channels (kit.techniques.structured)")
    p.add_argument("--criterion", default="l1",
                   help=f"structured importance: {' | '.join(CHANNEL_CRITERIA)}")
    p.add_argument("--granularity", choices=("unstructured", "block"), default="unstructured",
                   help="one-shot pruning pattern (default: unstructured)")
    p.add_argument("--block", default="1x4", help="block rows x cols in the runtime's [out, in] layout (default 1x4)")
    p.add_argument("--target", default=None, help="also measure the median latency of every variant there")
    p.add_argument("--runtime", choices=("litert", "litert-builtin"), default="litert",
                   help="with --target: LiteRT's default delegate or built-in kernels only")
    p.add_argument("--format", dest="fmt", choices=("float32", "int8"), default="float32",
                   help="with --target: the format the variants are converted to")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="training data held out for validation (default 0.2)")
    p.add_argument("--epochs", type=int, default=20, help="training epochs of a built-in model (default 20)")
    p.add_argument("--json", action="store_true",
                   help="print the result as one strict JSON document on stdout (progress on stderr)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kit.data import load_data
    from kit.models import resolve_model
    from kit.recipe import PruneStep
    from kit.search.sensitivity import analyze, split_validation

    check_output_dir(args.out, "sensitivity.json", force=args.force)  # a file, unwritable, another tool's: refused
    ratios = _ratios(args.ratios)
    block = _block(args.block)
    # with --json, stdout carries the document alone: every line meant for a person goes to stderr
    say = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    data = load_data(args.data)
    resolved = resolve_model(args.model, data, epochs=args.epochs, name=Path(args.model).name,
                             train_split=lambda d: split_validation(d, args.val_fraction).train, log=say,
                             classifier_only="the sensitivity analysis ranks layers by top-1 and by the KL "
                                             "divergence of class scores, which mean nothing for it")
    model, name = resolved.model, resolved.name
    split = split_validation(data.fit_to(model.input_shape[1:]), args.val_fraction)
    say(f"validation: {split.description}")
    step = PruneStep(granularity=args.granularity, block=block)
    result = analyze(model, split.x, split.y, ratios=ratios, prune_step=step, structured=args.structured,
                     criterion=args.criterion, calib=split.train.x_calib, target=args.target, runtime=args.runtime,
                     fmt=args.fmt, model_name=name, validation=split.description, log=say)
    paths = result.write(args.out)
    say()
    say(result.table())
    for note in result.notes:
        say(f"note: {note}")
    plan = _latency_plan(model, args, paths, say) if args.target is not None else None
    say(f"\nwrote {paths['csv']}, {paths['markdown'].name}, {paths['json'].name} and "
        f"{sum(k.startswith('plot:') for k in paths)} plots in {args.out}/plots")
    if args.json:
        print(strict_dumps({**result.to_dict(), "files": {k: str(p) for k, p in paths.items()},
                            "latency_plan": plan}))
    return 0


def _latency_plan(model, args: argparse.Namespace, paths: dict, say) -> dict:
    """Which layers run on sparse kernels on the target's runtime, and how to prune them for that."""
    from pathlib import Path

    from kit.search import latency_aware
    from targets.registry import get_target

    with get_target(args.target) as t:
        arch = latency_aware.target_arch(t)
    plan = latency_aware.plan(model, args.runtime, args.fmt, arch)
    say(f"\nsparse kernels for {args.fmt} on {args.runtime} ({arch}):")
    say(plan.table())
    for note in plan.notes:
        say(f"note: {note}")
    path = Path(args.out) / "latency_plan.json"
    path.write_text(strict_dumps(plan.to_dict()))
    paths["latency_plan"] = path
    return plan.to_dict()


def _ratios(text: str) -> list[float]:
    try:
        ratios = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise KitError(f"--ratios {text!r} is not a comma-separated list of numbers", "e.g. --ratios 0.5,0.9") \
            from None
    if not ratios:
        raise KitError("--ratios is empty", "e.g. --ratios 0.5,0.7,0.9,0.95")
    return ratios


def _block(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", text)
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise KitError(f"--block {text!r} is not a block shape", "write rows x cols, e.g. 1x4 or 1x16")
    return int(m.group(1)), int(m.group(2))
