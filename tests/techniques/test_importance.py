"""Importance scores against hand-computed gradients of a linear softmax classifier, and mask selection rules."""
import numpy as np
import pytest

import kit  # noqa: F401
from kit.core.errors import DataError, KitError
from kit.techniques.importance import MIN_KEEP, scores, select_sparsity, select_threshold


@pytest.fixture(scope="module")
def linear():
    """logits = x W (no bias): dL/dW for one sample is outer(x, softmax(xW) - onehot(y))."""
    import tf_keras as keras

    rng = np.random.default_rng(0)
    model = keras.Sequential([keras.layers.InputLayer((6,)), keras.layers.Dense(4, use_bias=False, name="fc")])
    w = rng.normal(size=(6, 4)).astype(np.float32)
    model.get_layer("fc").set_weights([w])
    x = rng.normal(size=(16, 6)).astype(np.float32)
    y = rng.integers(0, 4, 16)
    return model, w, x, y


def _per_sample_grads(w, x, y):
    z = x @ w
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(y)), y] -= 1
    return np.einsum("ni,nj->nij", x, p)  # [n, in, out]


def test_gradient_taylor_fisher_match_hand_computed(linear):
    from kit.techniques.masking import prunable_kernels

    model, w, x, y = linear
    kernels = prunable_kernels(model)
    g = _per_sample_grads(w.astype(np.float64), x.astype(np.float64), y)
    batches = [g[:8].mean(0), g[8:].mean(0)]
    s = scores(model, kernels, "gradient", x, y, batch_size=8)
    assert s["fc/kernel"] == pytest.approx(np.mean([np.abs(b) for b in batches], axis=0), rel=1e-4, abs=1e-6)
    s = scores(model, kernels, "taylor", x, y, batch_size=8)
    assert s["fc/kernel"] == pytest.approx(np.mean([np.abs(b * w) for b in batches], axis=0), rel=1e-4, abs=1e-6)
    s = scores(model, kernels, "fisher", x, y, batch_size=8)
    fisher = np.mean(g ** 2, axis=0)
    assert s["fc/kernel"] == pytest.approx(0.5 * fisher * w ** 2, rel=1e-4, abs=1e-7)
    assert scores(model, kernels, "magnitude")["fc/kernel"] == pytest.approx(np.abs(w))


def test_gradient_methods_need_data(linear):
    from kit.techniques.masking import prunable_kernels

    model = linear[0]
    with pytest.raises(DataError, match="needs input data"):
        scores(model, prunable_kernels(model), "fisher")
    with pytest.raises(KitError, match="unknown importance"):
        scores(model, prunable_kernels(model), "hessian")


def test_layer_and_global_selection():
    a = np.arange(1, 11, dtype=float).reshape(2, 5)  # 1..10
    b = np.arange(101, 111, dtype=float)  # 101..110: all larger than a
    sel = select_sparsity({"a": a, "b": b}, {"a": 0.3, "b": 0.3}, "layer")
    assert (~sel.masks["a"]).sum() == 3 and (~sel.masks["b"]).sum() == 3
    assert not sel.masks["a"].reshape(-1)[:3].any() and sel.masks["a"].reshape(-1)[3:].all()
    sel = select_sparsity({"a": a, "b": b}, {"a": 0.5, "b": 0.5}, "global")
    # 10 of 20 go: all of a's would, but each layer keeps at least MIN_KEEP (one weight here)
    assert sel.masks["b"].all()
    assert sel.masks["a"].sum() == max(1, int(np.ceil(MIN_KEEP * 10))) and sel.masks["a"].reshape(-1)[-1]
    prev = {"a": np.ones((2, 5), bool), "b": np.ones(10, bool)}
    prev["b"][-1] = False  # the largest b was pruned before: it stays pruned and counts towards the target
    sel = select_sparsity({"a": a, "b": b}, {"a": 0.0, "b": 0.2}, "layer", previous=prev)
    assert not sel.masks["b"][-1] and (~sel.masks["b"]).sum() == 2 and not sel.masks["b"][0]


def test_thresholds():
    w = np.array([[0.1, -0.2, 0.3], [-0.4, 0.5, -0.6]])
    s = {"k": np.abs(w) * 10}
    assert select_threshold(s, {"k": w}, 0.25, "absolute").masks["k"].tolist() == (np.abs(w) >= 0.25).tolist()
    rms = np.sqrt(np.mean(w ** 2))
    assert select_threshold(s, {"k": w}, 0.9, "relative").masks["k"].tolist() == (np.abs(w) >= 0.9 * rms).tolist()
    assert select_threshold(s, {"k": w}, 3.5, "score").masks["k"].tolist() == (np.abs(w) * 10 >= 3.5).tolist()
    with pytest.raises(KitError, match="threshold kind"):
        select_threshold(s, {"k": w}, 0.1, "median")
