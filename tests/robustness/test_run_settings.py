"""Run settings that cannot describe a run are refused before any device is touched."""
from __future__ import annotations

import math

import pytest

from kit.cli import main
from kit.core.errors import KitError
from kit.core.measurement import RunSettings


@pytest.mark.parametrize("timeout", [0, -1, math.nan, math.inf, "600"])
def test_a_timeout_that_is_no_duration_is_refused(timeout):
    with pytest.raises(KitError, match="timeout must be a number of seconds > 0"):
        RunSettings(timeout_s=timeout)


@pytest.mark.parametrize("value", ["nan", "0"])
def test_profile_refuses_the_timeout_before_running(tmp_path, capfd, tiny_models, value):
    model = tmp_path / "m.tflite"
    model.write_bytes(tiny_models.float32)
    assert main(["profile", str(model), "--runs", "1", "--timeout", value]) == 2
    err = capfd.readouterr().err
    assert "timeout must be a number of seconds > 0" in err and "Traceback" not in err, err
    assert "took longer" not in err


def test_profile_refuses_an_input_file_that_does_not_fit_before_running(tmp_path, capfd, tiny_models):
    import numpy as np

    model = tmp_path / "m.tflite"
    model.write_bytes(tiny_models.float32)
    garbage, wrong = tmp_path / "garbage.npy", tmp_path / "wrong.npy"
    garbage.write_text("not numpy")
    np.save(wrong, np.zeros((3, 7), np.float32))
    for path, words in ((garbage, "is not a readable .npy file"),
                        (wrong, "holds 21 values (shape [3, 7]), but the input of m.tflite takes 64")):
        assert main(["profile", str(model), "--runs", "1", "--input", str(path)]) == 2
        err = capfd.readouterr().err
        assert words in err and "printed no result" not in err, err
    good = tmp_path / "good.npy"
    np.save(good, np.zeros((1, 8, 8, 1), np.float32))
    assert main(["profile", str(model), "--runs", "1", "--warmup", "0", "--input", str(good)]) == 0
