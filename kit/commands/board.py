"""Build an emulated board: `kit board arm64 DIR` (Debian arm64 sysroot + aarch64 LiteRT under qemu-user).

Fetches qemu-user and debootstrap (Debian trixie, unpacked, never installed: no binfmt handler is
registered), a Debian bookworm arm64 sysroot with python3, and aarch64 ai-edge-litert + numpy wheels,
then writes DIR/python3-aarch64 (the board's python) and DIR/emulated-arm64.toml (its device profile).
Rerunning reuses every finished stage. Needs root (debootstrap), apt-get, dpkg, wget and the network;
about 100 s and 700 MB from scratch. Each stage's wall time is printed.

Use it over SSH (any sshd on this machine) like a Pi; its latency is emulation time, labelled so:
  kit board arm64 ~/.cache/prunekit/arm64-board
  kit profile model.tflite --target ssh://root@127.0.0.1 \\
      --profile ~/.cache/prunekit/arm64-board/emulated-arm64.toml
"""
from __future__ import annotations

import argparse

from kit.core.errors import KitError

BOARDS = ("arm64",)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from targets.emulated_arm64 import DEBIAN_MIRROR, DEFAULT_LITERT, DEFAULT_QEMU_CPU

    p.add_argument("board", choices=BOARDS, help="which board to build")
    p.add_argument("dir", help="folder to build it in (reused when it holds a finished stage)")
    p.add_argument("--litert", default=DEFAULT_LITERT,
                   help="pip requirement of the board's LiteRT (e.g. ai-edge-litert==2.3.0)")
    p.add_argument("--qemu-cpu", default=DEFAULT_QEMU_CPU,
                   help="QEMU CPU model the wrapper uses by default (QEMU_CPU overrides it per run)")
    p.add_argument("--mirror", default=DEBIAN_MIRROR, help="Debian mirror for the tools and the sysroot")
    p.add_argument("--json", action="store_true", help="print the stage times as one JSON line at the end")


def run(args: argparse.Namespace) -> int:
    from targets.emulated_arm64 import build_board, stages_json

    if not args.dir.strip():
        raise KitError("the board folder is empty", "e.g. kit board arm64 ~/.cache/prunekit/arm64-board")
    board = build_board(args.dir, litert=args.litert, qemu_cpu=args.qemu_cpu, mirror=args.mirror)
    if args.json:
        print(stages_json(board))
    return 0
