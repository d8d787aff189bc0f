"""[structured] inputs: the first Dense loses the input features that carry least, through a GATHER.

Exact when only features that are zero in every sample go; the rebuilt model saves, loads, converts and runs
on LiteRT and TFLM; models it cannot apply to are refused with what to use instead."""
from __future__ import annotations

import numpy as np
import pytest

from kit.core.errors import KitError
from tests.support.recipes import assert_recipe_error


def test_dropping_only_the_unused_inputs_is_exact(digits, digits_lenet):
    from kit.techniques.structured.features import feature_scores, select_inputs

    x = digits.x_train[:512]
    scores, unused = feature_scores(digits_lenet, x)
    assert unused > 0 and np.sum(scores == 0) >= unused  # digits has pixels blank in every image
    model, report = select_inputs(digits_lenet, unused / len(scores), x)
    assert (report.before, report.after, report.unused) == (64, 64 - unused, unused)
    assert report.removed_share == 0.0 and report.scored_on == 512
    assert model.get_layer("fc1").get_weights()[0].shape == (64 - unused, 300)
    assert model.input_shape == digits_lenet.input_shape  # callers still feed every pixel
    dropped = sorted(set(range(64)) - set(model.get_layer("fc1_inputs").indices))
    probe = np.concatenate([digits.x_test, x])
    probe = probe[np.all(probe[:, dropped] == 0, axis=1)]  # every sample whose dropped pixels are blank
    assert len(probe) > 500
    assert np.abs(model.predict(probe, verbose=0) - digits_lenet.predict(probe, verbose=0)).max() < 1e-5


def test_a_cut_model_saves_loads_converts_and_runs_on_every_runtime(digits, digits_lenet, tmp_path):
    from kit.convert import check as checks
    from kit.convert.converter import ArtifactSpec, convert
    from kit.core.tflite_file import read_tflite
    from kit.models import load_model
    from kit.steps.structured import StructuredStep, surgery

    model, report = surgery(digits_lenet, StructuredStep(layers={"fc1": 0.5}, inputs=0.4), digits.x_train[:256],
                            digits.y_train[:256], log=lambda _: None)
    assert report["inputs"]["after"] == 38 and model.get_layer("fc1").get_weights()[0].shape == (38, 150)
    model.save(tmp_path / "cut.h5")
    back = load_model(tmp_path / "cut.h5")
    x = digits.x_test
    assert np.array_equal(back.predict(x, verbose=0), model.predict(x, verbose=0))
    data = convert(back, ArtifactSpec("int8"), digits.x_calib)
    assert "GATHER" in [op.op for op in read_tflite(data).ops]
    ref = back.predict(x, verbose=0)
    for c in checks.check(data, x, digits.y_test, ref, ("litert", "litert-builtin", "tflm")):
        assert c.loads and c.agreement >= 0.97, (c.runtime, c.error, c.agreement)


def test_models_the_cut_does_not_apply_to_are_refused_with_what_to_use(tmp_path):
    import tf_keras as keras

    from kit.models import build
    from kit.techniques.structured.features import select_inputs

    with pytest.raises(KitError) as e:
        select_inputs(build("lenet5"), 0.5)
    assert "Conv2D" in e.value.message and "input_border" in e.value.hint
    inp = keras.Input((8,))
    branch = keras.Model(inp, keras.layers.Add()([keras.layers.Dense(4)(inp), keras.layers.Dense(4)(inp)]))
    with pytest.raises(KitError, match="chain"):
        select_inputs(branch, 0.5)
    assert_recipe_error('name = "r"\n[structured]\ninputs = 1.5\n', 3, ["inputs", "0 <= x < 1"])
