"""Functions the isolation tests run in child processes (module-level, so the child can import them)."""
from __future__ import annotations

import os
import signal
import time

import numpy as np

from kit.core.errors import DataError
from kit.core.isolate import progress


def segfault() -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


def spin() -> None:
    while True:
        pass


def progress_then_spin(steps: int, step_s: float) -> None:
    """Report progress `steps` times, `step_s` apart (the first at once), then spin without reporting."""
    for i in range(steps):
        progress(f"running step {i}")
        time.sleep(step_s)
    while True:
        pass


def exit_quietly(code: int) -> None:
    os._exit(code)


def raise_data_error() -> None:
    raise DataError("labels are strings", "use integer class indices")


def raise_value_error() -> None:
    raise ValueError("not a number")


def noisy_sum(a: np.ndarray) -> np.ndarray:
    """Writes to the C-level stdout/stderr (as runtimes do) and returns an array."""
    os.write(1, b"runtime chatter on stdout\n" * 1000)
    os.write(2, b"runtime chatter on stderr\n")
    return a.sum(axis=0)
