"""Check a .tflite model against the Coral Edge TPU's requirements; compile it when edgetpu_compiler is installed.

Prints which ops can map to the Edge TPU and, for each one that falls back to
the CPU, why. When `edgetpu_compiler` is on PATH the model is compiled and
the compiler's report (ops mapped, on-chip and off-chip parameter memory,
per-op status) is printed; when it is not, the check alone is printed.
The model is first loaded in LiteRT in a child process (the Edge TPU runs what
the compiler cannot map on LiteRT): exit 1 when LiteRT refuses it, crashes on
it or when no op maps to the Edge TPU, with the report still printed.

Examples:
  kit edgetpu model_int8.tflite
  kit edgetpu model_int8.tflite --out-dir build/edgetpu
  kit edgetpu model_int8.tflite --no-compile --json report.json
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from kit.core.errors import KitError
from kit.core.jsonio import dumps as strict_dumps
from kit.core.paths import check_output_dir, check_output_file, write_output


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help=".tflite file (full-integer quantized for the Edge TPU)")
    p.add_argument("--out-dir", default=None, help="where the compiler writes MODEL_edgetpu.tflite (default: next to MODEL)")
    p.add_argument("--no-compile", action="store_true", help="only check the requirements")
    p.add_argument("--compiler", default="edgetpu_compiler", help="compiler executable name or path")
    p.add_argument("--json", dest="json_out", default=None, help="write the check and compile results as JSON")


def run(args: argparse.Namespace) -> int:
    from targets.edgetpu.check import check_edgetpu_requirements
    from targets.edgetpu.compiler import compile_for_edgetpu, compiler_missing_message, find_compiler

    model = Path(args.model)
    if not model.is_file():
        raise KitError(f"model file {model} does not exist")
    if args.json_out:  # checked before the work: a result is not lost to a bad path afterwards
        check_output_file(args.json_out, "--json file", overwrite=True)
    if args.out_dir and not args.no_compile:
        check_output_dir(args.out_dir, (), force=True, what="--out-dir folder")
    from kit.convert.check import load_error

    report = check_edgetpu_requirements(model)
    print(report.summary())
    problems = []
    if not report.compiled:  # a compiled model needs the Edge TPU delegate to load
        error = load_error(model.read_bytes(), "litert", name=model.name)
        if error is not None:
            problems.append(f"LiteRT cannot load {model.name}: {error}")
    if not report.tpu_ops:
        problems.append(f"no op of {model.name} can map to the Edge TPU; all of it would run on the CPU")
    compiled = None
    if not args.no_compile and not report.compiled and not problems:
        if find_compiler(args.compiler) is None:
            print(compiler_missing_message(args.compiler))
        else:
            compiled = compile_for_edgetpu(model, Path(args.out_dir) if args.out_dir else model.parent, args.compiler)
            print(compiled.summary())
            print(f"wrote {compiled.output_path}")
            if compiled.ops_tpu == 0:
                problems.append(f"edgetpu_compiler mapped no op of {model.name} to the Edge TPU")
    if args.json_out:
        out = {"check": dataclasses.asdict(report), "compile": dataclasses.asdict(compiled) if compiled else None,
               "problems": problems}
        write_output(args.json_out, strict_dumps(out), "--json file")
        print(f"wrote {args.json_out}")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0
