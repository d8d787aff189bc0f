"""An input batch given by the user (`--input x.npy`) checked on the host before any device runs the model.

A runner on a device that cannot load or reshape the batch can only say that it printed no result; here the
message names the file, what it holds and what the model takes.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kit.core.errors import KitError
from kit.core.tflite_file import read_tflite


def check_input_batch(path: str | Path, models: Sequence[str | Path]) -> None:
    """One numeric .npy array with as many values as each model's first input takes, or a KitError."""
    import numpy as np

    try:
        batch = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise KitError(f"--input {path} is not a readable .npy file ({e})",
                       "save one input batch with numpy.save") from None
    if not isinstance(batch, np.ndarray) or batch.dtype.kind not in "biuf":
        raise KitError(f"--input {path} is not one numeric array", "save one input batch with numpy.save")
    for m in models:
        info = read_tflite(m)
        if not info.inputs:
            continue
        shape = [int(d) for d in info.tensor(info.inputs[0]).shape]
        if all(d > 0 for d in shape) and batch.size != int(np.prod(shape)):
            raise KitError(f"--input {path} holds {batch.size} values (shape {list(batch.shape)}), but the input "
                           f"of {Path(m).name} takes {int(np.prod(shape))} (shape {shape})",
                           "save one batch of the model's input shape")
