"""`kit.core.isolate`: a child that crashes, spins, exits or raises becomes a clear error; the caller lives on."""
from __future__ import annotations

import time

import numpy as np
import pytest

from kit.core.errors import DataError, KitError
from kit.core.isolate import ChildException, RuntimeFailure, run_isolated

from . import children


def test_a_segfaulting_child_is_named_by_runtime_signal_and_file():
    with pytest.raises(RuntimeFailure) as e:
        run_isolated(children.segfault, runtime="tflm", file="/some/where/model.tflite", action="loading")
    assert e.value.message.startswith("tflm crashed (SIGSEGV) loading model.tflite")
    assert e.value.how == "SIGSEGV" and e.value.hint and isinstance(e.value, KitError)


def test_a_spinning_child_is_killed_after_the_time_limit():
    t0 = time.monotonic()
    with pytest.raises(RuntimeFailure) as e:
        run_isolated(children.spin, runtime="litert", file="model.tflite", action="loading", timeout_s=1.5)
    elapsed = time.monotonic() - t0
    assert e.value.message == "litert did not finish within 1.5 s loading model.tflite"
    assert e.value.how == "timeout"
    assert elapsed < 15, elapsed


def test_progress_restarts_the_time_limit_and_names_the_last_step():
    t0 = time.monotonic()
    with pytest.raises(RuntimeFailure) as e:
        run_isolated(children.progress_then_spin, (4, 0.6), runtime="tflm", file="m.tflite", timeout_s=2)
    # 4 x 0.6 s of progress is longer than the 2 s limit, which only counts silence (the child's start, slow
    # on a busy machine, comes before its first progress)
    assert time.monotonic() - t0 > 2.4
    assert "within 2 s running step 3 m.tflite" in e.value.message


def test_an_exit_without_an_answer_says_so():
    with pytest.raises(RuntimeFailure, match=r"tflm ended without an answer \(exit 7\) loading m.tflite"):
        run_isolated(children.exit_quietly, (7,), runtime="tflm", file="m.tflite", action="loading")


def test_errors_raised_in_the_child_keep_their_class_or_text():
    with pytest.raises(DataError) as e:
        run_isolated(children.raise_data_error, runtime="tflm", file="m.tflite")
    assert e.value.hint == "use integer class indices"
    with pytest.raises(ChildException) as e2:
        run_isolated(children.raise_value_error, runtime="tflm", file="m.tflite")
    assert e2.value.type_name == "ValueError" and "not a number" in str(e2.value)


def test_output_written_by_native_code_does_not_corrupt_the_answer():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    out = run_isolated(children.noisy_sum, (a,), runtime="litert", file="m.tflite")
    np.testing.assert_array_equal(out, a.sum(axis=0))
