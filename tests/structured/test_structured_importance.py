"""Each importance criterion removes the channels it should, and the ranking scopes behave as documented."""
from __future__ import annotations

import numpy as np
import pytest
from tests.support.shared import shared_file

import kit  # noqa: F401
from kit.core.errors import DataError, KitError
from kit.techniques.structured import CRITERIA, prune_channels

RNG = np.random.default_rng(1)


def _mlp(hidden: int = 4):
    import tf_keras as keras

    return keras.Sequential([keras.Input((9,)), keras.layers.Dense(hidden, activation="relu", name="a"),
                             keras.layers.Dense(3, name="out")])


def _removed(result, name: str, n: int) -> set[int]:
    return set(range(n)) - set(result.kept[name])


def test_l1_and_l2_disagree_where_they_should():
    model = _mlp()
    k = np.zeros((9, 4), np.float32)
    k[0, 0] = 3.0  # one large weight: L1 3, L2 3
    k[:, 1] = 0.5  # many small weights: L1 4.5, L2 1.5
    k[:, 2] = k[:, 3] = 2.0
    model.get_layer("a").set_weights([k, np.zeros(4, np.float32)])
    assert _removed(prune_channels(model, 0, "l1", per_layer={"a": 0.25}), "a", 4) == {0}
    assert _removed(prune_channels(model, 0, "l2", per_layer={"a": 0.25}), "a", 4) == {1}


def test_bn_scale_follows_gamma_not_weights():
    import tf_keras as keras

    L = keras.layers
    model = keras.Sequential([keras.Input((6, 6, 2)), L.Conv2D(8, 3, name="c"), L.BatchNormalization(name="bn"),
                              L.ReLU(), L.GlobalAveragePooling2D(), L.Dense(2, name="out")])
    kernel = RNG.normal(0, 0.1, (3, 3, 2, 8)).astype(np.float32)
    kernel[..., [2, 5]] *= 50  # largest filters by norm ...
    model.get_layer("c").set_weights([kernel, np.zeros(8, np.float32)])
    gamma = np.ones(8, np.float32)
    gamma[[2, 5]] = 0.01  # ... but almost switched off by batch norm
    bn = model.get_layer("bn")
    bn.set_weights([gamma, *bn.get_weights()[1:]])
    assert _removed(prune_channels(model, 0.25, "bn_scale", scope="layer"), "c", 8) == {2, 5}
    assert _removed(prune_channels(model, 0.25, "l1", scope="layer"), "c", 8).isdisjoint({2, 5})


def test_bn_scale_without_batch_norm_falls_back_to_l1_with_a_note():
    result = prune_channels(_mlp(), 0.5, "bn_scale")
    assert any("no bn_scale signal" in n and "L1" in n for n in result.report.notes)


def test_taylor_sees_a_unit_nothing_listens_to():
    model = _mlp()
    x = RNG.normal(size=(64, 9)).astype(np.float32)
    k1 = RNG.normal(0, 0.3, (9, 4)).astype(np.float32)
    k1[:, 3] *= 10  # largest incoming weights ...
    k2 = RNG.normal(0, 0.5, (4, 3)).astype(np.float32)
    k2[3] = 0  # ... but its output is ignored: zero gradient
    model.get_layer("a").set_weights([k1, np.full(4, 0.1, np.float32)])
    model.get_layer("out").set_weights([k2, np.zeros(3, np.float32)])
    assert _removed(prune_channels(model, 0, "taylor", per_layer={"a": 0.25}, calib_data=x), "a", 4) == {3}
    y = RNG.integers(0, 3, 64)
    assert _removed(prune_channels(model, 0, "taylor", per_layer={"a": 0.25}, calib_data=x, calib_labels=y),
                    "a", 4) == {3}
    assert 3 not in _removed(prune_channels(model, 0, "l1", per_layer={"a": 0.25}), "a", 4)


def test_apoz_removes_a_dead_relu():
    model = _mlp()
    x = RNG.normal(size=(64, 9)).astype(np.float32)
    k = RNG.normal(0, 0.3, (9, 4)).astype(np.float32)
    k[:, 1] *= 10
    bias = np.zeros(4, np.float32)
    bias[1] = -100.0  # always negative before the ReLU: 100 % zeros
    model.get_layer("a").set_weights([k, bias])
    assert _removed(prune_channels(model, 0, "apoz", per_layer={"a": 0.25}, calib_data=x), "a", 4) == {1}


@pytest.mark.parametrize("criterion", ["taylor", "apoz"])
def test_data_criteria_need_data(criterion):
    with pytest.raises(DataError, match="calibration data"):
        prune_channels(_mlp(), 0.5, criterion)


def test_bad_arguments():
    with pytest.raises(KitError, match="unknown importance criterion"):
        prune_channels(_mlp(), 0.5, "random")
    with pytest.raises(KitError, match="scope"):
        prune_channels(_mlp(), 0.5, scope="everything")
    with pytest.raises(KitError, match="round_to"):
        prune_channels(_mlp(), 0.5, round_to=0)


def test_global_ranking_prunes_the_weak_layer_first():
    import tf_keras as keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="a"), keras.layers.Dense(8, name="b"),
                              keras.layers.Dense(2, name="out")])
    ka = np.ones((4, 8), np.float32) * RNG.uniform(0.9, 1.1, 8).astype(np.float32)
    kb = np.ones((8, 8), np.float32)
    kb[:, [1, 3, 5, 7]] = 0.01
    model.get_layer("a").set_weights([ka, np.zeros(8, np.float32)])
    model.get_layer("b").set_weights([kb, np.zeros(8, np.float32)])
    glob = prune_channels(model, 0.25, "l1", scope="global")
    assert _removed(glob, "b", 8) == {1, 3, 5, 7} and len(glob.kept["a"]) == 8
    local = prune_channels(model, 0.25, "l1", scope="layer")
    assert len(local.kept["a"]) == 6 and len(local.kept["b"]) == 6


def test_round_to_with_global_ranking_on_resnet8():
    import tf_keras as keras

    model = keras.models.load_model(shared_file("models/mlperf-tiny/pretrainedResnet.h5"), compile=False)
    result = prune_channels(model, 0.5, "l1", round_to=8)
    sizes = {name: len(kept) for name, kept in result.kept.items() if name != "dense"}
    assert all(n % 8 == 0 and n >= 8 for n in sizes.values()), sizes
    assert sum(sizes.values()) < sum(g.before for g in result.report.groups if g.ranking != "fixed")


@pytest.mark.slow
def test_every_criterion_runs_on_dscnn():
    import tf_keras as keras

    model = keras.models.load_model(shared_file("models/mlperf-tiny/kws_ref_model"), compile=False)
    x = RNG.normal(size=(32, 49, 10, 1)).astype(np.float32)
    kept = {}
    for criterion in CRITERIA:
        result = prune_channels(model, 0.5, criterion, calib_data=x, round_to=4)
        assert result.model.predict(x[:2], verbose=0).shape == (2, 12)
        assert all(len(k) % 4 == 0 for name, k in result.kept.items() if name != "dense")
        kept[criterion] = result.kept
    assert len({str(sorted(k.items())) for k in kept.values()}) >= 4  # the criteria really rank differently
