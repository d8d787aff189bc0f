"""Boot a firmware image on a QEMU model of an MPS2/MPS3 board, its UART on a loopback TCP port.

The firmware is the same `kit firmware` project a real board gets, built by its Makefile for the board's
core; QEMU runs the real Cortex-M instructions. `-icount shift=0` makes the virtual clock advance exactly
1 ns per instruction, so the SysTick-based `m-lap-us` stamps the firmware prints measure instructions
(1 us = 1,000 instructions), deterministically: an emulated instruction clock, not a chip's wall time.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from firmware_tools.boards import QemuBoard
from kit.core.errors import KitError

QEMU = "qemu-system-arm"
#: virtual nanoseconds per instruction is 2**shift; 0 makes one instruction one nanosecond
ICOUNT_SHIFT = 0
INSTRUCTIONS_PER_US = 1000 >> ICOUNT_SHIFT
CLOCK_LABEL = "emulated instruction clock (QEMU -icount shift=0: 1 instruction = 1 ns)"
_LISTEN_TIMEOUT_S = 20.0


@dataclass
class QemuBoardProcess:
    """A running QEMU; `url` is the pyserial URL of its UART. `stop()` is safe to call twice."""

    board: QemuBoard
    image: Path
    process: subprocess.Popen
    port: int
    log: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.process.wait(timeout=5)
        for stream in (self.process.stdout, self.process.stderr):
            if stream:
                stream.close()

    def __enter__(self) -> QemuBoardProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def qemu_binary() -> str:
    path = shutil.which(QEMU)
    if path is None:
        raise KitError(f"{QEMU} is not installed", "install the Debian package qemu-system-arm")
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def boot(image: Path, board: QemuBoard, attempts: int = 3) -> QemuBoardProcess:
    """Start QEMU with `image` and wait until its UART port listens (a new port is tried if one was taken)."""
    exe = qemu_binary()
    if not Path(image).is_file():
        raise KitError(f"firmware image {image} does not exist")
    last = ""
    for _ in range(attempts):
        port = _free_port()
        cmd = [exe, "-M", board.machine, "-display", "none", "-monitor", "none", "-nodefaults",
               "-chardev", f"socket,id=uart0,host=127.0.0.1,port={port},server=on,wait=off,nodelay=on",
               "-serial", "chardev:uart0", "-icount", f"shift={ICOUNT_SHIFT}", "-kernel", str(image)]
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        running = QemuBoardProcess(board, Path(image), proc, port)
        deadline = time.monotonic() + _LISTEN_TIMEOUT_S
        while time.monotonic() < deadline and proc.poll() is None:
            if _listening(port):
                return running
            time.sleep(0.05)
        running.stop()
        last = (proc.stderr.read() if proc.stderr and not proc.stderr.closed else "") or ""
        last = last.decode(errors="replace") if isinstance(last, bytes) else last
        if "Address already in use" not in last:
            break
    raise KitError(f"QEMU ({board.machine}) did not start: {last.strip()[-400:] or 'no UART port after 20 s'}",
                   f"run it by hand: {QEMU} -M {board.machine} -nographic -kernel {image}")


def _listening(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port, read from /proc so that no connection is consumed."""
    needle = f":{port:04X} "
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                if len(parts) > 3 and parts[1].endswith(needle.strip()) and parts[3] == "0A":
                    return True
        except OSError:
            continue
    return False
