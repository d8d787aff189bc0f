"""Capture what native code (TFLite converter, TFLM) writes straight to file descriptors 1 and 2.

Python-level redirection does not see C++ logging; the runtimes' exact error
messages are only available this way, and the converter's log noise is hidden.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Iterator


class Captured:
    text: str = ""


@contextlib.contextmanager
def capture_native_output() -> Iterator[Captured]:
    captured = Captured()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        try:
            os.dup2(tmp.fileno(), 1)
            os.dup2(tmp.fileno(), 2)
            yield captured
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            tmp.seek(0)
            captured.text = tmp.read().decode("utf-8", "replace")


def runtime_messages(text: str) -> str:
    """The lines of native output that explain a failure (log noise removed)."""
    keep = [ln.strip() for ln in text.splitlines()
            if ln.strip() and not ln.startswith(("I0000", "W0000", "INFO:", "WARNING: All log"))]
    return " | ".join(keep[-6:])
