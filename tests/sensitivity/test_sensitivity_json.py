"""`kit sensitivity --json`: the run's result as one strict JSON document on stdout, progress on stderr; and the
analysis refuses models whose figures would not be top-1 and class scores."""
from __future__ import annotations

import json

import numpy as np
import pytest


def _strict(text: str):
    def refuse(name):
        raise ValueError(f"non-strict JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_json_prints_the_result_alone_on_stdout(held_out_lenet, tmp_path, capsys):
    from kit.cli import main

    _, split, model = held_out_lenet
    model.save(tmp_path / "lenet.h5")
    out = tmp_path / "sens"
    assert main(["sensitivity", str(tmp_path / "lenet.h5"), "--data", "digits", "--ratios", "0.5,0.99", "--json",
                 "-o", str(out)]) == 0
    captured = capsys.readouterr()
    doc = _strict(captured.out)  # the whole of stdout is the one document
    assert doc["model"] == "lenet.h5" and doc["validation"] == split.description
    assert doc == {**_strict((out / "sensitivity.json").read_text()), "files": doc["files"], "latency_plan": None}
    assert [(r["layer"], r["ratio"]) for r in doc["rows"]] == [
        (layer, ratio) for layer in ("fc1", "fc2", "logits") for ratio in (0.0, 0.5, 0.99)]
    baseline = float(np.mean(model.predict(split.x, verbose=0).argmax(axis=1) == split.y))
    assert doc["baseline_accuracy"] == pytest.approx(baseline)
    assert doc["files"]["csv"] == str(out / "sensitivity.csv") and (out / "plots" / "fc1.png").is_file()
    assert "validation: last" in captured.err and "fc1" in captured.err  # the person's view went to stderr


def test_a_regression_model_is_refused_with_its_task(tmp_path, capsys):
    import tf_keras as keras

    from kit.cli import main

    rng = np.random.default_rng(0)
    x = rng.random((40, 4), np.float32)
    y = x @ np.array([1.0, -2.0, 0.5, 0.25], np.float32)
    np.savez(tmp_path / "reg.npz", x_train=x[:30], y_train=y[:30], x_test=x[30:], y_test=y[30:])
    keras.Sequential([keras.layers.Input((4,)), keras.layers.Dense(8), keras.layers.Dense(1)]).save(tmp_path / "r.h5")
    assert main(["sensitivity", str(tmp_path / "r.h5"), "--data", str(tmp_path / "reg.npz"), "--json",
                 "-o", str(tmp_path / "sens")]) == 2
    captured = capsys.readouterr()
    assert "r.h5 is a regression model (detected" in captured.err and "by top-1" in captured.err
    assert "hint:" in captured.err
    assert captured.out == "" and not (tmp_path / "sens" / "sensitivity.json").exists()
