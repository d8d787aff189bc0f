"""Arena sizing in the real TFLM runtime: the size found allocates and invokes, 16 bytes less does not."""
from __future__ import annotations

import numpy as np
import pytest
from tests.support.shared import shared_file

from firmware_tools.arena import decompression_bytes, measure_memory, with_margin
from firmware_tools.compress import compress_model
from firmware_tools.tflm import ARENA_STEP, run_model, search_arena
from kit.core.errors import ModelError
from kit.core.tflite_file import read_tflite


def test_minimum_arena_runs_and_one_step_less_is_refused(small_models):
    found = search_arena(small_models.int8)
    assert found.min_bytes % ARENA_STEP == 0 and found.failed_bytes == found.min_bytes - ARENA_STEP
    out = run_model(small_models.int8, [small_models.x_test[:2]], found.min_bytes)[0]
    assert out.shape[0] == 2
    with pytest.raises(ModelError, match="allocate"):
        run_model(small_models.int8, [small_models.x_test[:2]], found.min_bytes - ARENA_STEP)
    # the recording allocator accounts for every byte of the minimum arena
    assert found.head_bytes + found.tail_bytes == found.min_bytes


def test_compressed_model_memory_both_layouts(small_models):
    model = compress_model(small_models.int8, ("prune",)).model
    info = read_tflite(model)
    decoded = [info.tensor(i) for op in info.ops if op.op == "TFLM_DECODE" for i in op.outputs]
    assert decoded
    m = measure_memory(model)
    assert m.flash_bytes == len(model)
    assert m.decompression_bytes == decompression_bytes(info) >= max(t.elements for t in decoded)
    # with the decoded weights kept out of the arena, the arena shrinks by at least the largest of them
    plain = search_arena(small_models.int8).min_bytes
    assert m.split_arena.min_bytes < m.arena.min_bytes
    assert m.arena.min_bytes >= plain  # decoded weights need room somewhere
    assert m.ram_bytes == min(m.arena.min_bytes, m.split_arena.min_bytes + m.decompression_bytes)
    with pytest.raises(ModelError):
        run_model(model, [small_models.x_test[:1]], m.split_arena.min_bytes - ARENA_STEP, m.decompression_bytes)


def test_shared_model_arena_matches_the_recording_allocator():
    model = shared_file("models/mlperf-tiny/kws_ref_model.tflite").read_bytes()
    m = measure_memory(model)
    assert m.split_arena is None and m.decompression_bytes == 0 and m.ram_bytes == m.arena.min_bytes
    assert m.arena.head_bytes + m.arena.tail_bytes == m.arena.min_bytes
    assert "allocate" in m.arena.failure


def test_margin_is_aligned_and_at_least_a_kilobyte():
    assert with_margin(1000) == 2032 and with_margin(100_000) == 110_000
    assert all(with_margin(n) % 16 == 0 for n in (1, 17, 12345))


def test_a_model_the_runtime_cannot_parse_is_a_model_error_not_a_crash():
    with pytest.raises(ModelError, match="not a TFLite flatbuffer"):
        search_arena(b"\x00" * 64)
    truncated = shared_file("models/mlperf-tiny/ad01_int8.tflite").read_bytes()[:4000]
    with pytest.raises(ModelError):
        run_model(truncated, [np.zeros((1, 1, 640), np.int8)], 100_000)
