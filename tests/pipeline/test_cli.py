import json

import pytest

from kit.cli import main
from kit.recipe import RECIPE_DIR


def test_inspect_prints_ops_and_tensors(tiny_tflite, capsys):
    assert main(["inspect", str(tiny_tflite)]) == 0
    out = capsys.readouterr().out
    assert "FULLY_CONNECTED" in out and "constant tensors" in out and "float32" in out


def test_inspect_json(tiny_tflite, capsys):
    assert main(["inspect", "--json", str(tiny_tflite)]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["size_bytes"] == tiny_tflite.stat().st_size and d["weight_bytes"] > 16 * 8 * 4


def test_profile_json(tiny_tflite, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["profile", str(tiny_tflite), "--runs", "20", "--json", str(out)]) == 0
    assert "median us" in capsys.readouterr().out
    (r,) = json.loads(out.read_text())
    assert r["latency"]["count"] == 20 and r["target"] == "local"


@pytest.mark.slow
def test_demo_on_digits(tmp_path, capsys):
    """The README's main command, on the small built-in data set."""
    # digits' LeNet-300-100 (64 inputs) loses more than 1 point at the default recipe's 94% sparsity
    recipe = tmp_path / "default-digits.toml"
    recipe.write_text((RECIPE_DIR / "default.toml").read_text() + "max_accuracy_drop = 10\n")
    assert main(["demo", "--data", "digits", "--recipe", str(recipe), "-o", str(tmp_path / "demo"),
                 "--runs", "20"]) == 0
    out = capsys.readouterr().out
    assert "float32-sparse" in out and "median us" in out
    m = json.loads((tmp_path / "demo" / "manifest.json").read_text())
    assert any(a["shipped"] and a["sparse"] for a in m["artifacts"])
