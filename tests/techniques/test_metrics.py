"""Metrics against values worked out by hand on tiny cases."""
import math

import numpy as np
import pytest

import kit  # noqa: F401
from kit.techniques import metrics as M
from kit.core.errors import KitError


def test_psnr_and_mse_by_hand():
    ref = np.array([[0.0, 1.0], [2.0, 3.0]])
    out = np.array([[0.0, 1.0], [2.0, 4.0]])
    mse, psnr = M.mse_psnr(ref, out)
    assert mse == pytest.approx(0.25)  # one error of 1 over 4 values
    assert psnr == pytest.approx(10 * math.log10(3.0 ** 2 / 0.25))  # peak = range of the reference = 3
    assert psnr == pytest.approx(15.563, abs=1e-3)
    assert M.mse_psnr(ref, out, peak=1.0)[1] == pytest.approx(10 * math.log10(4.0))
    assert M.mse_psnr(ref, ref) == (0.0, math.inf)
    with pytest.raises(KitError, match="shape"):
        M.mse_psnr(ref, out[:1])


def test_topk_compression_fps_co2_by_hand():
    out = np.array([[0.1, 0.5, 0.2, 0.9], [0.8, 0.1, 0.3, 0.2], [0.3, 0.2, 0.1, 0.4]])
    y = np.array([1, 0, 2])
    assert M.topk(out, y, 1) == pytest.approx(1 / 3)  # only sample 1 is right
    assert M.topk(out, y, 2) == pytest.approx(2 / 3)  # sample 0: label 1 is second best
    assert M.topk(out, y, 3) == pytest.approx(2 / 3)  # sample 2: label 2 has the lowest output, fourth
    assert M.topk(out, y, 4) == pytest.approx(1.0)
    assert M.compression_rate(1000, 250) == 4.0
    assert M.fps(250.0) == 4000.0 and M.fps(None) is None
    # 1000 uJ = 1 mJ per inference; 1e6 inferences = 1 kJ = 1/3600 kWh; at 400 g/kWh: 0.111 g
    assert M.co2e_grams_per_million(1000.0, 400.0) == pytest.approx(400 / 3600)
    assert M.co2e_grams_per_million(None, 400.0) is None and M.co2e_grams_per_million(5.0, None) is None


def test_shift_moves_pixels_with_zero_fill():
    img = np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3)
    assert M.shift(img, 0, 1).tolist() == [[[0, 1, 2], [0, 4, 5], [0, 7, 8]]]
    assert M.shift(img, -1, 0).tolist() == [[[4, 5, 6], [7, 8, 9], [0, 0, 0]]]
    flat = img.reshape(1, 9)
    assert M.shift(flat, 1, 0, (3, 3)).reshape(3, 3).tolist() == [[0, 0, 0], [1, 2, 3], [4, 5, 6]]
    with pytest.raises(KitError, match="not images"):
        M.shift(flat, 1, 0)


def test_robustness_matches_hand_computed_accuracies():
    """A 'model' that answers which of the 4 pixels of a 2x2 image is brightest."""
    def brightest(x):
        return np.eye(4)[x.reshape(len(x), 4).argmax(1)]

    def dark_wins(x):  # a second model: the dimmest pixel
        return np.eye(4)[x.reshape(len(x), 4).argmin(1)]

    x = np.zeros((4, 2, 2), np.float32)
    for i in range(4):
        x[i].flat[i] = 1.0
    y = np.arange(4)
    r = M.robustness({"bright": brightest, "dark": dark_wins}, x, y, sigmas=(0.3,), shifts=(1,), seed=7)
    assert r.clean == {"bright": 1.0, "dark": 0.0}
    noisy = x + np.random.default_rng(7).normal(0.0, 0.3, x.shape).astype(np.float32)  # the documented draw
    expected = float(np.mean(noisy.reshape(4, 4).argmax(1) == y))
    assert r.noise["sigma=0.3"]["bright"] == pytest.approx(expected)
    # shifted by one pixel the bright pixel lands on a neighbour or leaves the 2x2 image (all zeros: argmax 0).
    # down: 0->2, 1->3, 2,3 leave -> answers 2,3,0,0 (0 right); up: 0,1 leave, 2->0, 3->1 -> 0,0,0,1 (1 right:
    # sample 0); right: 0->1, 1 leaves, 2->3, 3 leaves -> 1,0,3,0 (0 right); left: 0 leaves, 1->0, 2 leaves,
    # 3->2 -> 0,0,0,2 (1 right: sample 0). Mean over the four directions: (0 + 1 + 0 + 1) / 4 / 4 = 0.125
    assert r.shift["shift=1px"]["bright"] == pytest.approx(0.125)


def test_model_figures_count_params_sparsity_and_macs():
    from kit.models import build

    model = build("lenet-300-100", input_shape=(64,))
    f = M.model_figures(model)
    assert f.params == 64 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    assert f.macs == 64 * 300 + 300 * 100 + 100 * 10
    w = model.get_layer("fc2").kernel.numpy()
    w[:, :50] = 0  # half of fc2
    model.get_layer("fc2").kernel.assign(w)
    g = M.model_figures(model)
    assert g.layers["fc2/kernel"]["sparsity"] == pytest.approx(0.5)
    assert g.kernel_sparsity == pytest.approx(15000 / (19200 + 30000 + 1000))
    assert g.effective_macs == f.macs - 15000
    assert M.pruning_rate(f, g) == pytest.approx(1 - g.nonzero_params / f.params)
    assert f.params - g.nonzero_params >= 15000
