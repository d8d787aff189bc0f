"""Latency-aware pruning: which layers a runtime runs sparse, and a real measurement that shaping made it faster."""
import platform

import numpy as np
import pytest

import kit  # noqa: F401
from kit.search import latency_aware as la
from kit.core.errors import KitError


@pytest.fixture(scope="module")
def lenet():
    """MNIST-sized LeNet-300-100 (784 inputs): large enough for sparse kernels to pay off."""
    import tf_keras as keras

    from kit.models import build

    keras.utils.set_random_seed(0)
    return build("lenet-300-100")


def _cnn(stem_padding: str = "zero", pool: bool = True, size: int = 32):
    import tf_keras as keras

    L = keras.layers
    stem = ([L.ZeroPadding2D(1), L.Conv2D(8, 3, strides=2, name="stem")] if stem_padding == "zero"
            else [L.Conv2D(8, 3, strides=2, padding="same", name="stem")])
    tail = [L.GlobalAveragePooling2D() if pool else L.Flatten(), L.Dense(10, name="logits")]
    return keras.Sequential([L.InputLayer((size, size, 3)), *stem, L.DepthwiseConv2D(3, padding="same", name="dw"),
                             L.Conv2D(32, 1, activation="relu", name="pw"), *tail])


def test_float_dense_on_litert_gets_1x4_blocks(lenet):
    for runtime in ("litert", "litert-builtin"):
        p = la.plan(lenet, runtime, "float32", "x86-avx")
        assert [(s.layer, s.sparse_kernel, s.granularity, s.block) for s in p.layers] == [
            (name, True, "block", (1, 4)) for name in ("fc1", "fc2", "logits")]
        overrides = p.overrides()
        assert overrides["fc1"].granularity == "block" and overrides["fc1"].block == (1, 4)
        assert p.any_sparse and "fc1 (1x4 blocks)" in p.summary()


def test_int8_dense_gets_1x16_only_without_xnnpack(lenet):
    builtin = la.plan(lenet, "litert-builtin", "int8")
    assert all(s.sparse_kernel and s.block == (1, 16) for s in builtin.layers)
    xnnpack = la.plan(lenet, "litert", "int8")
    assert not xnnpack.any_sparse and xnnpack.overrides() == {}
    assert all(la.NO_SPARSE_KERNELS in s.reason and "XNNPACK" in s.reason for s in xnnpack.layers)
    assert la.NO_SPARSE_KERNELS in xnnpack.summary()


def test_tflm_has_no_sparse_kernels(lenet):
    for fmt in ("float32", "int8"):
        p = la.plan(lenet, "tflm", fmt)
        assert not p.any_sparse
        assert all(la.NO_SPARSE_KERNELS in s.reason for s in p.layers)
        assert any("wrong results" in n for n in p.notes)
        assert "will not make inference faster" in p.summary()


def test_xnnpack_sparse_cnn_path_needs_structure_and_cpu():
    arm = la.plan(_cnn(), "litert", "float32", "arm")
    by = {s.layer: s for s in arm.layers}
    assert by["pw"].sparse_kernel and by["pw"].granularity == "unstructured"
    assert by["pw"].min_sparsity == pytest.approx(2 / 3)
    assert not by["stem"].sparse_kernel and "1x1" in by["stem"].reason
    assert "structure: met" in " ".join(arm.notes)
    avx = {s.layer: s for s in la.plan(_cnn(), "litert", "float32", "x86-avx").layers}
    assert not avx["pw"].sparse_kernel and "AVX" in avx["pw"].reason
    same_even = {s.layer: s for s in la.plan(_cnn("same"), "litert", "float32", "arm").layers}
    assert not same_even["pw"].sparse_kernel and "padded by 1" in same_even["pw"].reason
    same_odd = {s.layer: s for s in la.plan(_cnn("same", size=33), "litert", "float32", "arm").layers}
    assert same_odd["pw"].sparse_kernel  # SAME on an odd size pads 1 on every side
    no_pool = {s.layer: s for s in la.plan(_cnn(pool=False), "litert", "float32", "arm").layers}
    assert not no_pool["pw"].sparse_kernel and "global average pool" in no_pool["pw"].reason
    builtin = {s.layer: s for s in la.plan(_cnn(), "litert-builtin", "float32", "arm").layers}
    assert not builtin["pw"].sparse_kernel  # without XNNPACK, sparse convolution weights are densified


def test_bad_runtime_or_format_is_refused(lenet):
    with pytest.raises(KitError):
        la.plan(lenet, "tpu", "float32")
    with pytest.raises(KitError):
        la.plan(lenet, "litert", "float16")
    with pytest.raises(KitError, match="no sparse kernels"):
        la.confirm(lenet, la.plan(lenet, "tflm", "float32"), "local")


def test_host_arch_is_classified():
    machine = platform.machine().lower()
    expected = "x86" if machine in ("x86_64", "amd64") else "arm" if machine.startswith(("arm", "aarch64")) else machine
    assert la.host_arch().startswith(expected)


@pytest.mark.slow
def test_shaped_float_pruning_is_measured_faster_on_litert(lenet):
    c = la.confirm(lenet, la.plan(lenet, "litert", "float32", la.host_arch()), "local", sparsity=0.95, runs=200)
    assert c.faster, c.summary()
    assert c.sparse_bytes < c.dense_bytes / 10
    assert c.dense_us > 0 and c.speedup > 1.1


@pytest.mark.slow
def test_shaped_int8_pruning_is_measured_faster_on_builtin_kernels(lenet):
    calib = np.random.default_rng(0).random((32, 784), dtype=np.float32)
    c = la.confirm(lenet, la.plan(lenet, "litert-builtin", "int8"), "local", sparsity=0.95, calibration=calib,
                   runs=200)
    assert c.faster, c.summary()
