"""Evaluate a .tflite (on every runtime) or Keras model on a data set: top-1, top-5, fidelity."""
from __future__ import annotations

import argparse
import os


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help=".tflite file, or a Keras model (.h5, .keras, SavedModel)")
    p.add_argument("--data", default="mnist5k", help="digits | mnist5k | .npz")
    p.add_argument("--reference", default=None, help="Keras model whose outputs the .tflite should reproduce")
    p.add_argument("--runtime", action="append", default=None, help="litert | litert-builtin | tflm (repeatable)")
    p.add_argument("--samples", type=int, default=None, help="first N test samples only")


def run(args: argparse.Namespace) -> int:
    from kit.convert import check as checks
    from kit.data import check_labels_fit, check_samples, load_data
    from kit.core.errors import KitError, ModelError
    from kit.models import load_model
    from kit.core.tables import format_table
    from kit.core.tflite_file import read_tflite

    check_samples(args.samples)
    data = load_data(args.data)
    if args.model.endswith(".tflite"):
        info = read_tflite(args.model)
        if len(info.inputs) != 1:
            raise ModelError(f"{args.model} has {len(info.inputs)} inputs; kit eval evaluates models with one",
                             "evaluate a classifier with a single input tensor")
        shape = info.tensor(info.inputs[0]).shape[1:]
        data = data.fit_to(tuple(shape))
        x, y = data.x_test[:args.samples], data.y_test[:args.samples]
        out = info.tensor(info.outputs[0]).shape
        check_labels_fit(y, out[-1] if out else None, os.path.basename(args.model))
        reference = None
        if args.reference:
            ref_model = load_model(args.reference)
            reference = ref_model.predict(x, batch_size=512, verbose=0)
        runtimes = tuple(args.runtime or checks.RUNTIMES)
        bad = [r for r in runtimes if r not in checks.RUNTIMES]
        if bad:
            raise KitError(f"unknown runtime(s) {', '.join(bad)}", f"use {', '.join(checks.RUNTIMES)}")
        with open(args.model, "rb") as f:
            results = checks.check(f.read(), x, y, reference, runtimes, name=os.path.basename(args.model))
    else:
        model = load_model(args.model)
        data = data.fit_to(model.input_shape[1:])
        x, y = data.x_test[:args.samples], data.y_test[:args.samples]
        check_labels_fit(y, model.output_shape[-1], args.model)
        results = [checks.score("keras", model.predict(x, batch_size=512, verbose=0), y, None)]
    print(f"{args.model} on {data.description} ({len(x)} samples)")
    print(format_table(["runtime", "loads", "top-1", "top-5", "agree", "max abs err", "error"],
                       [[r.runtime, "yes" if r.loads else "no", _pct(r.top1), _pct(r.top5), _pct(r.agreement),
                         r.max_abs_error, r.error] for r in results]))
    return 0 if any(r.loads for r in results) else 1


def _pct(x):
    return None if x is None else f"{100 * x:.2f}%"
