"""Layer pruning on the MLPerf Tiny ResNet-8 (residual blocks) and on a small DS-CNN (separable blocks)."""
import numpy as np
import pytest
from tests.support.shared import shared_file

import kit  # noqa: F401
from kit.core.errors import ModelError
from kit.techniques.layer_prune import find_blocks, prune_blocks, remove_blocks


@pytest.fixture(scope="module")
def resnet8():
    import tf_keras as keras

    return keras.models.load_model(shared_file("models/mlperf-tiny/pretrainedResnet.h5"), compile=False)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((64, 32, 32, 3)).astype(np.float32)


def test_resnet8_has_three_residual_blocks_with_their_shortcuts(resnet8):
    blocks = find_blocks(resnet8)
    assert [b.kind for b in blocks] == ["residual"] * 3
    assert [b.output for b in blocks] == ["add", "add_1", "add_2"]
    # the first stage has an identity shortcut, the later ones a strided 1x1 projection that stays
    assert [b.replacement[0] for b in blocks] == ["activation", "conv2d_5", "conv2d_8"]
    assert blocks[0].layers[:2] == ["conv2d_1", "batch_normalization_1"]


@pytest.mark.parametrize("index", [0, 1, 2])
def test_removing_any_block_keeps_shapes_and_weights(resnet8, images, index):
    block = find_blocks(resnet8)[index]
    pruned = remove_blocks(resnet8, [block])
    assert pruned.input_shape == resnet8.input_shape and pruned.output_shape == resnet8.output_shape
    names = {layer.name for layer in pruned.layers}
    assert not names & set(block.layers)
    for layer in pruned.layers:
        original = resnet8.get_layer(layer.name)
        assert layer.output_shape == original.output_shape, layer.name
        for a, b in zip(layer.get_weights(), original.get_weights()):
            assert np.array_equal(a, b), layer.name
    assert pruned.count_params() == resnet8.count_params() - block.params
    out = pruned.predict(images, verbose=0)
    assert out.shape == (len(images), 10) and np.all(np.isfinite(out))


@pytest.mark.slow
def test_prune_blocks_removes_the_cheapest_and_still_converts(resnet8, images):
    from kit.convert import check as checks
    from kit.convert.converter import ArtifactSpec, convert

    pruned, report = prune_blocks(resnet8, images, count=2)
    costs = [c["cost"] for c in report.candidates]
    assert costs == sorted(costs) and len(costs) == 3
    assert report.removed[0]["block"] == report.candidates[0]["block"]
    assert len(report.removed) == 2 and report.params_after == pruned.count_params() < report.params_before
    assert pruned.output_shape == resnet8.output_shape
    ref = pruned.predict(images[:16], verbose=0)
    lit = checks.check(convert(pruned, ArtifactSpec("float32")), images[:16], None, ref, runtimes=("litert",))[0]
    assert lit.loads and lit.max_abs_error < 1e-3


@pytest.mark.slow
def test_separable_blocks_of_a_ds_cnn():
    import tf_keras as keras

    L = keras.layers
    inp = keras.Input((12, 12, 8))
    h = L.Conv2D(16, 3, padding="same")(inp)
    for i in range(3):
        h = L.DepthwiseConv2D(3, padding="same", name=f"dw{i}")(h)
        h = L.BatchNormalization(name=f"dw_bn{i}")(h)
        h = L.ReLU(name=f"dw_relu{i}")(h)
        h = L.Conv2D(16, 1, name=f"pw{i}")(h)
        h = L.BatchNormalization(name=f"pw_bn{i}")(h)
        h = L.ReLU(name=f"pw_relu{i}")(h)
    h = L.DepthwiseConv2D(3, strides=2, padding="same", name="dw_down")(h)  # changes the shape: not removable
    h = L.Conv2D(24, 1, name="pw_down")(h)
    out = L.Dense(4)(L.GlobalAveragePooling2D()(h))
    model = keras.Model(inp, out)
    blocks = find_blocks(model)
    assert [b.layers[0] for b in blocks] == ["dw0", "dw1", "dw2"]
    assert blocks[1].layers == ["dw1", "dw_bn1", "dw_relu1", "pw1", "pw_bn1", "pw_relu1"]
    x = np.random.default_rng(1).random((8, 12, 12, 8)).astype(np.float32)
    y = np.random.default_rng(2).integers(0, 4, 8)
    pruned, report = prune_blocks(model, x, y, count=2)
    assert len(report.removed) == 2 and pruned.output_shape == model.output_shape
    assert report.criterion == "cross-entropy increase"
    assert len(find_blocks(pruned)) == 1


def test_a_plain_chain_has_no_block():
    from kit.models import build

    with pytest.raises(ModelError, match="no removable"):
        prune_blocks(build("lenet5"), np.zeros((4, 28, 28, 1), np.float32))


@pytest.mark.slow
def test_recipe_layer_prune_on_a_small_resnet(tmp_path):
    """End to end on digits (8x8 images): the cheapest of two residual blocks goes, the rest ships."""
    import tf_keras as keras

    from kit.data import load_data
    from kit.models import train_baseline
    from kit.pipeline.compress import compress
    from kit.recipe import parse_recipe

    L = keras.layers
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    h = L.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inp)
    for i in range(2):
        r = L.Conv2D(8, 3, padding="same", activation="relu", name=f"b{i}_conv1")(h)
        r = L.Conv2D(8, 3, padding="same", name=f"b{i}_conv2")(r)
        h = L.ReLU(name=f"b{i}_out")(L.Add(name=f"b{i}_add")([h, r]))
    out = L.Dense(10, name="logits")(L.Flatten()(h))
    model = keras.Model(inp, out)
    data = load_data("digits")
    train_baseline(model, data.fit_to((8, 8, 1)), epochs=5)
    recipe = parse_recipe('[layer_prune]\nblocks = 1\nepochs = 1\n[finetune]\nepochs = 1\n', "lp.toml")
    r = compress(model, recipe, data, tmp_path, model_name="tiny-resnet", log=lambda *a: None)
    lp = r.techniques["layer_prune"]
    assert len(lp["candidates"]) == 2 and len(lp["removed"]) == 1
    assert lp["removed"][0]["block"] == lp["candidates"][0]["block"]
    removed = set(lp["removed"][0]["layers"])
    assert not removed & {k.split("/")[0] for k in r.layer_sparsity}
    assert r.metrics["after"]["params"] == r.metrics["before"]["params"] - lp["removed"][0]["params"]
    assert r.artifacts[0].shipped and r.keras_accuracy["compressed"] > 0.8
    assert "## Layer pruning" in (tmp_path / "report.md").read_text()
