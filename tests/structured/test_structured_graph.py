"""Graph surgery on small synthetic models: removing channels that carry exact zeros changes nothing."""
from __future__ import annotations

import numpy as np
import pytest

import kit  # noqa: F401
from kit.core.errors import KitError, ModelError
from kit.techniques.structured import build_graph, prune_channels

RNG = np.random.default_rng(0)


def _randomize(model):
    """Random weights everywhere, positive BN variances, so nothing is zero by accident."""
    for layer in model.layers:
        ws = []
        for v, w in zip(layer.weights, layer.get_weights()):
            if "moving_variance" in v.name:
                ws.append(RNG.uniform(0.5, 2.0, w.shape).astype(np.float32))
            else:
                fan_in = int(np.prod(w.shape[:-1])) if w.ndim > 1 else 4
                ws.append(RNG.normal(0, 1.0 / np.sqrt(fan_in), w.shape).astype(np.float32))
        layer.set_weights(ws)


def _zero_filters(layer, idx):
    """A Conv or Dense layer's output channels `idx` become exactly 0: zero kernel columns and bias."""
    w = layer.get_weights()
    w[0][..., idx] = 0
    if layer.use_bias:
        w[1][idx] = 0
    layer.set_weights(w)


def _zero_bn(layer, idx):
    """BN maps a 0 input to 0 when beta and the moving mean are 0 for that channel."""
    gamma, beta, mean, var = layer.get_weights()
    beta[idx] = 0
    mean[idx] = 0
    layer.set_weights([gamma, beta, mean, var])


@pytest.fixture(scope="module")
def zero_model():
    """Residual Add, depthwise (multiplier 2), separable conv, Concatenate, padding, Flatten -> Dense, Dropout."""
    import tf_keras as keras

    L = keras.layers
    inp = keras.Input((12, 12, 3))
    c1 = L.Conv2D(8, 3, padding="same", name="c1")(inp)
    r1 = L.ReLU(name="r1")(L.BatchNormalization(name="b1")(c1))
    c2 = L.Conv2D(8, 3, padding="same", name="c2")(r1)
    a = L.Add(name="add")([r1, L.BatchNormalization(name="b2")(c2)])
    r2 = L.Activation("relu", name="r2")(a)
    d = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw")(r2)
    rd = L.ReLU(name="rd")(L.BatchNormalization(name="bd")(d))
    s = L.SeparableConv2D(6, 3, padding="same", name="sep")(rd)
    c3 = L.Conv2D(4, 1, name="c3")(r2)
    cat = L.Concatenate(name="cat")([s, c3])
    z = L.ZeroPadding2D(1, name="pad")(L.MaxPooling2D(2, name="pool")(cat))
    c4 = L.Conv2D(5, 3, activation="relu", name="c4")(z)
    h = L.Dense(12, activation="relu", name="h")(L.Flatten(name="flat")(c4))
    out = L.Dense(3, name="out")(L.Dropout(0.1, name="drop")(h))
    model = keras.Model(inp, out)
    _randomize(model)
    dead = {"c1": [1, 5], "sep": [2], "c3": [0], "c4": [1, 3], "h": [4, 7, 9]}
    for name in ("c1", "c2"):
        _zero_filters(model.get_layer(name), dead["c1"])
    _zero_bn(model.get_layer("b1"), dead["c1"])
    _zero_bn(model.get_layer("b2"), dead["c1"])
    dw_rows = [2 * c + j for c in dead["c1"] for j in (0, 1)]
    dw = model.get_layer("dw").get_weights()
    dw[1][dw_rows] = 0
    model.get_layer("dw").set_weights(dw)
    _zero_bn(model.get_layer("bd"), dw_rows)
    sep = model.get_layer("sep").get_weights()
    sep[1][..., dead["sep"]] = 0
    sep[2][dead["sep"]] = 0
    model.get_layer("sep").set_weights(sep)
    for name in ("c3", "c4", "h"):
        _zero_filters(model.get_layer(name), dead[name])
    return model, dead


def test_removing_zero_channels_keeps_outputs(zero_model):
    model, dead = zero_model
    ratios = {"c1": 0.25, "sep": 0.17, "c3": 0.25, "c4": 0.4, "h": 0.25}
    result = prune_channels(model, ratio=0.0, per_layer=ratios, criterion="l1")
    for name, removed in dead.items():
        n = model.get_layer(name).get_weights()[-1].shape[0]
        assert result.kept[name] == [i for i in range(n) if i not in removed], name
    assert result.kept["c2"] == result.kept["c1"]  # coupled through the residual Add
    assert result.kept_inputs["dw"] == [0, 2, 3, 4, 6, 7]
    assert result.kept_inputs["sep"] == [0, 1, 4, 5, 6, 7, 8, 9, 12, 13, 14, 15]  # multiplier 2: c -> 2c, 2c+1
    assert result.kept_inputs["c4"] == [0, 1, 3, 4, 5, 7, 8, 9]  # Concatenate offsets: sep (6) then c3 (4)
    flat_rows = [p * 5 + c for p in range(36) for c in range(5) if c not in dead["c4"]]
    assert result.kept_inputs["h"] == flat_rows  # Flatten rows are (h, w, c): keep every position's channels
    new = result.model
    assert new.get_layer("dw").output_shape[-1] == 12
    assert new.get_layer("h").get_weights()[0].shape == (36 * 3, 9)
    assert new.get_layer("out").get_weights()[0].shape == (9, 3)
    x = RNG.normal(size=(16, 12, 12, 3)).astype(np.float32)
    before, after = model.predict(x, verbose=0), new.predict(x, verbose=0)
    assert np.abs(before).max() > 0.1
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5)
    assert result.report.cost_after.macs < result.report.cost_before.macs
    assert result.report.cost_after.params == new.count_params()


def test_removing_live_channels_changes_outputs(zero_model):
    """The identity above is not vacuous: removing channels that carry signal does change the output."""
    model, dead = zero_model
    result = prune_channels(model, ratio=0.0, per_layer={"h": 0.5}, criterion="l1")
    assert set(range(12)) - set(result.kept["h"]) > set(dead["h"])
    x = RNG.normal(size=(8, 12, 12, 3)).astype(np.float32)
    assert not np.allclose(model.predict(x, verbose=0), result.model.predict(x, verbose=0), atol=1e-5)


def test_sequential_lenet_flatten_dense():
    import tf_keras as keras

    L = keras.layers
    model = keras.Sequential([
        keras.Input((28, 28, 1)), L.Conv2D(6, 5, padding="same", activation="relu", name="conv1"),
        L.MaxPooling2D(2), L.Conv2D(16, 5, activation="relu", name="conv2"), L.MaxPooling2D(2), L.Flatten(),
        L.Dense(120, activation="relu", name="fc1"), L.Dense(84, activation="relu", name="fc2"),
        L.Dense(10, name="logits")])
    _randomize(model)
    _zero_filters(model.get_layer("conv2"), [0, 3, 4, 9])
    _zero_filters(model.get_layer("fc1"), list(range(0, 120, 3)))
    result = prune_channels(model, 0.0, per_layer={"conv2": 0.25, "fc1": 1 / 3}, criterion="l1")
    assert isinstance(result.model, keras.Sequential)
    assert result.model.get_layer("fc1").get_weights()[0].shape == (5 * 5 * 12, 80)
    assert result.kept["logits"] == list(range(10))
    x = RNG.random((8, 28, 28, 1), dtype=np.float32)
    np.testing.assert_allclose(result.model.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5,
                               atol=1e-5)


def test_output_units_never_pruned_and_every_layer_keeps_one():
    import tf_keras as keras

    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(4, name="a"), keras.layers.Dense(3, name="b")])
    result = prune_channels(model, ratio=0.99, scope="layer")
    assert len(result.kept["b"]) == 3
    assert len(result.kept["a"]) == 1
    with pytest.raises(KitError, match="ratio"):
        prune_channels(model, ratio=1.0)


def test_squeeze_excite_multiply_couples_gate_and_features():
    import tf_keras as keras

    L = keras.layers
    inp = keras.Input((8, 8, 3))
    f = L.Conv2D(16, 3, padding="same", activation="relu", name="feat")(inp)
    g = L.GlobalAveragePooling2D()(f)
    g = L.Dense(4, activation="relu", name="squeeze")(g)
    g = L.Dense(16, activation="sigmoid", name="excite")(g)
    y = L.Multiply()([f, L.Reshape((1, 1, 16), name="gate_shape")(g)])
    out = L.Dense(2, name="out")(L.GlobalMaxPooling2D()(y))
    model = keras.Model(inp, out)
    graph = build_graph(model)
    assert graph.group_of("feat").layers == ("feat", "excite")
    result = prune_channels(model, 0.5, scope="layer")
    assert result.kept["feat"] == result.kept["excite"] and len(result.kept["feat"]) == 8
    assert result.model.get_layer("gate_shape").output_shape == (None, 1, 1, 8)
    x = RNG.random((2, 8, 8, 3), dtype=np.float32)
    assert result.model.predict(x, verbose=0).shape == (2, 2)


def test_unknown_layer_is_a_barrier_with_a_note():
    import tf_keras as keras

    L = keras.layers
    inp = keras.Input((8, 8, 3))
    a = L.Conv2D(8, 3, name="a")(inp)
    b = L.Lambda(lambda t: t * 2.0, name="double")(a)
    c = L.Conv2D(8, 3, name="c")(b)
    out = L.Dense(2, name="out")(L.GlobalAveragePooling2D()(c))
    model = keras.Model(inp, out)
    result = prune_channels(model, 0.5, scope="layer")
    assert len(result.kept["a"]) == 8  # feeds the Lambda: intact
    assert len(result.kept["c"]) == 4
    assert any("double" in n and "Lambda" in n for n in result.report.notes)
    x = RNG.random((2, 8, 8, 3), dtype=np.float32)
    assert result.model.predict(x, verbose=0).shape == (2, 2)


def test_skip_and_per_layer_errors():
    import tf_keras as keras

    L = keras.layers
    model = keras.Sequential([keras.Input((6, 6, 2)), L.Conv2D(8, 3, name="a"), L.BatchNormalization(name="bn"),
                              L.Conv2D(8, 3, name="b"), L.Flatten(), L.Dense(2, name="out")])
    result = prune_channels(model, 0.5, scope="layer", skip=["a"])
    assert len(result.kept["a"]) == 8 and len(result.kept["b"]) == 4
    with pytest.raises(ModelError, match="only Conv, Dense"):
        prune_channels(model, 0.5, skip=["bn"])
    with pytest.raises(KitError, match="not a layer"):
        prune_channels(model, 0.5, per_layer={"nope": 0.5})
    with pytest.raises(KitError, match="no output channels of its own"):
        prune_channels(model, 0.5, per_layer={"bn": 0.5})


def test_subclassed_model_is_refused_with_the_way_out():
    import tf_keras as keras

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = keras.layers.Dense(2)

        def call(self, x):
            return self.d(x)

    net = Net()
    net(np.zeros((1, 3), np.float32))
    with pytest.raises(ModelError, match="subclassed") as e:
        prune_channels(net, 0.5)
    assert "Functional API" in e.value.hint


def test_tfmot_wrappers_are_refused():
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dense(2)])
    wrapped = tfmot.sparsity.keras.prune_low_magnitude(model)
    with pytest.raises(ModelError, match="TF-MOT wrapper"):
        prune_channels(wrapped, 0.5)
