"""Reference image operations the augmentation tests compare the kit's with."""
from __future__ import annotations

import numpy as np


def shift(img: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """`img` (height, width[, channels]) moved down by `dy` and right by `dx` pixels; zeros move in."""
    h, w = img.shape[:2]
    out = np.zeros_like(img)
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = img[max(-dy, 0):h - max(dy, 0),
                                                                     max(-dx, 0):w - max(dx, 0)]
    return out
