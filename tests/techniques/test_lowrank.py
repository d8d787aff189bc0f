"""Truncated-SVD factorisation reproduces low-rank layers exactly and converts to LiteRT and TFLite Micro;
weight merging folds duplicate neurons without changing the outputs."""
import numpy as np
import pytest

import kit  # noqa: F401
from kit.convert import check as checks
from kit.convert.converter import ArtifactSpec, convert
from kit.core.errors import KitError, ModelError
from kit.techniques.lowrank import factorize, merge_neurons, sparse_bytes

RANK = 5


@pytest.fixture(scope="module")
def low_rank_mlp():
    """64 -> 48 (ReLU, kernel of rank 5) -> 10; the first kernel is an exact product of 64x5 and 5x48."""
    import tf_keras as keras

    rng = np.random.default_rng(0)
    inp = keras.Input((64,))
    h = keras.layers.Dense(48, activation="relu", name="fc")(inp)
    out = keras.layers.Dense(10, name="logits")(h)
    model = keras.Model(inp, out)
    w = (rng.normal(size=(64, RANK)) @ rng.normal(size=(RANK, 48)) / 8).astype(np.float32)
    model.get_layer("fc").set_weights([w, rng.normal(size=48).astype(np.float32) * 0.1])
    x = rng.random((200, 64)).astype(np.float32)
    return model, x


def test_factorisation_reproduces_a_rank_r_layer(low_rank_mlp):
    model, x = low_rank_mlp
    new, report = factorize(model, energy=1.0 - 1e-9)
    fc = next(c for c in report.layers if c.layer == "fc")
    assert fc.rank == RANK and fc.factorized and fc.energy == pytest.approx(1.0)
    assert new.get_layer("fc_u").kernel.shape == (64, RANK) and new.get_layer("fc").kernel.shape == (RANK, 48)
    logits = next(c for c in report.layers if c.layer == "logits")
    assert not logits.factorized  # full rank 10: factors (10 x 58) are larger than 48 x 10
    ref = model.predict(x, verbose=0)
    assert np.max(np.abs(new.predict(x, verbose=0) - ref)) < 1e-4 * max(1.0, np.abs(ref).max())
    assert report.params_after == new.count_params() < report.params_before
    fixed, _ = factorize(model, rank=RANK, choose="always", skip=["logits"])
    assert np.max(np.abs(fixed.predict(x, verbose=0) - ref)) < 1e-4 * max(1.0, np.abs(ref).max())


@pytest.mark.slow
def test_factorised_model_converts_and_runs_on_litert_and_tflm(low_rank_mlp):
    model, x = low_rank_mlp
    new, _ = factorize(model, rank=RANK)
    ref = new.predict(x, verbose=0)
    blob = convert(new, ArtifactSpec("float32"))
    results = {c.runtime: c for c in checks.check(blob, x, None, ref)}
    for runtime in ("litert", "litert-builtin", "tflm"):
        c = results[runtime]
        assert c.loads, (runtime, c.error)
        assert c.agreement == 1.0 and c.max_abs_error < 1e-3, (runtime, c)
    int8 = convert(new, ArtifactSpec("int8"), x[:100])
    tflm = checks.check(int8, x, None, ref, runtimes=("tflm",))[0]
    assert tflm.loads, tflm.error
    assert tflm.agreement >= 0.9
    original = len(convert(model, ArtifactSpec("float32")))
    assert len(blob) < original


def test_one_by_one_convolution_factorisation():
    import tf_keras as keras

    rng = np.random.default_rng(1)
    inp = keras.Input((8, 8, 32))
    h = keras.layers.Conv2D(32, 1, strides=2, activation="relu", name="pw")(inp)
    out = keras.layers.Conv2D(4, 3, name="head")(h)
    model = keras.Model(inp, out)
    k = (rng.normal(size=(32, 3)) @ rng.normal(size=(3, 32))).astype(np.float32).reshape(1, 1, 32, 32)
    model.get_layer("pw").set_weights([k, np.zeros(32, np.float32)])
    x = rng.random((4, 8, 8, 32)).astype(np.float32)
    new, report = factorize(model, rank=3)
    assert [c.layer for c in report.layers] == ["pw"]  # the 3x3 conv is not a candidate
    assert new.get_layer("pw_u").strides == (2, 2)
    assert new.output_shape == model.output_shape
    assert np.max(np.abs(new.predict(x, verbose=0) - model.predict(x, verbose=0))) < 1e-3


def test_auto_keeps_layers_whose_sparse_form_is_smaller(low_rank_mlp):
    model, _ = low_rank_mlp
    import tf_keras as keras

    sparse = keras.models.clone_model(model)
    sparse.set_weights(model.get_weights())
    w = sparse.get_layer("fc").kernel.numpy()
    w[np.abs(w) < np.quantile(np.abs(w), 0.97)] = 0  # 3% left: sparse encoding beats rank-5 factors
    sparse.get_layer("fc").kernel.assign(w)
    _, report = factorize(sparse, rank=RANK)
    fc = next(c for c in report.layers if c.layer == "fc")
    assert fc.bytes_now == sparse_bytes(int(np.count_nonzero(w)), 48, 64, 4) < fc.bytes_lowrank
    assert not fc.factorized
    assert sparse_bytes(10, 4, 300, 4) == 10 * 4 + 5 * 1 + 10 * 2


def test_weight_merging_folds_a_scaled_duplicate_exactly():
    import tf_keras as keras

    rng = np.random.default_rng(2)
    inp = keras.Input((12,))
    h = keras.layers.Dense(6, activation="relu", name="fc")(inp)
    h = keras.layers.Dropout(0.1)(h)
    out = keras.layers.Dense(3, name="out")(h)
    model = keras.Model(inp, out)
    w, b = rng.normal(size=(12, 6)).astype(np.float32), rng.normal(size=6).astype(np.float32)
    w[:, 4], b[4] = 2.5 * w[:, 1], 2.5 * b[1]  # neuron 4 = 2.5 x neuron 1 under ReLU
    model.get_layer("fc").set_weights([w, b])
    x = rng.normal(size=(50, 12)).astype(np.float32)
    new, report = merge_neurons(model, "fc", 1 / 6)
    merge = report.merges[0]
    assert {merge["removed"], merge["into"]} == {1, 4}  # either folds into the other at zero error
    assert merge["scale"] == pytest.approx(2.5 if merge["removed"] == 4 else 0.4, rel=1e-5)
    assert new.get_layer("fc").units == 5 and new.get_layer("out").kernel.shape == (5, 3)
    assert np.max(np.abs(new.predict(x, verbose=0) - model.predict(x, verbose=0))) < 1e-4


def test_bad_requests_are_clear_errors(low_rank_mlp):
    model, _ = low_rank_mlp
    with pytest.raises(KitError, match="exactly one"):
        factorize(model, rank=2, energy=0.9)
    with pytest.raises(ModelError, match="no layer 'fc9'"):
        merge_neurons(model, "fc9", 0.5)
    with pytest.raises(ModelError, match="ReLU or linear"):
        import tf_keras as keras

        inp = keras.Input((4,))
        m = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Dense(3, activation="tanh", name="t")(inp)))
        merge_neurons(m, "t", 0.3)
