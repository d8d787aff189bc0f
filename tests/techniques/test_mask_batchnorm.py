"""The kit's own pruning loops (soft, learned masks, iterative) leave BatchNormalization's moving statistics equal to
the statistics of the pruned network's inputs, as the fine-tune does: stale statistics of the dense model are
what made pre-trained BN networks collapse in inference mode after pruning."""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def _bn_cnn(seed: int = 0):
    import tf_keras as keras

    keras.utils.set_random_seed(seed)
    L = keras.layers
    inp = keras.Input((8, 8, 1))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(16, 3, padding="same", use_bias=False)(inp)))
    x = L.ReLU()(L.BatchNormalization()(L.DepthwiseConv2D(3, padding="same", use_bias=False)(x)))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(16, 1, use_bias=False)(x)))
    x = L.Dropout(0.3)(L.GlobalAveragePooling2D()(x))
    return keras.Model(inp, L.Dense(10, activation="softmax", name="predictions")(x))


@pytest.fixture(scope="module")
def pretrained(digits):
    """Trained dense on digits: its BN statistics describe the dense network."""
    model = _bn_cnn()
    x = digits.x_train.reshape(-1, 8, 8, 1)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, digits.y_train, epochs=3, batch_size=64, verbose=0)
    return model, x[:300], digits.y_train[:300]


def _stale(model, x) -> list[str]:
    """BN layers whose moving mean is not the mean of their inputs over `x`."""
    import tf_keras as keras

    out = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            feed = keras.Model(model.input, layer.input)(x).numpy()
            if not np.allclose(layer.moving_mean.numpy(), feed.mean(axis=(0, 1, 2)), rtol=1e-3, atol=1e-3):
                out.append(layer.name)
    return out


def _kernels(model, sparsity: float):
    from kit.techniques import masking

    kernels = masking.prunable_kernels(model, skip=["predictions"])
    return kernels, {k: sparsity for k in kernels}


def _finetune(epochs: int):
    from kit.recipe import parse_recipe

    return parse_recipe(f"[finetune]\nepochs = {epochs}\nbatch_size = 32\nvalidation_split = 0.0\n").finetune


def test_learned_masks_return_a_model_with_recalibrated_statistics(pretrained):
    from kit.techniques.learned_masks import learn_masks
    from kit.techniques.prune import private_copy

    model, x, y = pretrained
    work = private_copy(model)
    _, targets = _kernels(work, 0.7)
    pruned, masks, _ = learn_masks(work, targets, x, y, epochs=1, batch_size=32)
    assert min(1 - m.mean() for m in masks.values()) > 0.6
    assert _stale(pruned, x) == []


def test_soft_pruning_recalibrates_after_its_last_mask_update(pretrained):
    from kit.techniques.prune import private_copy
    from kit.techniques.soft_prune import soft_prune

    model, x, y = pretrained
    work = private_copy(model)
    kernels, final = _kernels(work, 0.8)
    # the ramp ends after the fine-tune: the mask hardens once training is over
    _, report, _ = soft_prune(work, kernels, {k: (0.0, v) for k, v in final.items()}, x, y, _finetune(1),
                                  begin_step=0, end_step=100, frequency=5)
    assert report.final_sparsity == pytest.approx(0.8, abs=0.01)
    assert _stale(work, x) == []


def test_iterative_pruning_ends_with_recalibrated_statistics(pretrained):
    from kit.techniques.iterative import iterative_prune
    from kit.techniques.prune import private_copy

    model, x, y = pretrained
    work = private_copy(model)
    kernels, final = _kernels(work, 0.8)
    iterative_prune(work, kernels, final, x, y, _finetune(2), cycles=2)
    assert _stale(work, x) == []
