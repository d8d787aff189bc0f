"""Per-layer sensitivity on a real trained model (digits): rows, one-shot masks, structured rows, files, CLI."""
import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import kit  # noqa: F401
from kit.core.errors import DataError, KitError
from kit.recipe import PruneStep
from kit.search.sensitivity import analyze, load_sensitivity, magnitude_mask, split_validation

RATIOS = (0.5, 0.9, 0.99)


@pytest.fixture(scope="module")
def trained(held_out_lenet):
    return held_out_lenet


@pytest.fixture(scope="module")
def result(trained):
    data, split, model = trained
    return analyze(model, split.x, split.y, ratios=RATIOS, structured=True, calib=data.x_calib,
                   model_name="lenet", validation=split.description, log=lambda *a: None)


def test_validation_split_is_the_held_out_tail_of_the_training_data():
    from kit.data import load_data

    data = load_data("digits")
    split = split_validation(data, 0.2)
    n = len(data.x_train)
    assert len(split.x) + len(split.train.x_train) == n
    assert len(split.x) == n - int(n * 0.8)
    np.testing.assert_array_equal(split.x, data.x_train[int(n * 0.8):])
    np.testing.assert_array_equal(split.train.x_train, data.x_train[:int(n * 0.8)])
    np.testing.assert_array_equal(split.train.x_test, data.x_test)  # the test split is left alone
    for bad in (0.0, 0.5, 1.2):
        with pytest.raises(DataError):
            split_validation(data, bad)


def test_one_row_per_layer_and_ratio_with_zero_at_zero(result, trained):
    one_shot = [r for r in result.rows if r.method == "unstructured"]
    keys = [(r.layer, r.ratio) for r in one_shot]
    assert sorted(keys) == sorted((layer, ratio) for layer in ("fc1", "fc2", "logits") for ratio in (0.0, *RATIOS))
    for r in one_shot:
        assert r.removed == math.floor(r.ratio * r.params + 1e-9)
        if r.ratio == 0:
            assert r.drop == 0 and r.kl == pytest.approx(0, abs=1e-9)
            assert r.accuracy == pytest.approx(result.baseline_accuracy)
    fc1 = result.curve("fc1", "unstructured")
    assert fc1[-1].drop > fc1[1].drop  # 99% of fc1 costs more than 50%
    assert fc1[-1].kl > fc1[1].kl > 0
    _, split, model = trained
    baseline = np.mean(model.predict(split.x, verbose=0).argmax(1) == split.y)
    assert result.baseline_accuracy == pytest.approx(baseline)


def test_analysis_leaves_the_model_untouched(trained):
    data, split, model = trained
    before = [w.copy() for w in model.get_weights()]
    analyze(model, split.x, split.y, ratios=(0.9,), log=lambda *a: None)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_structured_rows_cover_removable_layers_only(result):
    structured = [r for r in result.rows if r.method == "structured"]
    assert {r.layer for r in structured} == {"fc1", "fc2"}  # the output layer's units must stay
    assert any("logits" in n and "no output channel" in n for n in result.notes)
    for layer in ("fc1", "fc2"):
        curve = result.curve(layer, "structured")
        assert [r.ratio for r in curve] == [0.0, *RATIOS]
        assert curve[0].drop == 0 and curve[0].removed == 0
        assert curve[1].removed > 0 and curve[-1].removed > curve[1].removed
    # removing 50% of fc1's units also removes half of fc2's input rows
    fc1 = result.curve("fc1", "structured")[1]
    assert fc1.removed == 150 * 64 + 150 + 150 * 100


def test_block_masks_remove_whole_blocks_in_the_keras_layout():
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(64, 300))  # Keras Dense kernel [in, out]
    mask = magnitude_mask(kernel, 0.75, (4, 1))  # runtime 1x4 = 4 consecutive inputs of one output
    blocks = mask.reshape(16, 4, 300)
    assert np.all(blocks.min(axis=1) == blocks.max(axis=1))  # every block all kept or all removed
    assert 1 - mask.mean() == pytest.approx(0.75, abs=1e-3)
    means = np.abs(kernel).reshape(16, 4, 300).mean(axis=1)
    kept = blocks[:, 0, :] == 1
    assert means[kept].min() >= means[~kept].max()
    partial = magnitude_mask(rng.normal(size=(10, 3)), 0.5, (4, 1))  # 10 rows: the last block holds 2
    assert partial.shape == (10, 3) and set(np.unique(partial)) <= {0.0, 1.0}


def test_block_granularity_follows_the_prune_step(trained):
    _, split, model = trained
    r = analyze(model, split.x, split.y, ratios=(0.9,), prune_step=PruneStep(granularity="block", block=(1, 4)),
                log=lambda *a: None)
    assert {row.method for row in r.rows} == {"block 1x4"}
    skipped = analyze(model, split.x, split.y, ratios=(0.9,), prune_step=PruneStep(skip=["logits"]),
                      log=lambda *a: None)
    assert "logits" not in skipped.layers() and any("logits" in n for n in skipped.notes)


def test_writes_csv_markdown_json_and_a_plot_per_layer(result, tmp_path):
    paths = result.write(tmp_path)
    with open(paths["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(result.rows)
    assert {"layer", "method", "ratio", "drop", "kl"} <= set(rows[0])
    md = paths["markdown"].read_text()
    assert "| fc1" in md and "![fc2](plots/fc2.png)" in md
    for layer in ("fc1", "fc2", "logits"):
        png = tmp_path / "plots" / f"{layer}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = load_sensitivity(tmp_path)
    assert again.rows == result.rows and again.baseline_accuracy == result.baseline_accuracy
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(KitError):
        load_sensitivity(tmp_path / "bad.json")


def test_latency_is_measured_on_the_target(trained):
    data, split, model = trained
    r = analyze(model, split.x, split.y, ratios=(0.9,), prune_step=PruneStep(skip=["fc2", "logits"]),
                target="local", calib=data.x_calib, runs=50, log=lambda *a: None)
    assert r.baseline_latency_us > 0 and r.target == "local"
    for row in r.rows:
        assert row.latency_us > 0
        assert row.gain_us == pytest.approx(r.baseline_latency_us - row.latency_us)


def test_bad_ratios_are_refused(trained):
    _, split, model = trained
    with pytest.raises(KitError, match="ratios"):
        analyze(model, split.x, split.y, ratios=(0.5, 1.0), log=lambda *a: None)


@pytest.mark.slow
def test_cli_end_to_end(tmp_path):
    out = tmp_path / "sens"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-m", "kit", "sensitivity", "lenet-300-100", "--data", "digits",
                           "--ratios", "0.5,0.95", "--structured", "--epochs", "5", "-o", str(out)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "validation: last" in proc.stdout and "fc1" in proc.stdout
    with open(out / "sensitivity.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * 3 + 2 * 3  # one-shot: 3 layers x (0, 50, 95%); structured: fc1, fc2
    assert json.loads((out / "sensitivity.json").read_text())["model"] == "lenet-300-100"
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["fc1.png", "fc2.png", "logits.png"]


def test_cli_reports_bad_input(capsys, tmp_path):
    from kit.cli import main

    assert main(["sensitivity", "lenet-300-100", "--data", "digits", "--ratios", "0.5,x", "-o", str(tmp_path)]) == 2
    assert "error: --ratios" in capsys.readouterr().err
    assert main(["sensitivity", str(tmp_path / "missing.h5"), "--data", "digits"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (Path(tmp_path) / "sensitivity.csv").exists()


def test_cli_with_a_target_measures_latency_and_writes_the_latency_plan(trained, tmp_path, capsys):
    from kit.cli import main

    _, _, model = trained
    model.save(tmp_path / "lenet.h5")
    out = tmp_path / "sens"
    assert main(["sensitivity", str(tmp_path / "lenet.h5"), "--data", "digits", "--ratios", "0.9", "--granularity",
                 "block", "--target", "local", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "sparse kernels for float32 on litert" in text
    with open(out / "sensitivity.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * 2 and all(float(r["latency_us"]) > 0 for r in rows)
    plan = json.loads((out / "latency_plan.json").read_text())
    assert [(s["layer"], s["block"]) for s in plan["layers"]] == [("fc1", [1, 4]), ("fc2", [1, 4]), ("logits", [1, 4])]
