"""Flash and RAM of a linked firmware image, read from the ELF's sections and symbols.

These are the figures the chip will hold: flash is every allocated read-only section plus the load image
of `.data`; RAM is `.data`, `.bss` (which holds the tensor arena) and the reserved stack. The model's and
the arena's shares come from their symbols (`g_model`, `kit_tensor_arena`), so "code" is what is left of
flash and "static" what is left of RAM besides arena and stack.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from kit.core.errors import KitError

MODEL_SYMBOL = "g_model"
ARENA_SYMBOL = "kit_tensor_arena"
DECOMPRESSION_SYMBOL = "g_decompression_memory"  # inside an anonymous namespace: matched by suffix
STACK_SECTION = ".stack"


@dataclass(frozen=True)
class ImageSizes:
    """Bytes of one linked image, by where they live on the chip."""

    flash_bytes: int  # everything stored in flash
    model_bytes: int  # the model array (in flash)
    code_bytes: int  # flash minus the model: code, constants, vectors, .data's initial values
    ram_bytes: int  # .data + .bss + stack
    arena_bytes: int  # the tensor arena (in .bss)
    decompression_bytes: int  # memory for DECODE'd weights (in .bss), 0 when none
    stack_bytes: int  # reserved by the linker script
    static_bytes: int  # RAM minus arena, decompression memory and stack: other globals
    sections: dict[str, int]  # allocated section -> bytes

    def as_dict(self) -> dict:
        return asdict(self)


def read_image(path: str | Path) -> ImageSizes:
    """Sizes of a linked Cortex-M ELF (as built by `kit firmware`'s Makefile)."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.constants import SH_FLAGS
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    path = Path(path)
    try:
        with path.open("rb") as f:
            elf = ELFFile(f)
            sections: dict[str, int] = {}
            flash = ram = stack = 0
            for s in elf.iter_sections():
                flags = s["sh_flags"]
                if not flags & SH_FLAGS.SHF_ALLOC or s["sh_size"] == 0:
                    continue
                size = int(s["sh_size"])
                sections[s.name] = size
                writable, nobits = bool(flags & SH_FLAGS.SHF_WRITE), s["sh_type"] == "SHT_NOBITS"
                if s.name == STACK_SECTION:
                    stack = size
                if not writable:
                    flash += size
                elif nobits:
                    ram += size
                else:  # .data: initial values in flash, variables in RAM
                    flash += size
                    ram += size
            symbols: dict[str, int] = {}
            for table in elf.iter_sections():
                if isinstance(table, SymbolTableSection):
                    for sym in table.iter_symbols():
                        if sym["st_size"]:
                            symbols[sym.name] = int(sym["st_size"])
    except (OSError, ELFError) as e:
        raise KitError(f"cannot read the firmware image {path}: {e}") from None
    if MODEL_SYMBOL not in symbols or ARENA_SYMBOL not in symbols:
        raise KitError(f"{path} has no {MODEL_SYMBOL} / {ARENA_SYMBOL} symbols",
                       "it was not built from a `kit firmware` project")
    model, arena = symbols[MODEL_SYMBOL], symbols[ARENA_SYMBOL]
    decompression = sum(size for name, size in symbols.items() if name.endswith(DECOMPRESSION_SYMBOL + "E")
                        or name == DECOMPRESSION_SYMBOL)
    return ImageSizes(flash_bytes=flash, model_bytes=model, code_bytes=flash - model, ram_bytes=ram,
                      arena_bytes=arena, decompression_bytes=decompression, stack_bytes=stack,
                      static_bytes=ram - arena - decompression - stack, sections=sections)
