"""Build targets of the firmware: the host and Cortex-M cores on the Arm MPS2/MPS3 boards QEMU models.

A `Core` is how the compiler is told about a CPU; a `QemuBoard` adds the memory map, the UART and the
system clock the startup code and linker script need, and the QEMU machine that boots the image. Adding
a board is one entry in `QEMU_BOARDS`.
"""
from __future__ import annotations

from dataclasses import dataclass

from kit.core.errors import KitError


@dataclass(frozen=True)
class Core:
    name: str
    cpu_flags: tuple[str, ...]
    kernels: tuple[str, ...] = ("reference", "cmsis_nn")


@dataclass(frozen=True)
class QemuBoard:
    """An MPS2/MPS3 FPGA image as QEMU models it; addresses are the ones the CPU sees after reset."""

    machine: str
    core: Core
    flash_origin: int  # code and read-only data (the model)
    flash_length: int
    ram_origin: int  # data, bss (the arena) and the stack
    ram_length: int
    uart_base: int  # CMSDK APB UART0
    uart_rx_irq: int  # its receive interrupt (external interrupt number)
    sysclk_hz: int  # SysTick's processor clock
    what: str


HOST = Core("host", (), kernels=("reference",))
CORES = {
    "cortex-m4f": Core("cortex-m4f", ("-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard")),
    "cortex-m7": Core("cortex-m7", ("-mcpu=cortex-m7", "-mthumb", "-mfpu=fpv5-d16", "-mfloat-abi=hard")),
    "cortex-m33": Core("cortex-m33", ("-mcpu=cortex-m33", "-mthumb", "-mfpu=fpv5-sp-d16", "-mfloat-abi=hard")),
    "cortex-m55": Core("cortex-m55", ("-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard")),
}
_MB = 1024 * 1024
QEMU_BOARDS = {
    "mps2-an386": QemuBoard("mps2-an386", CORES["cortex-m4f"], 0x00000000, 4 * _MB, 0x20000000, 4 * _MB,
                            0x40004000, 0, 25_000_000, "MPS2 AN386, Cortex-M4F"),
    "mps2-an500": QemuBoard("mps2-an500", CORES["cortex-m7"], 0x00000000, 4 * _MB, 0x20000000, 4 * _MB,
                            0x40004000, 0, 25_000_000, "MPS2 AN500, Cortex-M7"),
    # Armv8-M boards boot in the secure state: code, data and the UART are used through their secure aliases
    "mps2-an505": QemuBoard("mps2-an505", CORES["cortex-m33"], 0x10000000, 4 * _MB, 0x38000000, 2 * _MB,
                            0x50200000, 32, 20_000_000, "MPS2 AN505, Cortex-M33"),
    "mps3-an547": QemuBoard("mps3-an547", CORES["cortex-m55"], 0x10000000, 512 * 1024, 0x11000000, 2 * _MB,
                            0x59303000, 33, 32_000_000, "MPS3 AN547, Cortex-M55"),
}
#: `TARGET=` of the generated Makefile
TARGETS = ("host", *QEMU_BOARDS)


def qemu_board(name: str) -> QemuBoard:
    try:
        return QEMU_BOARDS[name]
    except KeyError:
        raise KitError(f"unknown QEMU board {name!r}", f"use one of {', '.join(QEMU_BOARDS)}") from None


def core_of(target: str) -> Core:
    if target == "host":
        return HOST
    return qemu_board(target).core
