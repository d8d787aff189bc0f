"""The edgetpu+local target on a host without an Edge TPU: it refuses with the reason instead of timing the CPU."""
from __future__ import annotations

import ctypes.util

import pytest

from tests.support.shared import shared_file
from kit.core.errors import TargetError
from targets.base import RunSettings
from targets.registry import get_target

needs_no_edgetpu = pytest.mark.skipif(ctypes.util.find_library("edgetpu") is not None,
                                      reason="this host has libedgetpu installed")


@needs_no_edgetpu
def test_missing_runtime_is_named():
    target = get_target("edgetpu+local", "coral-usb-accelerator")
    with pytest.raises(TargetError) as e:
        target.profile(shared_file("models/mlperf-tiny/ad01_int8.tflite"), RunSettings(runs=2))
    assert "libedgetpu.so.1 cannot be loaded on this host" in e.value.message
    assert "libedgetpu1-std" in e.value.hint
    runtime = target.device_info().extra["edgetpu_runtime"]
    assert runtime.startswith("libedgetpu.so.1: ") and "cannot open shared object file" in runtime


def test_uncompiled_model_without_compiler_is_refused(monkeypatch, tmp_path):
    # a library that does load stands in for the runtime, so that the model check is reached
    monkeypatch.setenv("PATH", str(tmp_path))
    target = get_target("edgetpu+local", None, delegate_library=ctypes.util.find_library("c"))
    with pytest.raises(TargetError) as e:
        target.profile(shared_file("models/mlperf-tiny/ad01_int8.tflite"), RunSettings(runs=2))
    assert "is not compiled for the Edge TPU and edgetpu_compiler is not on PATH" in e.value.message
    assert "kit edgetpu" in e.value.hint


def test_cpu_delegates_are_refused():
    target = get_target("edgetpu+local", None)
    with pytest.raises(TargetError, match="edgetpu delegate"):
        target.run(None, RunSettings(delegate="xnnpack"))


def test_unknown_options_for_local_are_refused():
    with pytest.raises(TargetError, match="unknown option"):
        get_target("edgetpu+local", None, identity="~/.ssh/id_ed25519")


def _compiled_shape_model(path):
    """hello_world_int8 with its middle op renamed to the custom op edgetpu_compiler emits.

    This has the structure of a compiled model (one edgetpu-custom-op between CPU ops), not a real
    compiled Edge TPU program: it exercises the check and the target's path to the delegate.
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(shared_file("models/tflm-examples/hello_world_int8.tflite")
                                                      .read_bytes()), 0)
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode, code.version = b"edgetpu-custom-op", 1
    model.operatorCodes.append(code)
    op = model.subgraphs[0].operators[1]
    op.opcodeIndex, op.builtinOptionsType, op.builtinOptions = len(model.operatorCodes) - 1, 0, None
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(builder.Output())
    return path


def test_compiled_model_goes_to_the_delegate_and_its_failure_is_named(tmp_path):
    from targets.edgetpu import check_edgetpu_requirements

    model = _compiled_shape_model(tmp_path / "hello_edgetpu.tflite")
    report = check_edgetpu_requirements(model)
    assert report.compiled and [o.op for o in report.tpu_ops] == ["edgetpu-custom-op"] and len(report.cpu_ops) == 2
    assert "already compiled for the Edge TPU" in report.summary()
    # libc loads, so the checks pass and the runner is started with it as the delegate: LiteRT must refuse it
    libc = ctypes.util.find_library("c")
    target = get_target("edgetpu+local", None, delegate_library=libc)
    with pytest.raises(TargetError) as e:
        target.profile(model, RunSettings(runs=2, warmup=0))
    assert f"the Edge TPU delegate {libc} failed on this host" in e.value.message
    assert "tflite_plugin" in e.value.message  # LiteRT's own reason: libc lacks the delegate entry points
