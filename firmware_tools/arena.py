"""Flash and RAM a model needs on a microcontroller, measured in the TFLite Micro runtime.

Flash is the model's size (the C array). RAM is the tensor arena: the smallest
arena (16-byte steps) with which the TFLM runtime allocates and invokes the
model, found by binary search; the step below is shown to fail. Compressed
models decode weights into RAM before each consumer: either inside the arena
(the memory planner places them), or in a separate decompression memory
(`MicroInterpreter::SetDecompressionMemory`), sized here as the largest set of
tensors one DECODE operator produces. Both layouts are measured and the one
needing less RAM in total is recommended.

Measured on the host's TFLM build (64-bit, reference kernels, recording
allocator): the planned tensor memory ("head") is the same on a 32-bit MCU;
the persistent part ("tail") holds pointer-sized structs and is smaller there,
so the figure is an upper bound for the reference kernels. Optimized kernels
(CMSIS-NN, ESP-NN) may ask for scratch buffers on top: keep a margin.
"""
from __future__ import annotations

from dataclasses import dataclass

from firmware_tools.tflm import ARENA_STEP, ArenaSearch, search_arena
from kit.core.tflite_file import TFLiteInfo, read_tflite

DECODE_OP = "TFLM_DECODE"
_ITEMSIZE = {"int8": 1, "uint8": 1, "bool": 1, "int16": 2, "float16": 2, "int32": 4, "float32": 4, "uint32": 4,
             "int64": 8, "float64": 8, "uint64": 8}


@dataclass
class MemoryReport:
    flash_bytes: int
    #: smallest arena with decoded tensors planned inside it
    arena: ArenaSearch
    #: smallest arena when DECODE outputs live in a separate decompression memory (None: no DECODE ops)
    split_arena: ArenaSearch | None
    #: size of that decompression memory: the largest output set of one DECODE operator, 16-byte aligned
    decompression_bytes: int

    @property
    def uses_decompression_memory(self) -> bool:
        return self.split_arena is not None and (
            self.split_arena.min_bytes + self.decompression_bytes < self.arena.min_bytes)

    @property
    def arena_bytes(self) -> int:
        """Arena of the recommended layout."""
        return self.split_arena.min_bytes if self.uses_decompression_memory else self.arena.min_bytes

    @property
    def decompression_memory_bytes(self) -> int:
        """Separate decompression memory of the recommended layout (0 when decoding into the arena)."""
        return self.decompression_bytes if self.uses_decompression_memory else 0

    @property
    def ram_bytes(self) -> int:
        return self.arena_bytes + self.decompression_memory_bytes


def measure_memory(model: bytes, timeout_s: float = 300.0) -> MemoryReport:
    """Flash bytes, and the minimum arena with and without a separate decompression memory."""
    info = read_tflite(model)
    arena = search_arena(model, 0, timeout_s)
    decompression = decompression_bytes(info)
    split = search_arena(model, decompression, timeout_s) if decompression else None
    return MemoryReport(len(model), arena, split, decompression)


def decompression_bytes(info: TFLiteInfo) -> int:
    """Bytes the largest DECODE operator writes at once (each output aligned to 16 bytes); 0 without DECODE."""
    largest = 0
    for op in info.ops:
        if op.op != DECODE_OP:
            continue
        total = 0
        for index in op.outputs:
            t = info.tensor(index)
            total += _align(t.elements * _ITEMSIZE.get(t.dtype, 8))
        largest = max(largest, total)
    return largest


def with_margin(arena_bytes: int, margin_fraction: float = 0.1, margin_min: int = 1024) -> int:
    """Arena size for firmware: measured size plus a margin for optimized kernels' scratch buffers."""
    return _align(arena_bytes + max(margin_min, int(arena_bytes * margin_fraction)))


def _align(n: int) -> int:
    return (n + ARENA_STEP - 1) // ARENA_STEP * ARENA_STEP
