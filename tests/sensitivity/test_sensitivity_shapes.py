"""Kernel-ring and input-border rows of the sensitivity analysis, on a small CNN trained on digits."""
import pytest

import kit  # noqa: F401
from kit.search.sensitivity import analyze, is_one_shot, split_validation

pytestmark = pytest.mark.slow  # trains a small CNN


@pytest.fixture(scope="module")
def result():
    import tf_keras as keras

    from kit.data import load_data

    data = load_data("digits").fit_to((8, 8, 1))
    split = split_validation(data, 0.2)
    keras.utils.set_random_seed(0)
    L = keras.layers
    model = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(8, 3, padding="same", activation="relu", name="conv"),
                              L.MaxPooling2D(2), L.Flatten(), L.Dense(10, name="logits")])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"])
    model.fit(split.train.x_train, split.train.y_train, epochs=15, verbose=0)
    return analyze(model, split.x, split.y, ratios=(0.5,), structured=True, log=lambda *a: None)


def test_kernel_rows(result):
    rows = result.curve("conv", "kernel 1x1")
    assert len(rows) == 1 and rows[0].ratio == pytest.approx(8 / 9)
    assert rows[0].removed == 8 * 8  # eight of the nine taps of each of the 8 filters
    assert rows[0].drop > 1  # a 1x1 kernel cannot see strokes: it must cost accuracy


def test_input_border_rows(result):
    rows = result.curve("input", "input border")
    assert [round(r.ratio, 4) for r in rows] == [round(1 - (8 - 2 * b) ** 2 / 64, 4) for b in (1, 2, 3)]
    # 8x8 -> 6x6 -> pool 3x3: the Dense loses (16 - 9) positions x 8 channels x 10 units
    assert rows[0].removed == (16 - 9) * 8 * 10
    assert rows[0].drop < rows[-1].drop  # cutting most of the image costs more than its edge
    assert not any(is_one_shot(r) for r in rows)
