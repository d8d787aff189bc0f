"""Export the chosen model per device class for app and firmware builds.

--android DIR: `<class>.tflite` per phone/board class, labels.txt and
prunekit_models.json (sha256, input/output specs, normalisation, source
recipe, measured figures). --firmware DIR: a TFLite Micro firmware project per
microcontroller class. Exit code 1 when a class has no model meeting its
constraints (the manifest lists it under "unresolved").

Examples:
  kit export runs/release --android app/src/main/assets/models
  kit export runs/release --firmware fw/
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run folder (the pipeline's `out`)")
    p.add_argument("--android", default=None, metavar="DIR", help="app assets folder for phone/board classes")
    p.add_argument("--firmware", default=None, metavar="DIR", help="folder for microcontroller firmware projects")


def run(args: argparse.Namespace) -> int:
    from kit.farm.export import export_run, unresolved
    from kit.farm.rundata import load_run
    from kit.farm.choose import choose
    from kit.core.paths import check_output_dir

    for flag, folder in (("--android", args.android), ("--firmware", args.firmware)):
        if folder:  # an app's assets folder holds other files: only a file or an unwritable place is refused
            check_output_dir(folder, (), force=True, what=f"{flag} folder")
    run_data = load_run(args.run)
    choices = choose(run_data)
    written = export_run(run_data, choices, android=Path(args.android) if args.android else None,
                         firmware=Path(args.firmware) if args.firmware else None)
    for path in written:
        print(f"wrote {path}")
    missing = unresolved(run_data, choices, android=bool(args.android), firmware=bool(args.firmware))
    if missing:
        for c in missing:
            print(f"no model for class {c.device_class}: {c.why_none}", file=sys.stderr)
        return 1
    return 0
