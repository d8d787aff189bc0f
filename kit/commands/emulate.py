"""Start a virtual microcontroller board (TFLite Micro on the host) that speaks the MLPerf Tiny serial protocol.

The board runs MODEL in the TFLite Micro Python runtime with a fixed tensor
arena and flash size (models that do not fit are refused) and answers on a new
pseudo-terminal (default) or a TCP port. Every model (flashed or loaded over
the line) is first run once in a child process, so one that crashes or hangs
TFLM is refused with the signal named instead of ending the board. Its m-lap-us
timestamps are the host's clock (TFLM on this CPU, not a microcontroller) unless --modelled-latency-us
sets a virtual per-inference time. It stays up until Ctrl-C.

Examples:
  kit emulate model.tflite --pty            # prints serial:///dev/pts/N
  kit profile model.tflite --target serial:///dev/pts/N
  kit emulate model.tflite --tcp 127.0.0.1:5555
  kit profile model.tflite --target socket://127.0.0.1:5555
"""
from __future__ import annotations

import argparse
import sys
import time

from kit.core.errors import KitError


def add_arguments(p: argparse.ArgumentParser) -> None:
    from firmware_tools.emulator import DEFAULT_ARENA_BYTES, DEFAULT_FLASH_BYTES

    p.add_argument("model", help=".tflite file the board has 'flashed'")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--pty", action="store_true", help="serve on a new pseudo-terminal (the default)")
    where.add_argument("--tcp", metavar="HOST:PORT", default=None, help="serve on a TCP port instead")
    p.add_argument("--arena-bytes", type=int, default=DEFAULT_ARENA_BYTES, help="tensor arena size")
    p.add_argument("--flash-bytes", type=int, default=DEFAULT_FLASH_BYTES, help="largest model the board holds")
    p.add_argument("--modelled-latency-us", type=float, default=None,
                   help="advance the board's clock by this many µs per inference instead of host time")
    p.add_argument("--no-extensions", action="store_true",
                   help="answer model/arena/input-format as unknown commands, like the MLPerf Tiny reference firmware")


def run(args: argparse.Namespace) -> int:
    from firmware_tools.emulator import EmulatedBoard

    if args.arena_bytes < 1 or args.flash_bytes < 1:
        raise KitError("--arena-bytes and --flash-bytes must be > 0")
    board = EmulatedBoard(args.model, arena_bytes=args.arena_bytes, flash_bytes=args.flash_bytes,
                          modelled_latency_us=args.modelled_latency_us, extensions=not args.no_extensions,
                          probe_in_child=True)
    if args.tcp:
        host, _, port = args.tcp.rpartition(":")
        if not host or not port.isdigit():
            raise KitError(f"--tcp {args.tcp!r} is not HOST:PORT", "e.g. --tcp 127.0.0.1:5555")
        try:
            host, port_number = board.start_tcp(host, int(port))
        except OSError as e:
            raise KitError(f"cannot listen on {args.tcp}: {e}") from None
        url = f"socket://{host}:{port_number}"
    else:
        url = "serial://" + board.start_pty()
    print(url, flush=True)
    print(f"emulated board ready: {board.model.id}, arena {args.arena_bytes} bytes "
          f"(used {board.model.arena_used}), flash {args.flash_bytes} bytes; Ctrl-C stops it",
          file=sys.stderr, flush=True)
    try:
        while board.serving:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        board.stop()
    return 0
