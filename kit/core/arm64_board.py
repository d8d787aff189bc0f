"""Where the emulated aarch64 board lives and when it is finished (built by `kit board arm64 DIR`).

The board's layout belongs to `targets.emulated_arm64`, which builds it; the check runtime `litert-aarch64`
(kit.convert.check) only needs to find a finished one: `$KIT_ARM64_BOARD`, else the default folder the
build command suggests.
"""
from __future__ import annotations

import os
from pathlib import Path

from kit.core.paths import user_cache

#: environment variable naming the board folder
ENV = "KIT_ARM64_BOARD"
#: the board's python: aarch64 CPython under qemu-user (a shell script that execs the emulator)
WRAPPER_NAME = "python3-aarch64"
#: the board's device profile for SSH targets
PROFILE_NAME = "emulated-arm64.toml"
#: each build stage's stamp file
STAMP = ".kit-stage.json"
STAGES = ("tools", "sysroot", "site")


def default_board() -> Path:
    """The folder `kit board arm64` is pointed at in the docs and in CI."""
    return user_cache("arm64-board")


def board_ready(root: str | Path) -> bool:
    """True when `root` holds a finished board (every stage stamped and the wrapper present)."""
    r = Path(root)
    return all((r / d / STAMP).is_file() for d in STAGES) and (r / WRAPPER_NAME).is_file() \
        and (r / PROFILE_NAME).is_file()


def find_board() -> tuple[Path | None, str]:
    """(the finished board folder, "") or (None, why there is none and how to make one)."""
    value = os.environ.get(ENV)
    root = Path(value).expanduser() if value else default_board()
    where = f"{ENV}={value}" if value else f"{root} ({ENV} is not set)"
    if not root.is_dir():
        return None, f"no emulated aarch64 board at {where}: build one with `kit board arm64 {root}`"
    if not board_ready(root):
        return None, f"{where} holds no finished aarch64 board: run `kit board arm64 {root}`"
    return root, ""
