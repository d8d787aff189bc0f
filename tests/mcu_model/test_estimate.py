"""MCU latency/energy estimates: work counting, the fitted constants and the error on all four
MLPerf Tiny v0.5 reference models, always labelled as estimates."""
from __future__ import annotations

import pytest
from tests.support.shared import shared_file

from firmware_tools.estimate import (count_work, estimate, fit_constants, list_mcu_profiles, load_mcu_profile,
                                     reference_check)
from kit.core.errors import KitError
from kit.core.tflite_file import read_tflite

REFERENCE = "reference/mlperf_tiny/reference_results_v0.5_nucleo_l4r5zi.csv"
MODELS = "models/mlperf-tiny"


def _shared():
    return shared_file(REFERENCE), shared_file(MODELS)


def test_work_is_counted_from_shapes():
    info = read_tflite(shared_file(f"{MODELS}/ad01_int8.tflite"))
    work = count_work(info)
    dense = [(info.tensor(op.inputs[1]).shape, w) for op, w in zip(info.ops, work) if op.op == "FULLY_CONNECTED"]
    assert len(dense) == 10
    for (out_features, in_features), w in dense:
        assert w.macs == out_features * in_features and w.outputs == out_features and w.taps == 0
    conv = next((op, w) for op, w in zip(read_tflite(shared_file(f"{MODELS}/kws_ref_model.tflite")).ops,
                                        count_work(read_tflite(shared_file(f"{MODELS}/kws_ref_model.tflite"))))
                if op.op == "CONV_2D")
    assert conv[1].macs == 25 * 5 * 64 * 10 * 4 * 1  # first DS-CNN conv: 25x5x64 outputs, 10x4x1 filter


def test_error_is_reported_on_all_four_and_names_the_fitted_models():
    csv_path, models = _shared()
    profile = load_mcu_profile("cortex-m4f-120")
    fitted = set(profile.fit["models"])
    assert len(fitted) <= 2
    checks = reference_check(profile, csv_path, models)
    assert {c.task for c in checks} == {"kws01", "vww01", "ic01", "ad01"}
    assert {c.task for c in checks if c.fitted} == fitted
    for c in checks:
        if c.fitted:  # the stored constants reproduce the fit
            assert abs(c.error_pct) < 0.5
        else:  # held out: the goal is +-30 %
            assert abs(c.error_pct) < 30, f"{c.task}: {c.error_pct:.1f} %"
    assert {c.task for c in checks if not c.energy_valid} == {"ic01", "ad01"}  # flagged in the reference


def test_stored_constants_are_the_documented_fit():
    csv_path, models = _shared()
    profile = load_mcu_profile("cortex-m4f-120")
    params = tuple(profile.fit["params"])
    solved = fit_constants(profile, csv_path, models, on=tuple(profile.fit["models"]), params=params)
    for k in params:
        assert solved[k] == pytest.approx(profile.cycles[k], rel=1e-3)


def test_estimates_are_labelled_and_consistent():
    path = shared_file(f"{MODELS}/vww_96_int8.tflite")
    for name in list_mcu_profiles():
        p = load_mcu_profile(name)
        e = estimate(path, p)
        assert e.estimate is True
        assert e.latency_us == pytest.approx(e.cycles / p.clock_mhz)
        assert e.energy_uj == pytest.approx(p.active_power_mw * e.latency_us / 1000)
        result = e.to_profile_result(path, p)
        assert result.estimate is True and result.latency.median_us == pytest.approx(e.latency_us)
        assert "estimate" in result.energy_method and "estimate" in result.notes[0]
    # a faster clock and a better core: the M7 profile is faster than the M4F one
    assert estimate(path, "cortex-m7-216").latency_us < estimate(path, "cortex-m4f-120").latency_us


def test_bad_profiles_are_refused(tmp_path):
    with pytest.raises(KitError, match="no MCU profile"):
        load_mcu_profile("cortex-m99")
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\ncore = "y"\nclock_mhz = 1\nactive_power_mw = 1\nturbo = true\n')
    with pytest.raises(KitError, match="unknown key"):
        load_mcu_profile(bad)
    partial = tmp_path / "partial.toml"
    partial.write_text('name = "x"\ncore = "y"\nclock_mhz = 1\nactive_power_mw = 1\n[cycles]\nop = 1\n')
    with pytest.raises(KitError, match="lacks cycle constant"):
        load_mcu_profile(partial)
