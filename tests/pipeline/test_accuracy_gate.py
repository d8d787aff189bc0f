"""The accuracy gate: nothing ships that lost more top-1 than the recipe allows against the original model."""
from __future__ import annotations

import json

import pytest

from kit.convert.artifacts import AccuracyGate, Artifact
from kit.core.artifact import Format, RuntimeCheck
from kit.recipe import parse_recipe
from tests.support.models import copy_model


def _artifact(name: str, checks: list[RuntimeCheck]) -> Artifact:
    return Artifact(path="", sha256="0" * 64, bytes=1000, name=name, format=Format("int8", "dense"), gzip_bytes=900,
                    shipped=True, reason="", checks=checks)


def _check(runtime: str, top1: float | None, loads: bool = True) -> RuntimeCheck:
    return RuntimeCheck(runtime=runtime, loads=loads, error=None if loads else "refused", top1=top1, top5=None,
                        agreement=1.0, max_abs_error=0.0)


def test_gate_compares_each_runtime_with_the_original_on_that_runtime():
    baseline = _artifact("baseline-float32", [_check("litert", 0.95), _check("tflm", 0.90)])
    gate = AccuracyGate(baseline, original_keras=0.96, max_drop=1.0)
    ok = _artifact("int8", [_check("litert", 0.945), _check("tflm", 0.895)])
    assert gate.problem(ok, ("litert", "tflm")) is None  # 0.5 points each: within 1 point
    worse = _artifact("int8", [_check("litert", 0.945), _check("tflm", 0.87)])
    problem = gate.problem(worse, ("litert", "tflm"))
    assert problem is not None and "3.00 points" in problem and "tflm" in problem and "87.00%" in problem
    assert gate.problem(worse, ("litert",)) is None  # tflm is not a target of this recipe


def test_gate_falls_back_to_the_keras_original_where_the_baseline_does_not_run():
    baseline = _artifact("baseline-float32", [_check("litert", 0.95), _check("tflm", None, loads=False)])
    gate = AccuracyGate(baseline, original_keras=0.96, max_drop=0.5)
    a = _artifact("int8", [_check("tflm", 0.95)])
    problem = gate.problem(a, ("tflm",))
    assert problem is not None and "the original Keras model" in problem and "1.00 points" in problem


def test_max_accuracy_drop_is_a_recipe_key_with_a_range():
    assert parse_recipe("[convert]\nmax_accuracy_drop = 0.25\n").convert.max_accuracy_drop == 0.25
    assert parse_recipe("").convert.max_accuracy_drop == 1.0
    from tests.support.recipes import assert_recipe_error

    assert_recipe_error("[convert]\nmax_accuracy_drop = -1\n", 2, ["max_accuracy_drop", "0 to 100"])


COLLAPSE = """
name = "collapse"
[prune]
schedule = "constant"
final_sparsity = 0.98
[finetune]
epochs = 1
learning_rate = 0.05
[quantize]
mode = ["none", "int8"]
"""


@pytest.mark.slow
def test_a_model_that_collapsed_in_compression_never_ships(digits_lenet, digits, tmp_path):
    """98% sparsity after one epoch at a high learning rate wrecks the model; its artifacts still agree with the
    wrecked Keras model they came from, so only the comparison with the original can stop them."""
    from kit.pipeline.compress import compress

    run = compress(copy_model(digits_lenet), parse_recipe(COLLAPSE, "collapse.toml"), digits, tmp_path,
                   model_name="lenet", log=lambda *a: None)
    assert run.keras_accuracy["compressed"] < run.keras_accuracy["original"] - 0.05
    assert run.artifacts and not run.shipped
    float32 = next(a for a in run.artifacts if a.format.name == "float32")
    assert float32.check_on("litert").agreement >= 0.99  # it computes what the wrecked Keras model computes
    assert float32.reason.startswith("loses") and "against the original model on litert" in float32.reason
    assert "lost more top-1 than the budget" in run.steps["convert"].advice
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert not any(a["shipped"] for a in manifest["artifacts"])
    assert [p.name for p in tmp_path.glob("*.tflite")] == ["baseline-float32.tflite"]
    assert (tmp_path / "rejected" / "float32.tflite").is_file()

    relaxed = parse_recipe(COLLAPSE + "[convert]\nmax_accuracy_drop = 100\n", "collapse.toml")
    again = compress(copy_model(digits_lenet), relaxed, digits, tmp_path / "relaxed", model_name="lenet",
                     log=lambda *a: None)
    assert again.shipped  # the same artifacts pass when the recipe allows any loss


@pytest.mark.slow
def test_cli_says_nothing_shipped_and_exits_non_zero(digits_lenet, tmp_path, capsys):
    from kit.cli import main

    model = tmp_path / "lenet.h5"
    copy_model(digits_lenet).save(model)
    recipe = tmp_path / "collapse.toml"
    recipe.write_text(COLLAPSE)
    code = main(["compress", str(model), "--recipe", str(recipe), "--data", "digits", "-o", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 1
    assert "nothing shipped:" in out and "max_accuracy_drop" in out
