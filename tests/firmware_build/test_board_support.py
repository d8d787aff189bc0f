"""The kit's own startup code, linker scripts and UART driver boot on every QEMU board, without TFLM: a stand-in
runner echoes what it receives, so the memory map, the vector table, the receive interrupt that ends WFI and
SysTick are checked on each core in seconds."""
from __future__ import annotations

import subprocess
import time

import pytest

from firmware_tools.boards import QEMU_BOARDS
from firmware_tools.project import TEMPLATES, render_linker_script
from firmware_tools.qemu import boot
from tests.firmware_build.conftest import need_tools

ECHO_RUNNER = r"""
#include <stdint.h>
#include <stddef.h>
#include "kit_runner.h"
uint8_t kit_tensor_arena[16];
static kit_write_fn out;
static kit_clock_fn clock_us;
void kit_runner_start(kit_write_fn write, kit_clock_fn timestamp_us) {
    out = write; clock_us = timestamp_us;
    out("m-init-done\r\n", 13);
}
void kit_runner_feed(const uint8_t* data, size_t len) {
    static char line[64]; static size_t n;
    for (size_t i = 0; i < len; ++i) {
        if (data[i] != '%') { if (n < sizeof(line)) line[n++] = (char)data[i]; continue; }
        uint32_t t0 = clock_us();
        for (volatile int k = 0; k < 100000; ++k) { }
        uint32_t dt = clock_us() - t0;
        out("m-echo-", 7); out(line, n);
        char digits[12]; int d = 0; do { digits[d++] = (char)('0' + dt % 10); dt /= 10; } while (dt);
        out("-", 1); while (d) out(&digits[--d], 1);
        out("\r\n", 2); n = 0;
    }
}
"""


@pytest.mark.parametrize("board", sorted(QEMU_BOARDS))
def test_startup_uart_and_clock_on_each_board(board, tmp_path):
    import serial

    need_tools("arm-none-eabi-gcc", "qemu-system-arm")
    b = QEMU_BOARDS[board]
    bare = TEMPLATES / "bare"
    (tmp_path / "kit_runner.h").write_text((TEMPLATES / "firmware/kit_runner.h").read_text())
    (tmp_path / "echo.c").write_text(ECHO_RUNNER)
    (tmp_path / "link.ld").write_text(render_linker_script(board))
    elf = tmp_path / "echo.elf"
    subprocess.run(["arm-none-eabi-gcc", *b.core.cpu_flags, "-O2", f"-DKIT_UART_BASE=0x{b.uart_base:08x}u",
                    f"-DKIT_UART_RX_IRQ={b.uart_rx_irq}", f"-DKIT_SYSCLK_HZ={b.sysclk_hz}u", f"-I{tmp_path}",
                    str(bare / "startup.c"), str(bare / "platform_cmsdk.c"), str(bare / "syscalls.c"),
                    str(tmp_path / "echo.c"), "-T", str(tmp_path / "link.ld"), "-nostartfiles", "--specs=nano.specs",
                    "-o", str(elf)], check=True, timeout=120)
    with boot(elf, b) as running:
        port = serial.serial_for_url(running.url, timeout=10)
        try:
            time.sleep(0.5)
            answers = []
            for word in ("alpha", "beta"):  # the second proves WFI is left again after the first byte burst
                port.write(f"{word}%".encode())
                line = ""
                while not line.startswith("m-echo-") and (line := port.read_until(b"\r\n").decode(
                        errors="replace").strip()):
                    pass  # the boot banner, if the port was connected in time to see it
                answers.append(line)
        finally:
            port.close()
    ticks = []
    for word, answer in zip(("alpha", "beta"), answers):
        assert answer.startswith(f"m-echo-{word}-"), f"{board}: {answers}"
        ticks.append(int(answer.rsplit("-", 1)[1]))
    # the same loop, the same emulated instruction count; the stamps are whole microseconds (1,000 instructions)
    assert ticks[0] > 0 and abs(ticks[0] - ticks[1]) <= 1
