"""Generate a TFLite Micro firmware project for a full-int8 model, and optionally build it.

The model is compressed with TFLite Micro's own DECODE formats (per tensor LUT
for clustered weights, prune for sparse ones, or none: whichever is smallest
and fits --max-flash/--max-ram), checked to give exactly the original outputs
in the TFLM runtime, and written as a C array with a matching op resolver, the
measured arena size and a runner that speaks the MLPerf Tiny serial protocol.
The project builds with its Makefile against a TFLM tree (host, Cortex-M QEMU
boards) and with PlatformIO for real boards.

Examples:
  kit firmware model_int8.tflite -o fw/
  kit firmware model_int8.tflite -o fw/ --build mps2-an386 --kernels cmsis_nn --max-ram 262144
  kit firmware model_int8.tflite -o fw/ --board esp32-s3-devkitc-1 --compress prune
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from firmware_tools.boards import TARGETS
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
    p.add_argument("--tflm", metavar="DIR", default=None,
                   help="TensorFlow Lite Micro tree the project's Makefile builds against "
                        "(default: $KIT_TFLM_ROOT, else ../shared/third_party/tflite-micro)")
    p.add_argument("--build", metavar="TARGET", action="append", default=[], choices=TARGETS,
                   help=f"also build the image now (repeatable): {', '.join(TARGETS)}; flash and RAM are then "
                        "read from the linked ELF")
    p.add_argument("--max-flash", type=int, default=None, metavar="BYTES",
                   help="flash of the device: compression is chosen to fit, the built image is checked")
    p.add_argument("--max-ram", type=int, default=None, metavar="BYTES",
                   help="RAM of the device: prune-DECODE (weights decoded into RAM) is dropped if it does not fit")
    p.add_argument("--json", action="store_true",
                   help="print the project's figures (and each built image's) as strict JSON on stdout; "
                        "the tables go to stderr")
    p.add_argument("--kernels", default="reference", choices=("reference", "cmsis_nn"),
                   help="TFLM kernels for --build (cmsis_nn: Cortex-M only)")


def run(args: argparse.Namespace) -> int:
    import contextlib
    import json

    from kit.core.jsonio import dumps

    if not args.json:
        return _run(args, {})
    figures: dict = {}
    with contextlib.redirect_stdout(sys.stderr):
        code = _run(args, figures)
    from firmware_tools.project import MANIFEST

    figures["project"] = json.loads((Path(args.out) / MANIFEST).read_text())
    print(dumps(figures))
    return code


def _run(args: argparse.Namespace, figures: dict) -> int:
    from kit.api import firmware
    from kit.core.tables import format_table

    project = firmware(args.model, args.out, board=args.board, compress=args.compress, baud=args.baud, tflm=args.tflm,
                       max_flash_bytes=args.max_flash, max_ram_bytes=args.max_ram)
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
          f"make -C {project.out_dir} TARGET=mps2-an386 (or host), or pio run -e {project.board} (see README.md)")
    problems: list[str] = []
    figures["images"] = {}
    for target in args.build:
        sizes, found = _build(project.out_dir, target, args.kernels, args.tflm, args.max_flash, args.max_ram)
        figures["images"][target] = sizes
        problems += found
    figures["problems"] = problems
    if problems:
        print("error: the linked image does not fit the device: " + "; ".join(problems), file=sys.stderr)
        print("hint: prune or structurally shrink the model (kit compress --recipe mcu), or a device with more "
              "memory", file=sys.stderr)
        return 1
    return 0


def _build(project, target: str, kernels: str, tflm: str | None, max_flash: int | None,
           max_ram: int | None) -> tuple[dict | None, list[str]]:
    """Build one image and print flash and RAM as the linked ELF holds them."""
    from firmware_tools.build import build
    from firmware_tools.image import read_image
    from firmware_tools.project import Limits
    from kit.core.tables import format_table

    print(f"\nbuilding {target} ({kernels} kernels; the first build of a configuration compiles TFLM: minutes) ...",
          flush=True)
    built = build(project, target, kernels, Path(tflm) if tflm else None)
    if target == "host":
        print(f"built {built.image} in {built.seconds:.0f} s (runs the protocol on stdin/stdout)")
        return None, []
    i = read_image(built.image)
    rows = [["flash", f"{i.flash_bytes:,}", f"model {i.model_bytes:,} + code and constants {i.code_bytes:,}"],
            ["RAM", f"{i.ram_bytes:,}", (f"arena {i.arena_bytes:,} + decompression {i.decompression_bytes:,} + "
                                        f"stack {i.stack_bytes:,} + static {i.static_bytes:,}")]]
    print(format_table([f"{target} image", "bytes", "from the linked ELF"], rows))
    print(f"built {built.image} in {built.seconds:.0f} s; run it: kit profile MODEL --target qemu://{target}")
    return i.as_dict(), Limits(max_flash, max_ram).problems(i.flash_bytes, i.ram_bytes, f"{target} image")
