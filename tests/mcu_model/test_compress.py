"""TFLM compression: LUT (the tflite_micro package's compressor) and prune (ours) give models that the stock
TFLM Python runtime runs with exactly the outputs of the uncompressed int8 model."""
from __future__ import annotations

import numpy as np
import pytest
from tests.support.shared import shared_file

from firmware_tools.compress import (DCM_BYTES, Compression, PruneCompressor, _read_editable, compress_model,
                                     decode_prune, encode_prune)
from firmware_tools.tflm import run_model, search_arena
from kit.core.tflite_file import read_tflite


def _outputs(model: bytes, x: np.ndarray) -> np.ndarray:
    return run_model(model, [x], search_arena(model).min_bytes)[0]


@pytest.fixture(scope="module")
def compressed(small_models) -> dict[str, Compression]:
    return {name: compress_model(small_models.int8, methods)
            for name, methods in {"lut": ("lut",), "prune": ("prune",), "auto": ("lut", "prune")}.items()}


@pytest.fixture(scope="module")
def reference_outputs(small_models) -> np.ndarray:
    return _outputs(small_models.int8, small_models.x_test)


@pytest.mark.parametrize("method", ["lut", "prune", "auto"])
def test_compressed_model_gives_identical_outputs_in_tflm(method, compressed, small_models, reference_outputs):
    c = compressed[method]
    assert c.output_bytes < c.input_bytes
    used = {t.method for t in c.compressed}
    assert used and used <= ({"lut", "prune"} if method == "auto" else {method})
    assert "TFLM_DECODE" in read_tflite(c.model).op_names
    got = _outputs(c.model, small_models.x_test)
    assert got.shape == reference_outputs.shape
    np.testing.assert_array_equal(got, reference_outputs)
    # the test data really exercises the model: most digits are classified right
    assert np.mean(np.argmax(got.reshape(len(got), -1), axis=1) == small_models.y_test) > 0.8


def test_decoding_into_separate_decompression_memory_gives_identical_outputs(compressed, small_models,
                                                                            reference_outputs):
    from firmware_tools.arena import measure_memory

    model = compressed["prune"].model
    memory = measure_memory(model)
    assert memory.split_arena is not None and memory.decompression_bytes > 0
    got = run_model(model, [small_models.x_test], memory.split_arena.min_bytes, memory.decompression_bytes)[0]
    np.testing.assert_array_equal(got, reference_outputs)


def test_auto_takes_the_smaller_payload_per_tensor(compressed):
    choices = compressed["auto"].compressed
    assert choices
    for t in choices:
        assert t.candidates[t.method] == min(t.candidates.values())
        assert t.candidates[t.method] < t.original_bytes and t.saved_bytes > 0


def test_the_big_dense_layer_shrinks_about_as_its_sparsity_and_clusters_predict(compressed):
    dense = next(t for t in compressed["prune"].choices if t.shape == [64, 1024])
    kept = dense.candidates["prune"] - 65536 // 8 - DCM_BYTES
    assert dense.method == "prune" and 0.15 * 65536 < kept < 0.35 * 65536  # pruned to 75 %
    lut = next(t for t in compressed["lut"].choices if t.shape == [64, 1024])
    assert lut.method == "lut" and "3-bit" in lut.detail  # 8 clusters -> at most 8 values per channel


def test_prune_format_bit_order_and_value_table():
    values = np.array([5, 0, 0, 7, 0, 0, 0, 0, -3], dtype=np.int8)
    mask, ancillary = encode_prune(values, np.array(0, np.int8))
    assert mask == bytes([0b10010000, 0b10000000])  # element 0 is the most significant bit
    assert ancillary[:DCM_BYTES] == bytes([2, 1, 0, 0, 1] + [0] * 11)  # prune, DCM v1, prune v1
    assert ancillary[DCM_BYTES:] == np.array([5, 7, -3], np.int8).tobytes()


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.float32])
@pytest.mark.parametrize("axis", [None, 0, -1])
def test_prune_round_trips(dtype, axis):
    rng = np.random.default_rng(3)
    values = rng.integers(-100, 100, size=(6, 3, 5)).astype(dtype)
    values[rng.random(values.shape) < 0.7] = 0
    if axis is None or np.dtype(dtype) != np.int8:
        zp = np.array(0, dtype)
    else:
        shape = [1, 1, 1]
        shape[axis] = values.shape[axis]
        zp = rng.integers(-5, 5, size=shape).astype(dtype)
        values = np.where(rng.random(values.shape) < 0.5, np.broadcast_to(zp, values.shape), values)
    mask, ancillary = encode_prune(values, zp)
    assert len(mask) == -(-values.size // 8)
    back = decode_prune(mask, ancillary, values.shape, values.dtype, zp)
    np.testing.assert_array_equal(back.view(np.uint8), values.view(np.uint8))


def test_prune_compressor_plugin_encodes_a_model_tensor(small_models):
    edited = _read_editable(small_models.int8)
    tensor = max((t for t in edited.subgraphs[0].tensors if t.buffer is not None and t.buffer.data),
                 key=lambda t: len(t.buffer.data))
    result = PruneCompressor().compress(tensor)
    q = tensor.quantization
    zp = np.asarray(q.zero_points, np.int8).reshape([-1] + [1] * (len(tensor.shape) - 1))
    back = decode_prune(result.encoded_data, result.ancillary_data, tensor.shape, np.int8, zp)
    np.testing.assert_array_equal(back, tensor.array)


def test_a_dense_model_stays_as_it_is_and_says_why():
    model = shared_file("models/mlperf-tiny/kws_ref_model.tflite").read_bytes()
    c = compress_model(model)
    assert c.model == model and not c.compressed
    assert "no tensor gets smaller" in c.note
    big = [t for t in c.choices if t.original_bytes >= 2048]
    assert big and all("lut" in t.detail and "prune keeps" in t.detail for t in big)


def test_magnitude_pruned_shared_model_runs_identically():
    """ad01 (MLPerf Tiny anomaly detection) with 80 % of each int8 weight matrix zeroed: a real int8 model."""
    source = shared_file("models/mlperf-tiny/ad01_int8.tflite").read_bytes()
    pruned = bytearray(source)
    for t in _read_editable(source).subgraphs[0].tensors:
        if t.buffer is not None and t.buffer.data and len(t.shape) == 2 and t.array.dtype == np.int8:
            a = t.array.astype(int)
            a[np.abs(a) < np.quantile(np.abs(a), 0.8)] = 0
            at = source.find(t.buffer.data)  # weights are stored in place: patch them there
            pruned[at:at + len(t.buffer.data)] = a.astype(np.int8).tobytes()
    pruned = bytes(pruned)
    c = compress_model(pruned)
    assert c.compressed and c.output_bytes < 0.6 * c.input_bytes
    x = np.random.default_rng(0).integers(-128, 128, size=(16, 1, 640)).astype(np.int8)
    np.testing.assert_array_equal(_outputs(c.model, x), _outputs(pruned, x))
