"""The generated MicroMutableOpResolver registers exactly the model's ops; ops TFLM lacks are named."""
from __future__ import annotations

import re
import subprocess

import pytest
from tests.support.shared import shared_file

from firmware_tools.compress import _read_editable, compress_model, serialize
from firmware_tools.op_resolver import ADD_METHODS, render_resolver, resolver_methods
from kit.core.errors import ModelError
from kit.core.tflite_file import read_tflite

_BY_METHOD = {method: op for op, method in ADD_METHODS.items()}


def _registered_ops(source: str) -> list[str]:
    return [_BY_METHOD[m] for m in re.findall(r"resolver\.(Add\w+)\(\)", source)]


@pytest.mark.parametrize("name", ["kws_ref_model.tflite", "vww_96_int8.tflite", "pretrainedResnet_quant.tflite",
                                  "ad01_int8.tflite"])
def test_resolver_lists_exactly_the_ops_of_shared_models(name):
    info = read_tflite(shared_file(f"models/mlperf-tiny/{name}"))
    header, source = render_resolver(resolver_methods(info))
    ops = _registered_ops(source)
    assert sorted(ops) == info.op_names and len(ops) == len(set(ops))
    assert "MicroMutableOpResolver<kModelOpCount>" in header and f"kModelOpCount = {len(ops)};" in header


def test_compressed_model_registers_decode(small_models):
    info = read_tflite(compress_model(small_models.int8).model)
    ops = _registered_ops(render_resolver(resolver_methods(info))[1])
    assert "TFLM_DECODE" in ops and sorted(ops) == info.op_names


def test_op_without_a_tflm_kernel_is_named(small_models):
    edited = _read_editable(small_models.int8)
    op_code = next(oc for oc in edited.operator_codes if oc.builtin_code == 4)  # DEPTHWISE_CONV_2D
    op_code.builtin_code, op_code._fb.deprecatedBuiltinCode = 32, 32
    op_code.custom_code = "MyFancyOp"
    for op in edited.subgraphs[0].operators:
        if op.opcode == 4:
            op.opcode, op.custom_code = 32, "MyFancyOp"
    info = read_tflite(serialize(edited))
    with pytest.raises(ModelError, match="no kernel for op\\(s\\) MyFancyOp"):
        resolver_methods(info)


def test_densify_is_refused_with_advice(small_models):
    with pytest.raises(ModelError) as e:
        resolver_methods(read_tflite(small_models.sparse))
    assert "DENSIFY" in e.value.message and "prune compression" in e.value.hint


def test_resolver_compiles_against_real_tflm_headers(tmp_path, compiler, small_models):
    """The generated resolver against the real MicroMutableOpResolver of the TFLM tree."""
    from tests.mcu_model.test_project import tflm_includes

    includes = tflm_includes()
    header, source = render_resolver(resolver_methods(read_tflite(compress_model(small_models.int8).model)))
    (tmp_path / "op_resolver.h").write_text(header)
    (tmp_path / "op_resolver.cc").write_text(source)
    subprocess.run([compiler, "-std=c++17", "-fsyntax-only", "-DTF_LITE_STATIC_MEMORY", "-I", str(tmp_path),
                    *[f"-I{p}" for p in includes], str(tmp_path / "op_resolver.cc")], check=True, timeout=300)
