"""Which TFLM sources a model's firmware compiles, read from the tree itself; refusals for what cannot build."""
from __future__ import annotations

import pytest

from firmware_tools.build import build, check_tree, render_makefile, select_sources
from kit.core.errors import KitError, TargetError
from tests.firmware_build.conftest import tflm_tree

KWS_OPS = ["AddConv2D", "AddDepthwiseConv2D", "AddAveragePool2D", "AddReshape", "AddFullyConnected", "AddSoftmax"]


def test_only_the_models_kernels_and_no_test_code():
    s = select_sources(tflm_tree(), KWS_OPS)
    ref, cmsis = set(s.kernels["reference"]), set(s.kernels["cmsis_nn"])
    k = "tensorflow/lite/micro/kernels/"
    assert {k + "conv.cc", k + "conv_common.cc", k + "depthwise_conv.cc", k + "pooling.cc", k + "softmax.cc"} <= ref
    assert k + "add.cc" not in ref and k + "svdf.cc" not in ref  # ops the model does not use
    assert {k + "cmsis_nn/conv.cc", k + "conv_common.cc", k + "reshape.cc"} <= cmsis and k + "conv.cc" not in cmsis
    everything = [*s.core, *ref, *cmsis]
    assert not [f for f in everything if "test" in f.rsplit("/", 1)[-1]]
    assert "tensorflow/lite/micro/micro_interpreter.cc" in s.core
    assert s.cmsis_nn_c and not [f for f in s.cmsis_nn_c if f.endswith(("_f16.c", "_f32.c"))]


def test_decode_brings_its_decoder_states():
    kernels = select_sources(tflm_tree(), ["AddDecode"]).kernels["reference"]
    assert {"tensorflow/lite/micro/kernels/decode.cc", "tensorflow/lite/micro/kernels/decode_state_lut.cc",
            "tensorflow/lite/micro/kernels/decode_state_prune.cc"} <= set(kernels)


def test_an_op_the_tree_lacks_is_refused():
    with pytest.raises(KitError, match="no MicroMutableOpResolver::AddTeleport"):
        select_sources(tflm_tree(), ["AddTeleport"])


def test_a_folder_that_is_not_a_tflm_tree_is_refused(tmp_path):
    with pytest.raises(KitError, match="not a TensorFlow Lite Micro tree"):
        check_tree(tmp_path)


def test_makefile_knows_every_board_and_refuses_others(tmp_path):
    text = render_makefile(tmp_path, "m")
    for board in ("mps2-an386", "mps2-an500", "mps2-an505", "mps3-an547"):
        assert f"ifeq ($(TARGET),{board})" in text and f"src/bare/{board}.ld" in text
    with pytest.raises(KitError, match="unknown firmware target"):
        build(tmp_path, "cortex-a53")
    with pytest.raises(KitError, match="not available for host"):
        build(tmp_path, "host", "cmsis_nn")


def test_qemu_target_refuses_unknown_boards_and_options():
    from targets.registry import get_target

    with pytest.raises(TargetError, match="unknown QEMU board"):
        get_target("qemu://mps9-an999")
    with pytest.raises(TargetError, match="kernels=fast"):
        get_target("qemu://mps2-an386?kernels=fast")
    with pytest.raises(TargetError, match="unknown option.*baud"):
        get_target("qemu://mps2-an386?baud=9600")
    with pytest.raises(TargetError, match="compress=zip"):
        get_target("qemu://mps2-an386", compress="zip")
