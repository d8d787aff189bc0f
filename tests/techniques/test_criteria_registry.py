"""An importance criterion is one class plus one registry line: a toy one, registered for one test, is used by
structured channel pruning, weight scoring and recipe validation with no other file touched."""
from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest

import kit  # noqa: F401
from kit.core.errors import DataError, KitError
from kit.techniques.criteria import (CHANNEL_CRITERIA, CRITERIA, WEIGHT_CRITERIA, ChannelCriterion, WeightCriterion,
                                     criterion_class)


class LastChannelsFirst(ChannelCriterion):
    """Toy: a source layer's channel i scores i + 1, so the first channels go first, whatever the weights."""

    def __call__(self, graph, x, y):
        return [(np.arange(1.0, len(atoms) + 1.0), atoms) for atoms in graph.sources.values()]


class NeedsCalibration(LastChannelsFirst):
    needs_data = True


class FirstRowsKept(WeightCriterion):
    """Toy: every weight scores minus its flat position, so the last weights of each kernel go first."""

    def __call__(self, model, kernels, x, y):
        return {k: -np.arange(v.shape.num_elements(), dtype=np.float64).reshape(v.shape) for k, v in kernels.items()}


class CountsBatches(WeightCriterion):
    """Toy that needs data and labels: records what it was given."""

    needs_data = True
    uses_labels = True
    seen: ClassVar[dict] = {}

    def __call__(self, model, kernels, x, y):
        CountsBatches.seen = {"x": len(x), "y": None if y is None else len(y), "batch_size": self.batch_size}
        return {k: np.abs(v.numpy()) for k, v in kernels.items()}


@pytest.fixture
def toy_registry(monkeypatch):
    """The toy criteria in the registry for one test; monkeypatch removes them afterwards."""
    monkeypatch.setitem(CHANNEL_CRITERIA, "toy", LastChannelsFirst)
    monkeypatch.setitem(CHANNEL_CRITERIA, "toy_data", NeedsCalibration)
    monkeypatch.setitem(WEIGHT_CRITERIA, "toy", FirstRowsKept)
    monkeypatch.setitem(WEIGHT_CRITERIA, "toy_data", CountsBatches)


def _mlp():
    import tf_keras as keras

    model = keras.Sequential([keras.Input((9,)), keras.layers.Dense(4, activation="relu", name="a"),
                              keras.layers.Dense(3, name="out")])
    k = np.ones((9, 4), np.float32)
    k[:, 0] = 5.0  # by L1, channel 0 is the one to keep
    model.get_layer("a").set_weights([k, np.zeros(4, np.float32)])
    return model


def test_builtin_registry_and_contract():
    assert list(WEIGHT_CRITERIA) == ["magnitude", "gradient", "taylor", "fisher"]
    assert list(CHANNEL_CRITERIA) == ["l1", "l2", "bn_scale", "taylor", "apoz"]
    for granularity, table in CRITERIA.items():
        for cls in table.values():
            assert cls.granularity == granularity
    assert [n for n, c in WEIGHT_CRITERIA.items() if c.needs_data] == ["gradient", "taylor", "fisher"]
    assert [n for n, c in CHANNEL_CRITERIA.items() if c.needs_data] == ["taylor", "apoz"]
    assert WEIGHT_CRITERIA["taylor"] is not CHANNEL_CRITERIA["taylor"]
    with pytest.raises(TypeError):
        ChannelCriterion()  # abstract: a criterion must define its call
    with pytest.raises(KitError, match="unknown importance criterion 'toy'"):
        criterion_class("channel", "toy")


def test_toy_channel_criterion_drives_structured_pruning(toy_registry):
    from kit.techniques.structured import CRITERIA as STRUCTURED_CRITERIA
    from kit.techniques.structured import prune_channels

    assert "toy" in STRUCTURED_CRITERIA
    result = prune_channels(_mlp(), 0, "toy", per_layer={"a": 0.5})
    assert result.kept["a"] == [2, 3] and result.report.criterion == "toy"
    assert 0 in prune_channels(_mlp(), 0, "l1", per_layer={"a": 0.5}).kept["a"]  # the ranking really came from toy
    with pytest.raises(DataError, match="calibration data"):
        prune_channels(_mlp(), 0.5, "toy_data")
    x = np.zeros((8, 9), np.float32)
    assert prune_channels(_mlp(), 0, "toy_data", per_layer={"a": 0.5}, calib_data=x).kept["a"] == [2, 3]


def test_toy_criteria_are_accepted_by_recipes(toy_registry):
    from kit.core.errors import RecipeError
    from kit.recipe import parse_recipe

    assert parse_recipe('[structured]\nratio = 0.5\ncriterion = "toy"\n', "r.toml").structured.criterion == "toy"
    with pytest.raises(RecipeError, match="structured.criterion"):
        parse_recipe('[structured]\nratio = 0.5\ncriterion = "toy2"\n', "r.toml")


def test_toy_weight_criterion_drives_scoring_and_masks(toy_registry):
    from kit.techniques.importance import scores, select_sparsity
    from kit.techniques.masking import prunable_kernels

    model = _mlp()
    kernels = prunable_kernels(model)
    s = scores(model, kernels, "toy")
    assert s["a/kernel"].shape == (9, 4) and s["a/kernel"][0, 0] == 0 and s["a/kernel"][-1, -1] == -35
    masks = select_sparsity(s, {k: 0.25 for k in s}, "layer").masks
    assert masks["a/kernel"].reshape(-1)[:27].all() and not masks["a/kernel"].reshape(-1)[27:].any()


def test_weight_criterion_gets_what_it_declares(toy_registry):
    from kit.techniques.importance import scores
    from kit.techniques.masking import prunable_kernels

    model = _mlp()
    kernels = prunable_kernels(model)
    with pytest.raises(DataError, match="needs input data"):
        scores(model, kernels, "toy_data")
    x = np.random.default_rng(0).normal(size=(20, 9)).astype(np.float32)
    scores(model, kernels, "toy_data", x, samples=12, batch_size=4)
    assert CountsBatches.seen == {"x": 12, "y": 12, "batch_size": 4}  # labels from the model's own answers


def test_registry_is_restored_after_a_test():
    assert "toy" not in CHANNEL_CRITERIA and "toy" not in WEIGHT_CRITERIA


def test_sensitivity_refuses_an_unknown_criterion_before_any_row():
    from kit.search.sensitivity import analyze

    rows = []
    with pytest.raises(KitError, match="unknown importance criterion 'nope'"):
        analyze(_mlp(), np.zeros((4, 9), np.float32), np.zeros(4, np.int64), ratios=[0.5], structured=True,
                criterion="nope", log=rows.append)
    assert rows == []
