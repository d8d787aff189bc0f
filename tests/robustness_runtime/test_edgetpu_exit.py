"""`kit edgetpu` exits non-zero when LiteRT refuses the model or no op maps to the Edge TPU."""
from __future__ import annotations

import json

from kit.cli import main
from tests.support.shared import shared_file

#: a one-byte corruption of kws_ref_model.tflite that the .tflite reader accepts and LiteRT refuses
LITERT_REFUSES = (52458, 30)


def test_a_model_litert_refuses_exits_1_with_the_runtime_error(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no compiler: the exit code comes from the check alone
    data = bytearray(shared_file("models/mlperf-tiny/kws_ref_model.tflite").read_bytes())
    offset, byte = LITERT_REFUSES
    data[offset] = byte
    model = tmp_path / "kws-bad.tflite"
    model.write_bytes(bytes(data))
    out_json = tmp_path / "r.json"
    assert main(["edgetpu", str(model), "--json", str(out_json)]) == 1
    err = capfd.readouterr().err
    assert "error: LiteRT cannot load kws-bad.tflite:" in err
    assert json.loads(out_json.read_text())["problems"][0].startswith("LiteRT cannot load")


def test_a_float_model_with_no_op_for_the_edge_tpu_exits_1(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    model = shared_file("models/mlperf-tiny/ad01_fp32.tflite")
    assert main(["edgetpu", str(model)]) == 1
    captured = capfd.readouterr()
    assert "0 of 10 ops can map" in captured.out
    assert "no op of ad01_fp32.tflite can map to the Edge TPU" in captured.err


def test_an_int8_model_that_maps_still_exits_0(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["edgetpu", str(shared_file("models/mlperf-tiny/ad01_int8.tflite"))]) == 0
    assert "error:" not in capfd.readouterr().err


def test_a_json_file_that_cannot_be_written_is_refused_before_the_check(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    model = str(shared_file("models/mlperf-tiny/ad01_int8.tflite"))
    for place, why in (("/proc/kit-edgetpu.json", "not writable"), (str(tmp_path), "is a folder")):
        assert main(["edgetpu", model, "--no-compile", "--json", place]) == 2
        captured = capfd.readouterr()
        assert why in captured.err and "Traceback" not in captured.err, captured.err
        assert "ops can map" not in captured.out  # refused before the work
    deeper = tmp_path / "new" / "r.json"
    assert main(["edgetpu", model, "--no-compile", "--json", str(deeper)]) == 0
    assert json.loads(deeper.read_text())["problems"] == []
