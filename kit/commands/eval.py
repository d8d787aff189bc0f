"""Evaluate a .tflite (on every runtime) or Keras model on a data set with its task's figures: top-1/top-5 for a
classifier, MSE (and ROC AUC with 0/1 anomaly labels) for an autoencoder or regression model; fidelity to
--reference for every task."""
from __future__ import annotations

import argparse

from kit.core.metrics import TASK_CHOICES


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help=".tflite file, or a Keras model (.h5, .keras, SavedModel)")
    p.add_argument("--data", default="mnist5k", help="digits | mnist5k | .npz")
    p.add_argument("--reference", default=None, help="Keras model whose outputs the .tflite should reproduce")
    p.add_argument("--runtime", action="append", default=None,
                   help="litert | litert-builtin | tflm | litert-compiled | litert-aarch64 (repeatable; default all but "
                        "litert-aarch64, which runs on the emulated aarch64 board: docs/arm64.md)")
    p.add_argument("--samples", type=int, default=None, help="first N test samples only")
    p.add_argument("--task", choices=TASK_CHOICES, default=None,
                   help="what the model computes (default: detected; outputs shaped like the inputs = autoencoder, "
                        "integer labels indexing the outputs = classifier)")
    p.add_argument("--json", action="store_true", help="print the results as strict JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    from kit.api import evaluate, stderr_progress
    from kit.core.jsonio import dumps
    from kit.core.tables import format_table

    ev = evaluate(args.model, args.data, reference=args.reference, runtimes=args.runtime, samples=args.samples,
                  task=args.task, progress=stderr_progress)
    if args.json:
        print(dumps(ev.to_dict()))
        return 0 if ev.loads_anywhere else 1
    print(f"{ev.model} on {ev.data} ({ev.samples} samples); task: {ev.task.name} ({ev.task.how})")
    if ev.task.classifier:
        print(format_table(["runtime", "loads", "top-1", "top-5", "agree", "max abs err", "error"],
                           [[r.runtime, "yes" if r.loads else "no", _pct(r.top1), _pct(r.top5), _pct(r.agreement),
                             r.max_abs_error, r.error] for r in ev.results]))
    else:
        print(format_table(["runtime", "loads", "mse", "roc auc", "cosine", "max abs err", "error"],
                           [[r.runtime, "yes" if r.loads else "no", r.mse, _pct(r.auc), r.cosine, r.max_abs_error,
                             r.error] for r in ev.results]))
        print("mse: " + ("reconstruction error against the inputs; roc auc: of the per-sample reconstruction MSE as "
                         "anomaly score against the 0/1 labels" if ev.task.name == "autoencoder"
                         else "against the labels"))
        notes = sorted({r.auc_note for r in ev.results if r.auc_note})
        for note in notes:
            print(f"roc auc not computed: {note}")
        if args.reference is None:
            print("cosine and max abs err: pass --reference MODEL (the original Keras model) to compare outputs")
    return 0 if ev.loads_anywhere else 1


def _pct(x):
    return None if x is None else f"{100 * x:.2f}%"
