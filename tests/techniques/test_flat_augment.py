"""Shifted copies of flat inputs (a fully connected network on MNIST takes 784 = 28x28 values per image)."""
import numpy as np
import pytest

import kit  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from kit.core.errors import DataError
from kit.recipe import Augment
from kit.techniques.finetune import augmented
from tests.support.images import shift


def test_flat_square_inputs_are_shifted_as_images_and_stay_flat():
    rng = np.random.default_rng(0)
    x = rng.random((10, 49), dtype=np.float32) + 0.1  # 7x7 images, no zeros: a shift shows in the border
    y = np.arange(10)
    xa, ya = augmented(x, y, Augment(shift=2, copies=3))
    assert xa.shape == (40, 49) and xa.dtype == x.dtype
    assert sorted(ya.tolist()) == sorted(np.repeat(y, 4).tolist())
    offsets = set()
    for flat, label in zip(xa, ya):
        img, source = flat.reshape(7, 7), x[label].reshape(7, 7)
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if np.array_equal(img, shift(source, dy, dx))]
        assert found, "a flat copy is not a row-major shift of the image with its label"
        offsets.add(found[0])
    assert (0, 0) in offsets and len(offsets) > 5


def test_flat_inputs_of_no_square_length_are_refused():
    with pytest.raises(DataError, match="augment shifts images"):
        augmented(np.zeros((4, 50), np.float32), np.zeros(4), Augment())
    with pytest.raises(DataError, match="augment shifts images"):
        augmented(np.zeros((4, 1), np.float32), np.zeros(4), Augment())
