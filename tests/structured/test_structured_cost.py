"""MAC and parameter counts: hand-computed on a small model, published figures on MLPerf Tiny."""
from __future__ import annotations

import pytest
from tests.support.shared import shared_file

import kit  # noqa: F401
from kit.techniques.structured import model_cost
from kit.techniques.structured.cost import cost_table


def test_hand_computed_macs():
    import tf_keras as keras

    L = keras.layers
    model = keras.Sequential([
        keras.Input((8, 8, 2)), L.Conv2D(4, 3, padding="same", name="conv"),
        L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw"), L.BatchNormalization(name="bn"),
        L.SeparableConv2D(6, 3, padding="same", name="sep"), L.Conv2D(6, 1, strides=2, name="down"),
        L.Flatten(), L.Dense(3, name="fc")])
    cost = model_cost(model).by_name()
    assert cost["conv"].macs == 8 * 8 * 4 * 9 * 2
    assert cost["dw"].macs == 8 * 8 * 8 * 9
    assert cost["bn"].macs == 0 and cost["bn"].params == 4 * 8
    assert cost["sep"].macs == 8 * 8 * 8 * 9 + 8 * 8 * 8 * 6
    assert cost["down"].macs == 4 * 4 * 6 * 6
    assert cost["fc"].macs == 4 * 4 * 6 * 3
    assert cost["conv"].params == 3 * 3 * 2 * 4 + 4
    assert model_cost(model).params == model.count_params()


@pytest.mark.slow
@pytest.mark.parametrize("alpha,size,published_macs,published_params", [
    (1.0, 224, 569e6, 4.24e6), (0.5, 160, 77e6, 1.34e6), (0.25, 224, 41e6, 0.47e6)])
def test_mobilenet_v1_matches_the_published_table(alpha, size, published_macs, published_params):
    """Figures from the MobileNet v1 model table (million MACs, million parameters, rounded)."""
    import tf_keras as keras

    model = keras.applications.MobileNet(alpha=alpha, input_shape=(size, size, 3), weights=None)
    cost = model_cost(model)
    assert abs(cost.macs - published_macs) / published_macs < 0.01
    assert abs(cost.params - published_params) / published_params < 0.02


@pytest.mark.slow
@pytest.mark.parametrize("path", ["models/mlperf-tiny/pretrainedResnet.h5", "models/mlperf-tiny/kws_ref_model"])
def test_mlperf_tiny_params_and_table(path):
    import tf_keras as keras

    model = keras.models.load_model(shared_file(path), compile=False)
    cost = model_cost(model)
    assert cost.params == model.count_params()
    assert cost.macs > 1e6
    assert cost_table(cost, cost).splitlines()[-1].split()[0] == "total"
