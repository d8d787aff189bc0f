"""The kit's firmware on a Cortex-M4F in QEMU (`qemu://mps2-an386`), driven over the MLPerf Tiny protocol by
the serial target's code: outputs bit-identical to the TFLite Micro Python runtime, flash and RAM read from
the linked ELF, and an instruction clock that repeats exactly."""
from __future__ import annotations

import numpy as np
import pytest

from tests.firmware_build.conftest import BOARD, KERNELS, need_tools, tflm_tree
from tests.support.shared import shared_file

pytestmark = pytest.mark.slow

MLPERF = ["kws_ref_model.tflite", "vww_96_int8.tflite", "pretrainedResnet_quant.tflite", "ad01_int8.tflite"]
#: inputs per model; the emulated UART moves about 5 KB/s, so the image models get fewer in the suite
#: (benchmarks/bench_firmware.py --identity runs 100 of each)
SAMPLES = {"vww_96_int8.tflite": 10, "pretrainedResnet_quant.tflite": 30}


def _target(compress: str):
    from targets.registry import get_target

    need_tools("make", "arm-none-eabi-g++", "qemu-system-arm")
    tflm_tree()
    return get_target(f"qemu://{BOARD}?kernels={KERNELS}", compress=compress)


def _random_inputs(model: bytes, n: int, seed: int) -> np.ndarray:
    from kit.core.tflite_file import read_tflite

    info = read_tflite(model)
    t = info.tensor(info.inputs[0])
    assert t.dtype == "int8"
    return np.random.default_rng(seed).integers(-128, 127, size=(n, *t.shape), endpoint=True).astype(np.int8)


def _quantized(model: bytes, values: list[list[float]]) -> np.ndarray:
    """The firmware prints dequantized outputs with 6 decimals; map them back to the int8 values."""
    from kit.core.tflite_file import read_tflite

    info = read_tflite(model)
    q = info.tensor(info.outputs[0]).quantization
    return np.rint(np.asarray(values) / q.scale + q.zero_point).astype(np.int64)


@pytest.mark.parametrize("name", [*MLPERF, "lenet-300-100-pruned"])
def test_outputs_bit_identical_to_tflm_python(name, request):
    from firmware_tools.tflm import run_model, search_arena

    path = (request.getfixturevalue("lenet_pruned") if name.startswith("lenet")
            else shared_file(f"models/mlperf-tiny/{name}"))
    model = path.read_bytes()
    target = _target("auto" if name.startswith("lenet") else "none")
    deployment = target.deploy(path)
    try:
        image = deployment.state["image"]
        if name.startswith("lenet"):  # the firmware holds the DECODE-compressed model: smaller than the file
            assert image.model_bytes < len(model) * 0.6
        else:
            assert image.model_bytes == len(model)
        n = SAMPLES.get(name, 100)
        inputs = _random_inputs(model, n, seed=len(name))
        got = target.outputs(deployment, [x.tobytes() for x in inputs])
    finally:
        target.cleanup(deployment)
    expected = run_model(model, [inputs], search_arena(model).min_bytes)[0].reshape(n, -1)
    assert len(got) == n
    np.testing.assert_array_equal(_quantized(model, got), expected.astype(np.int64))
