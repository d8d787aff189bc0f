"""One trained LeNet-300-100 on scikit-learn digits, shared by the sensitivity, budget and latency tests."""
from __future__ import annotations

import functools

import kit  # noqa: F401  (environment before TensorFlow)

#: held-out share of the digits training data (288 samples: one sample is 0.35 points)
VAL_FRACTION = 0.2


@functools.cache
def digits_lenet():
    """(data, validation split, baseline trained 15 epochs on the training data without the validation split)."""
    from kit.pipeline.data import load_data
    from kit.models import build, train_baseline
    from kit.search.sensitivity import split_validation

    data = load_data("digits")
    split = split_validation(data, VAL_FRACTION)
    model = build("lenet-300-100", input_shape=(64,))
    train_baseline(model, split.train, epochs=15)
    return data, split, model
