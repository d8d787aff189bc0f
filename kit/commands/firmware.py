"""Generate an Arduino/PlatformIO firmware project that runs a full-int8 model with TFLite Micro.

The model is compressed with TFLite Micro's own DECODE formats (per tensor LUT
for clustered weights, prune for sparse ones, or none: whichever is smallest),
checked to give exactly the original outputs in the TFLM runtime, and written
as a C array with a matching op resolver, the measured arena size and a main
that speaks the MLPerf Tiny serial protocol.

Examples:
  kit firmware model_int8.tflite -o fw/
  kit firmware model_int8.tflite -o fw/ --board esp32-s3-devkitc-1 --compress prune
"""
from __future__ import annotations

import argparse

from firmware_tools.compress import METHODS
from firmware_tools.project import BOARDS

_COMPRESS_CHOICES = ("auto", "none", *METHODS)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="full-int8 .tflite model (int8 input and output)")
    p.add_argument("-o", "--out", required=True, help="output directory (new, empty, or a previous project)")
    p.add_argument("--board", default="nucleo_l4r5zi", choices=sorted(BOARDS),
                   help="PlatformIO environment to build by default (also picks the MCU estimate)")
    p.add_argument("--compress", default="auto", choices=_COMPRESS_CHOICES,
                   help="auto = per tensor the smaller of lut and prune; none = store the model as it is")
    p.add_argument("--baud", type=int, default=115200)


def run(args: argparse.Namespace) -> int:
    from firmware_tools.project import generate_project
    from kit.core.tables import format_table

    methods = {"auto": METHODS, "none": ()}.get(args.compress, (args.compress,))
    project = generate_project(args.model, args.out, board=args.board, methods=methods, baud=args.baud)
    m, c, e = project.memory, project.compression, project.estimate
    rows = [
        ["flash (model)", f"{project.source_bytes} B", f"{m.flash_bytes} B"
         + (f" ({project.source_bytes / m.flash_bytes:.2f}x smaller)" if m.flash_bytes < project.source_bytes else "")],
        ["tensor arena", "", f"{m.arena_bytes} B measured minimum, {project.arena_size} B in the firmware"],
        ["decompression memory", "", f"{m.decompression_memory_bytes} B"],
        ["RAM total", "", f"{m.ram_bytes} B (+ margin {project.arena_size - m.arena_bytes} B)"],
        ["ops", "", ", ".join(op for op, _ in project.ops)],
        [f"latency ({e.profile})", "", f"{e.latency_us / 1000:.2f} ms ESTIMATE ({e.macs} MACs)"],
        [f"energy ({e.profile})", "", f"{e.energy_uj:.1f} uJ ESTIMATE"],
    ]
    print(format_table(["", "given", "firmware"], rows))
    if c is not None:
        tensors = [[t.name[:48], "x".join(map(str, t.shape)), t.method, t.original_bytes,
                    t.stored_bytes if t.method != "none" else "", t.detail]
                   for t in c.choices if t.original_bytes >= 1024 or t.method != "none"]
        if tensors:
            print()
            print(format_table(["tensor", "shape", "stored as", "bytes", "payload", "why"], tensors))
        if c.note:
            print(c.note)
    print(f"\narena: {m.arena.failed_bytes} B fails in the TFLM runtime ({m.arena.failure[:100]})")
    if project.protocol_missing:
        print(f"warning: protocol sources {', '.join(project.protocol_missing)} were not found; "
              "the project will not build until they are added to src/")
    print(f"wrote {len(project.files) + 1} files to {project.out_dir}; build with: "
          f"cd {project.out_dir} && pio run -e {project.board}   (TFLM tree needed, see README.md)")
    return 0
