"""Latency/energy predictions scale a published measurement by emulated instructions, and say so."""
from __future__ import annotations

import pytest

from firmware_tools.predict import REFERENCES, calibrate, predict, reference_for


def test_the_calibration_point_predicts_itself_and_scales_linearly():
    ref = REFERENCES["cortex-m4f-120"]
    cal = calibrate(ref, 7_700_000, "mps2-an386, cmsis_nn kernels, -O2")
    same = predict(7_700_000, cal)
    assert same.latency_ms == pytest.approx(181.9) and same.energy_uj == pytest.approx(7373.7)
    double = predict(15_400_000, cal)
    assert double.latency_ms == pytest.approx(2 * 181.9) and double.estimate
    assert "ESTIMATE" in double.method and "kws_ref_model.tflite = 181.9 ms" in double.method


def test_boards_without_a_published_point_get_none_and_zero_is_refused():
    assert reference_for("mps2-an386").board == "NUCLEO-L4R5ZI"
    assert reference_for("mps3-an547") is None
    with pytest.raises(ValueError):
        calibrate(REFERENCES["cortex-m4f-120"], 0, "x")
