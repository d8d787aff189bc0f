"""edgetpu_compiler output parsing on real compiler output, and the `kit edgetpu` command without the compiler."""
from __future__ import annotations

import json
import shutil

import pytest

from tests.support.shared import shared_file
from kit.core.errors import TargetError
from targets.edgetpu import compile_for_edgetpu, parse_compiler_output, parse_operation_log

MiB, KiB = 1024**2, 1024


def test_full_compiler_stdout():
    r = parse_compiler_output(shared_file("reference/edgetpu_compiler/efficientdet_stdout.txt").read_text())
    assert r.compiler_version == "16.0.384591198" and r.succeeded and r.compile_ms == 1524
    assert (r.input_model, r.output_model) == ("efficientdet_coral_v2.tflite", "efficientdet_coral_v2_edgetpu.tflite")
    assert (r.ops_total, r.ops_tpu, r.ops_cpu, r.subgraphs) == (267, 264, 3, 1)
    assert r.on_chip_bytes == round(4.21 * MiB) and r.on_chip_remaining_bytes == round(3.29 * MiB)
    assert r.off_chip_bytes == 0
    assert r.operation_log == "efficientdet_coral_v2_edgetpu.log" and r.errors == []
    assert "264 of 267" in r.summary()


def test_partial_mapping_with_off_chip_memory_and_op_table():
    r = parse_compiler_output(shared_file("reference/edgetpu_compiler/partial_mapping_frc.txt").read_text())
    assert (r.ops_total, r.ops_tpu, r.ops_cpu) == (141, 138, 3)
    assert r.on_chip_bytes == round(7.14 * MiB) and r.on_chip_remaining_bytes == round(1.75 * KiB)
    assert r.off_chip_bytes == round(6.63 * MiB)
    assert [(row.op, row.count, row.mapped) for row in r.op_log] == [
        ("RESHAPE", 1, False), ("CONCATENATION", 1, False), ("QUANTIZE", 1, False)]
    assert r.op_log[0].status == "Operation is otherwise supported, but not mapped due to some unspecified limitation"


def test_operation_log_table():
    rows = parse_operation_log(shared_file("reference/edgetpu_compiler/efficientdet_operation_log_head.txt").read_text())
    assert [(row.op, row.count) for row in rows] == [("ADD", 42), ("CUSTOM", 1), ("RESHAPE", 10), ("CONCATENATION", 2),
                                                     ("RESIZE_NEAREST_NEIGHBOR", 12), ("DEPTHWISE_CONV_2D", 80)]
    assert [row.op for row in rows if not row.mapped] == ["CUSTOM"]
    assert rows[1].status == "Operation is working on an unsupported data type"


def test_failed_compilation_is_not_success():
    text = ("Edge TPU Compiler version 16.0.384591198\nStarted a compilation timeout timer of 180 seconds.\n"
            "ERROR: Attempting to use a delegate that only supports static-sized tensors with a graph that has "
            "dynamic-sized tensors.\nCompilation failed: Model failed in Tflite interpreter.\nCompilation failed! \n")
    r = parse_compiler_output(text)
    assert not r.succeeded and len(r.errors) == 3 and r.errors[0].startswith("ERROR: Attempting")


def test_absent_compiler_is_a_message_not_a_failure(monkeypatch, tmp_path, capsys):
    from kit.cli import main

    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no edgetpu_compiler on it
    model = shared_file("models/mlperf-tiny/ad01_int8.tflite")
    out_json = tmp_path / "edgetpu.json"
    assert main(["edgetpu", str(model), "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    assert "10 of 10 ops can map to the Edge TPU" in printed
    assert "edgetpu_compiler is not on PATH: skipped compiling" in printed
    saved = json.loads(out_json.read_text())
    assert saved["compile"] is None and len(saved["check"]["ops"]) == 10
    with pytest.raises(TargetError, match="not on PATH"):
        compile_for_edgetpu(model, tmp_path / "out")


def test_missing_model_is_a_user_error(capsys):
    from kit.cli import main

    assert main(["edgetpu", "/nonexistent/model.tflite"]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("edgetpu_compiler") is None, reason="edgetpu_compiler is not installed")
def test_real_compiler_on_an_int8_model(tmp_path):
    r = compile_for_edgetpu(shared_file("models/mlperf-tiny/vww_96_int8.tflite"), tmp_path)
    assert r.succeeded and r.ops_tpu and r.ops_tpu > 0 and (tmp_path / "vww_96_int8_edgetpu.tflite").is_file()
