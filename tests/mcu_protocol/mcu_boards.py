"""Helpers shared by the serial-protocol tests: emulated boards on real pseudo-terminals, direct TFLM runs."""
from __future__ import annotations

import contextlib
import os
import pty
import threading
import time
import tty
from pathlib import Path
from typing import Iterator

import numpy as np

MLPERF = "models/mlperf-tiny"
KWS = f"{MLPERF}/kws_ref_model.tflite"


@contextlib.contextmanager
def emulated(model: str | Path | bytes, **options) -> Iterator[tuple[object, str]]:
    """An EmulatedBoard served on a new pty; yields (board, "serial:///dev/pts/N")."""
    from firmware_tools.emulator import EmulatedBoard

    board = EmulatedBoard(model, **options)
    try:
        yield board, "serial://" + board.start_pty()
    finally:
        board.stop()


def tflm_outputs(model: Path, data: bytes) -> list[float]:
    """Dequantized outputs of one inference run directly in the TFLM Python runtime (no serial link)."""
    from tflite_micro.python.tflite_micro import runtime

    interp = runtime.Interpreter.from_file(str(model), arena_size=1 << 20)
    d = interp.get_input_details(0)
    interp.set_input(np.frombuffer(data, d["dtype"]).reshape(d["shape"]), 0)
    interp.invoke()
    out = interp.get_output_details(0)
    q = out["quantization_parameters"]
    y = interp.get_output(0).reshape(-1).astype(np.float64)
    return list((y - q["zero_points"][0]) * q["scales"][0])


def bmp_as_int8_npy(bmp: Path, out: Path) -> Path:
    """The BMP's pixel bytes reinterpreted as int8, as the TFLM person_detection test feeds them.

    The example's BMPs store int8 pixel values in 8-bit grayscale; shifting by 128
    instead turns person.bmp into a 0.52/0.48 "no person" guess.
    """
    from PIL import Image

    img = Image.open(bmp)
    np.save(out, np.frombuffer(img.tobytes(), np.uint8).view(np.int8).reshape(1, img.height, img.width, 1))
    return out


@contextlib.contextmanager
def power_meter(amps: float, volts: float, period_s: float) -> Iterator[str]:
    """A meter on a real pty printing `<t_us> <A> <V>` lines, the format `targets.energy` reads; yields its path."""
    master, slave = pty.openpty()
    tty.setraw(slave)
    stop = threading.Event()

    def emit() -> None:
        while not stop.is_set():
            try:
                os.write(master, f"{time.monotonic_ns() // 1000} {amps} {volts}\r\n".encode())
            except OSError:
                return
            time.sleep(period_s)

    thread = threading.Thread(target=emit, daemon=True)
    thread.start()
    try:
        yield os.ttyname(slave)
    finally:
        stop.set()
        thread.join(timeout=5)
        os.close(master)
        os.close(slave)
