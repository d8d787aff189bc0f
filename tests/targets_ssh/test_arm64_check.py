"""`litert-aarch64`: aarch64 LiteRT on the emulated board as a check runtime of `kit compress`.

Every artifact a recipe targets at aarch64 is run there over the test split and compared with the Keras model
and with x86 LiteRT; the report says where the two architectures differ. Without a board the recipe is
refused before any training, with how to build one.
"""
from __future__ import annotations


import numpy as np
import pytest

from kit.convert import check as checks
from tests.support.arm64_board import board_dir, digits_artifacts

BOARD, WHY_NO_BOARD = board_dir()
needs_board = pytest.mark.skipif(BOARD is None, reason=WHY_NO_BOARD)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    made, _, x_test = digits_artifacts(tmp_path_factory.mktemp("a64"), ("float32", "int8", "int8-sparse"))
    return made, x_test[:200].astype(np.float32)


@needs_board
def test_aarch64_computes_what_x86_computes_and_refuses_what_it_refuses(artifacts, monkeypatch):
    from kit.core.tflite_file import read_tflite

    monkeypatch.setenv("KIT_ARM64_BOARD", str(BOARD))
    made, x = artifacts
    for fmt, path in made.items():
        data = path.read_bytes()
        x86, arm = checks.check(data, x, None, None, ("litert", "litert-aarch64"), name=path.name)
        assert arm.runtime == "litert-aarch64" and arm.loads == x86.loads, (fmt, x86.error, arm.error)
        if not x86.loads:  # int8-sparse: XNNPACK refuses it on both architectures, each in the runtime's words
            assert "FULLY_CONNECTED" in arm.error and arm.litert_agreement is None, arm.error
            continue
        assert arm.samples == len(x) and arm.litert_agreement >= 0.99, (fmt, arm.litert_agreement)
        scale = read_tflite(data).tensor(read_tflite(data).outputs[0]).quantization
        tolerance = 2.5 * scale.scale if fmt == "int8" else 1e-5
        assert arm.litert_max_diff <= tolerance, (fmt, arm.litert_max_diff)
        # the comparison is with the other run, not with itself: LiteRT's own record carries none
        assert x86.litert_agreement is None and x86.litert_max_diff is None


@needs_board
def test_a_corrupt_model_is_a_recorded_refusal_not_a_crash(artifacts, monkeypatch):
    monkeypatch.setenv("KIT_ARM64_BOARD", str(BOARD))
    made, x = artifacts
    data = made["float32"].read_bytes()
    for broken in (data[:len(data) // 2], b"TFL3" + b"\x00" * 64):  # truncated; a header and nothing else
        (c,) = checks.check(broken, x[:4], None, None, ("litert-aarch64",))
        assert not c.loads and c.error, c


def test_a_recipe_targeting_aarch64_without_a_board_is_refused_before_training(tmp_path, monkeypatch, capsys):
    from kit.cli import main

    monkeypatch.setenv("KIT_ARM64_BOARD", str(tmp_path / "no-board"))
    recipe = tmp_path / "r.toml"
    recipe.write_text('name = "a64"\n[quantize]\nmode = ["int8"]\n[convert]\ntargets = ["litert", "litert-aarch64"]\n')
    out = tmp_path / "out"
    assert main(["compress", "lenet-300-100", "--recipe", str(recipe), "--data", "digits", "-o", str(out)]) != 0
    err = capsys.readouterr().err
    assert "litert-aarch64" in err and "kit board arm64" in err and str(tmp_path / "no-board") in err, err
    assert not (out / "lenet-300-100.h5").exists() and not (out / "manifest.json").exists()


@needs_board
@pytest.mark.slow
def test_a_recipe_targeting_aarch64_checks_ships_and_reports_on_it(digits_lenet, tmp_path, monkeypatch):
    from tests.support.recipes import compress_digits

    monkeypatch.setenv("KIT_ARM64_BOARD", str(BOARD))
    out, manifest = compress_digits(digits_lenet, tmp_path, 'name = "a64"\n[quantize]\nmode = ["int8", "float16"]\n'
                                                            '[convert]\ntargets = ["litert", "litert-aarch64"]\n')
    assert {a["format"] for a in manifest["artifacts"]} == {"int8", "float16"}
    for a in manifest["artifacts"]:
        by_runtime = {c["runtime"]: c for c in a["checks"]}
        arm = by_runtime["litert-aarch64"]
        assert arm["loads"] and arm["samples"] == by_runtime["litert"]["samples"] > 0
        assert arm["agreement"] >= 0.97 and arm["litert_agreement"] >= 0.99, arm
        assert a["format"] != "int8" or (a["shipped"] and "litert-aarch64" in a["reason"]), a["reason"]
    report = (out / "report.md").read_text()
    section = report.split("## Against LiteRT on x86", 1)[1].split("\n## ", 1)[0]
    assert "on litert-aarch64: top-1 agreement" in section and "largest output difference" in section, section
