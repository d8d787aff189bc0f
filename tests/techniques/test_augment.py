"""Shifted copies for the recovery fine-tune: real shifts of the right images, validation never copied."""
import numpy as np
import pytest

import kit  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from kit.core.errors import DataError
from kit.recipe import Augment, Distill, FinetuneStep, parse_recipe
from kit.techniques.finetune import augmented, fit, steps_per_epoch
from tests.support.images import shift
from tests.support.recipes import assert_recipe_error


def test_every_copy_is_a_shift_of_its_own_image():
    rng = np.random.default_rng(0)
    x = rng.random((12, 9, 7, 2), dtype=np.float32) + 0.1  # no zeros: a shift shows in the border
    y = np.arange(12)
    xa, ya = augmented(x, y, Augment(shift=2, copies=3))
    assert xa.shape == (48, 9, 7, 2) and sorted(ya.tolist()) == sorted(np.repeat(y, 4).tolist())
    offsets = set()
    for img, label in zip(xa, ya):
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if np.array_equal(img, shift(x[label], dy, dx))]
        assert found, "a copy is not a shift of the image with its label"
        offsets.add(found[0])
    assert (0, 0) in offsets and len(offsets) > 5  # the originals, and copies shifted in several directions


def test_non_image_inputs_are_refused():
    with pytest.raises(DataError, match="augment shifts images"):
        augmented(np.zeros((4, 65), np.float32), np.zeros(4), Augment())  # not a square image flattened


def test_steps_per_epoch_counts_the_copies():
    step = FinetuneStep(batch_size=10, validation_split=0.1, augment=Augment(copies=2))
    assert steps_per_epoch(100, step) == 27
    assert steps_per_epoch(100, FinetuneStep(batch_size=10, validation_split=0.1)) == 9


@pytest.mark.slow
def test_fit_with_augmented_distillation_keeps_the_validation_tail_unseen():
    import tf_keras as keras

    rng = np.random.default_rng(1)
    x = rng.random((50, 8, 8, 1), dtype=np.float32)
    y = rng.integers(0, 3, 50)

    def model():
        return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])

    teacher, student = model(), model()
    seen = []

    class Sizes(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(batch)

    step = FinetuneStep(epochs=1, batch_size=5, validation_split=0.2, distill=Distill(), augment=Augment(copies=2))
    history = fit(student, x, y, step, teacher=teacher, extra_callbacks=[Sizes()], progress=False)
    assert len(seen) == steps_per_epoch(50, step) == 24  # 40 training images x 3, in batches of 5
    assert history.val_accuracy[0] is not None


@pytest.mark.parametrize("text, words", [
    ("[finetune.augment]\nshift = 0\n", ["finetune.augment.shift", "1 to 64"]),
    ("[finetune.augment]\ncopy = 2\n", ["finetune.augment.copy", "copies"]),
])
def test_augment_recipe_errors(text, words):
    assert_recipe_error(text, 2, words)


def test_augment_recipe_defaults():
    r = parse_recipe("[finetune]\nepochs = 3\n[finetune.augment]\n")
    assert r.finetune.augment == Augment(shift=2, copies=2)
