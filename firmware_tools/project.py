"""An Arduino/PlatformIO firmware project that runs a model with TFLite Micro behind the serial protocol.

Steps: check the model is full-int8 with ops TFLM has kernels for; compress it
(per tensor LUT, prune or none) and check in the TFLM runtime that the
compressed model gives exactly the original outputs; measure the arena; write
the C array, the op resolver, the settings header, `main.cpp`, the protocol C
code and `platformio.ini`. Nothing here runs on a board: the numbers come from
the TFLM runtime on the host and the estimates are labelled as such.
"""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from string import Template

import numpy as np

from firmware_tools.arena import MemoryReport, measure_memory, with_margin
from firmware_tools.boards import QEMU_BOARDS
from firmware_tools.build import (
    PREFIX_HEADER,
    check_tree,
    default_tree,
    render_makefile,
    render_sources_mk,
    select_sources,
)
from firmware_tools.c_array import render_model_array
from firmware_tools.compress import (
    METHODS,
    Compression,
    check_micro_model,
    compress_model,
)
from firmware_tools.estimate import Estimate, estimate
from firmware_tools.op_resolver import render_resolver, resolver_methods
from firmware_tools.tflm import run_model, search_arena
from kit.core.errors import KitError, ModelError
from kit.core.jsonio import dumps
from kit.core.paths import check_output_dir
from kit.core.tflite_file import TFLiteInfo, read_tflite

TEMPLATES = Path(__file__).parent / "templates"
#: PlatformIO environment -> MCU profile of its chip (for the estimate)
BOARDS = {"nucleo_l4r5zi": "cortex-m4f-120", "nucleo_f767zi": "cortex-m7-216", "esp32-s3-devkitc-1": "esp32-s3-240"}
MANIFEST = "kit_firmware.json"
VENDOR = "prunekit"
FIRMWARE = "prunekit TFLM firmware 1"
#: command buffer of the protocol parser; `db` chunks of 32 bytes need 69
COMMAND_BYTES = 256
_VERIFY_SAMPLES = 8
MIN_BAUD, MAX_BAUD = 300, 16_000_000  # what UARTs of the supported boards can be set to
_PROTOCOL_FILES = ("th_protocol.h", "th_protocol.c")
#: stack reserved by the bare-metal linker scripts; TFLM's kernels need a few KB, CMSIS-NN a little more
STACK_BYTES = 16 * 1024


@dataclass
class FirmwareProject:
    out_dir: Path
    board: str
    source_bytes: int  # the model as given
    compression: Compression | None
    memory: MemoryReport
    arena_size: int  # written into the firmware: measured minimum + margin
    ops: list[tuple[str, str]]
    estimate: Estimate
    files: list[Path]
    protocol_missing: list[str]  # protocol files not found in templates/protocol


def generate_project(model_path: str | Path, out_dir: str | Path, board: str = "nucleo_l4r5zi",
                     methods: tuple[str, ...] = METHODS, baud: int = 115200,
                     tflm: str | Path | None = None, limits: Limits | None = None) -> FirmwareProject:
    """Write the firmware project for `model_path` into `out_dir`; `methods=()` skips compression.

    With `limits`, the per-tensor compression is the most compact one whose model flash and RAM (arena
    with margin plus decompression memory, measured in the TFLM runtime) both fit; prune-DECODE saves
    flash but decodes weights into RAM, so it is dropped first. Nothing fits: a KitError naming the numbers.

    `tflm` is the TensorFlow Lite Micro tree the Makefile builds against (default: `KIT_TFLM_ROOT`, else
    the shared pinned tree); without one the project has only the PlatformIO build.
    """
    if board not in BOARDS:
        raise KitError(f"unknown board {board!r}", f"use one of {', '.join(BOARDS)}")
    if not isinstance(baud, int) or isinstance(baud, bool) or not MIN_BAUD <= baud <= MAX_BAUD:
        raise KitError(f"--baud {baud} is not a serial speed", f"give a rate from {MIN_BAUD} to {MAX_BAUD:,}, e.g. 115200")
    path = Path(model_path)
    data = path.read_bytes() if path.is_file() else None
    if data is None:
        raise ModelError(f"{path} does not exist or is not a file")
    info = read_tflite(data)
    check_micro_model(info, where=str(path))
    resolver_methods(info)  # refuse ops without a TFLM kernel before any work
    tree = check_tree(Path(tflm)) if tflm is not None else _optional_tree()
    out = _prepare_dir(Path(out_dir))

    compression, memory = _fit_limits(data, methods, limits or Limits(), str(path))
    model = compression.model if compression else data
    model_info = read_tflite(model)
    ops = resolver_methods(model_info)
    if compression and compression.compressed:
        _verify_identical(data, model, info, memory.arena.min_bytes)
    arena_size = with_margin(memory.arena_bytes)
    est = estimate(model_info, BOARDS[board])

    from firmware_tools.protocol import model_id

    values = _settings(model_info, ops, path.stem, model, memory, arena_size, board, baud,
                       model_id(path.stem, model))
    files: dict[str, str] = {}
    files["src/model_data.h"], files["src/model_data.cc"] = render_model_array(model, source_label=path.name)
    files["src/op_resolver.h"], files["src/op_resolver.cc"] = render_resolver(ops)
    files["src/model_settings.h"] = _settings_header(values)
    files["src/main.cpp"] = _template("firmware/main.cpp", values)
    files["src/kit_runner.cc"] = _template("firmware/kit_runner.cc", values)
    files["src/kit_runner.h"] = (TEMPLATES / "firmware/kit_runner.h").read_text()
    files.update(_make_files(path.stem, ops, tree))
    files["platformio.ini"] = _template("firmware/platformio.ini", values)
    files["lib/tflite-micro/library.json"] = (TEMPLATES / "firmware/library.json").read_text()
    files["README.md"] = _template("firmware/README.md", values)
    written = []
    for rel, text in files.items():
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        written.append(target)
    missing = []
    for name in _PROTOCOL_FILES:
        src = TEMPLATES / "protocol" / name
        if src.is_file():
            shutil.copyfile(src, out / "src" / name)
            written.append(out / "src" / name)
        else:
            missing.append(name)
    project = FirmwareProject(out, board, len(data), compression, memory, arena_size, ops, est, written, missing)
    (out / MANIFEST).write_text(dumps(_manifest(project, path)))
    return project


@dataclass(frozen=True)
class Limits:
    """A board's or device class's memory (`max_flash_bytes`, `max_ram_bytes`); None: no limit."""

    flash_bytes: int | None = None
    ram_bytes: int | None = None

    def problems(self, flash: int, ram: int, what: str) -> list[str]:
        out = []
        if self.flash_bytes is not None and flash > self.flash_bytes:
            out.append(f"{what} flash {flash:,} B > max_flash_bytes {self.flash_bytes:,} B")
        if self.ram_bytes is not None and ram > self.ram_bytes:
            out.append(f"{what} RAM {ram:,} B > max_ram_bytes {self.ram_bytes:,} B")
        return out


def _fit_limits(data: bytes, methods: tuple[str, ...], limits: Limits, where: str) -> tuple[Compression | None, MemoryReport]:
    """The first of: `methods`, then without prune (it moves weights into RAM), then none, that fits `limits`."""
    plans = [methods, tuple(m for m in methods if m != "prune"), ()]
    tried: list[str] = []
    for plan in dict.fromkeys(plans):
        compression = compress_model(data, plan) if plan else None
        model = compression.model if compression else data
        memory = measure_memory(model)
        ram = with_margin(memory.arena_bytes) + memory.decompression_memory_bytes
        problems = limits.problems(len(model), ram, "model")
        if not problems:
            return compression, memory
        tried.append(f"{'+'.join(plan) or 'none'}: " + "; ".join(problems))
    raise KitError(f"{where} does not fit the board with any compression:\n  " + "\n  ".join(tried),
                   "prune or structurally shrink the model (kit compress --recipe mcu), or choose a device "
                   "with more memory")


def _optional_tree() -> Path | None:
    tree = default_tree()
    return check_tree(tree) if tree is not None else None


def _make_files(name: str, ops: list[tuple[str, str]], tree: Path | None) -> dict[str, str]:
    """The Makefile build: sources for this model's ops, board support, one linker script per QEMU board."""
    if tree is None:
        return {}
    files = {"Makefile": render_makefile(tree, _c_comment(name)),
             "tflm_sources.mk": render_sources_mk(select_sources(tree, [method for _, method in ops])),
             "src/tflm_prefix.h": PREFIX_HEADER,
             "src/host/platform_host.cc": (TEMPLATES / "host/platform_host.cc").read_text()}
    for rel in ("startup.c", "platform_cmsdk.c", "syscalls.c", "cxx_support.cc"):
        files[f"src/bare/{rel}"] = (TEMPLATES / "bare" / rel).read_text()
    for board_name in QEMU_BOARDS:
        files[f"src/bare/{board_name}.ld"] = render_linker_script(board_name)
    return files


def render_linker_script(board_name: str) -> str:
    """The linker script of a QEMU board: its flash and RAM, and the reserved stack."""
    b = QEMU_BOARDS[board_name]
    return Template((TEMPLATES / "bare/link.ld").read_text()).substitute(
        board=board_name, core=b.core.name, flash_origin=f"0x{b.flash_origin:08x}",
        flash_length=f"0x{b.flash_length:x}", ram_origin=f"0x{b.ram_origin:08x}",
        ram_length=f"0x{b.ram_length:x}", stack_bytes=str(STACK_BYTES))


def _prepare_dir(out: Path) -> Path:
    """Create `out`, or reuse it if empty or a previous `kit firmware` project; never clobber other files."""
    check_output_dir(out, MANIFEST, force=True, what="firmware folder")  # a file, or not writable
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise KitError(f"{out} is not empty and is not a `kit firmware` project",
                       "choose a new or empty output directory with -o")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _verify_identical(original: bytes, compressed: bytes, info: TFLiteInfo, compressed_arena: int) -> None:
    """Random inputs through both models in the TFLM runtime: the outputs must be bit-identical."""
    rng = np.random.default_rng(0)
    inputs = []
    for index in info.inputs:
        t = info.tensor(index)
        dtype = np.dtype(t.dtype)
        if dtype.kind in "iu":
            lo, hi = np.iinfo(dtype).min, np.iinfo(dtype).max
            inputs.append(rng.integers(lo, hi, size=(_VERIFY_SAMPLES, *t.shape), endpoint=True).astype(dtype))
        else:
            inputs.append(rng.standard_normal((_VERIFY_SAMPLES, *t.shape)).astype(dtype))
    expected = run_model(original, inputs, search_arena(original).min_bytes)
    got = run_model(compressed, inputs, compressed_arena)
    for i, (a, b) in enumerate(zip(expected, got)):
        if not np.array_equal(a, b):
            raise ModelError(f"the compressed model's output {i} differs from the original's in the TFLM runtime",
                             "this is a bug in the compressor; generate the firmware with --compress none")


def _settings(info: TFLiteInfo, ops: list[tuple[str, str]], name: str, model: bytes, memory: MemoryReport, arena_size: int, board: str,
              baud: int, model_id: str) -> dict[str, str]:
    ins = [info.tensor(i) for i in info.inputs]
    input_bytes = sum(t.elements * np.dtype(t.dtype).itemsize for t in ins)
    dtypes = "+".join(sorted({t.dtype for t in ins}))
    shapes = "+".join("x".join(str(d) for d in t.shape) for t in ins)
    return {
        "model_name": name, "board": board, "baud": str(baud), "flash_bytes": str(len(model)),
        "arena_size": str(arena_size), "arena_min": str(memory.arena_bytes),
        "decompression_bytes": str(memory.decompression_memory_bytes), "input_bytes": str(input_bytes),
        "input_format": f"dtype={dtypes},shape={shapes},bytes={input_bytes}", "model_id": model_id,
        "ops": ", ".join(op for op, _ in ops),
    }


def _settings_header(v: dict[str, str]) -> str:
    return f"""// Settings of the firmware for {_c_comment(v['model_name'])}. Generated by `kit firmware`.
#ifndef KIT_MODEL_SETTINGS_H_
#define KIT_MODEL_SETTINGS_H_

#include <stddef.h>

// Measured minimum {v['arena_min']} bytes in the TFLite Micro runtime, plus a margin.
constexpr size_t kTensorArenaSize = {v['arena_size']};
// Separate memory for weights decoded by DECODE ops; 0: they are planned inside the arena.
#define KIT_DECOMPRESSION_MEMORY_SIZE {v['decompression_bytes']}
constexpr size_t kInputBytes = {v['input_bytes']};
constexpr size_t kCommandBytes = {COMMAND_BYTES};
constexpr unsigned long kBaudRate = {v['baud']};
constexpr char kModelId[] = {_c_string(v['model_id'])};
constexpr char kInputFormat[] = {_c_string(v['input_format'])};
constexpr char kVendor[] = {_c_string(VENDOR)};
constexpr char kFirmware[] = {_c_string(FIRMWARE)};

#endif  // KIT_MODEL_SETTINGS_H_
"""


def _c_string(text: str) -> str:
    """A C string literal holding printable ASCII only (names come from untrusted file names)."""
    safe = "".join(c if 32 <= ord(c) < 127 and c not in '"\\?' else "_" for c in text)
    return f'"{safe}"'


def _c_comment(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", text)


def _template(rel: str, values: dict[str, str]) -> str:
    safe = {k: _c_comment(v) if k == "model_name" else v for k, v in values.items()}
    return Template((TEMPLATES / rel).read_text()).substitute(safe)


def _manifest(p: FirmwareProject, source: Path) -> dict:
    c = p.compression
    return {
        "source": str(source), "board": p.board, "mcu_profile": BOARDS[p.board],
        "source_bytes": p.source_bytes, "flash_bytes": p.memory.flash_bytes,
        "arena_min_bytes": p.memory.arena_bytes, "arena_size": p.arena_size,
        "decompression_bytes": p.memory.decompression_memory_bytes, "ram_bytes": p.memory.ram_bytes,
        "arena_step_below_fails": {"bytes": p.memory.arena.failed_bytes, "runtime": p.memory.arena.failure},
        "ops": [op for op, _ in p.ops],
        "tensors": [] if c is None else [
            {"name": t.name, "shape": t.shape, "dtype": t.dtype, "method": t.method, "bytes": t.original_bytes,
             "candidates": t.candidates, "saved_bytes": t.saved_bytes, "detail": t.detail} for t in c.choices],
        "estimate": {"profile": p.estimate.profile, "latency_us": p.estimate.latency_us,
                     "energy_uj": p.estimate.energy_uj, "macs": p.estimate.macs,
                     "note": "estimate from a cycles-per-op model, not a measurement"},
        "protocol_files_missing": p.protocol_missing,
    }
