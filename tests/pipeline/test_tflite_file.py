import os
import random

import pytest

from tests.support.shared import shared_file
from kit.core.errors import ModelError
from kit.core.tflite_file import read_tflite


@pytest.fixture(scope="module")
def int8_model_bytes():
    return shared_file("models/mlperf-tiny/ad01_int8.tflite").read_bytes()


def test_reads_real_int8_model(int8_model_bytes):
    info = read_tflite(int8_model_bytes)
    assert info.size_bytes == len(int8_model_bytes)
    assert "FULLY_CONNECTED" in info.op_names
    inp = info.tensor(info.inputs[0])
    assert inp.shape[-1] == 640 and inp.dtype == "int8"
    assert inp.quantization is not None and inp.quantization.scale > 0
    assert 0 < info.weight_bytes < info.size_bytes
    weights = [t for t in info.tensors if t.constant and t.dtype == "int8"]
    assert weights and all(t.storage == "dense" for t in weights)


@pytest.mark.parametrize("keep", [0, 7, 100, 1000, -1000, -10])
def test_truncated_model_is_a_clear_error(int8_model_bytes, keep):
    data = int8_model_bytes[:keep] if keep >= 0 else int8_model_bytes[:keep]
    with pytest.raises(ModelError) as e:
        read_tflite(data)
    assert any(w in str(e.value) for w in ("truncated", "too short", "corrupt", "not a TFLite"))


def test_random_and_flipped_bytes_never_crash(int8_model_bytes):
    rng = random.Random(0)
    for _ in range(30):
        with pytest.raises(ModelError):
            read_tflite(os.urandom(rng.randint(8, 4000)))
    for _ in range(60):  # corrupt bytes inside a real model: either parses or a ModelError, nothing else
        data = bytearray(int8_model_bytes)
        for _ in range(20):
            data[rng.randrange(8, 4096)] = rng.randrange(256)
        try:
            read_tflite(bytes(data))
        except ModelError:
            pass


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        read_tflite(tmp_path / "nope.tflite")
