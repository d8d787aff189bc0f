"""The sensitivity, budget and latency tests share one LeNet-300-100 trained without the validation split."""
from __future__ import annotations

import pytest

from tests.support.models import HeldOutLenet, held_out_digits_lenet


@pytest.fixture(scope="session")
def held_out_lenet() -> HeldOutLenet:
    """(data, validation split, model): the analyses read the model and leave it untouched."""
    return held_out_digits_lenet()
