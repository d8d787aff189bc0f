"""Farm artifacts of models that are not classifiers carry their task's figure (MSE, ROC AUC) from the compression
manifest, and the selection and the HTML report show it by name where a classifier shows top-1; never a top-1 of 0%
or an empty accuracy for them."""
from __future__ import annotations

import re

from kit.commands.run import _choices_table
from kit.farm.artifacts import from_manifest
from kit.farm.choose import Candidate, ClassChoice, _rank
from kit.report.html import _class_plots, _figure_cell, _winners
from tests.support.shared import shared_file

#: hello_world predicts sin(x): a one-output regression model, in float32 and int8
FLOAT, INT8 = "models/tflm-examples/hello_world_float.tflite", "models/tflm-examples/hello_world_int8.tflite"


def _check(runtime: str, **figures) -> dict:
    return {"runtime": runtime, "loads": True, "samples": 100, "top1": None, "top5": None, "agreement": None,
            "max_abs_error": 0.01, **figures}


def _manifest(task: dict | None, baseline_checks: list[dict], int8_checks: list[dict]) -> dict:
    manifest = {"recipe": {"name": "post"}, "recipe_source": "[quantize]\n",
                "baseline": {"name": "baseline-float32", "path": str(shared_file(FLOAT)), "format": "float32",
                             "shipped": True, "checks": baseline_checks},
                "artifacts": [{"name": "int8", "path": str(shared_file(INT8)), "format": "int8", "shipped": True,
                               "checks": int8_checks}]}
    if task is not None:
        manifest["task"] = task
    return manifest


def _entries(task: str | None, **figures):
    t = None if task is None else {"name": task, "how": "declared"}
    manifest = _manifest(t, [_check("litert", task=task, **figures)],
                         [_check("litert", task=task, **{k: v * 1.1 for k, v in figures.items()})])
    return from_manifest(manifest, shared_file(INT8).parent, "sine")


def test_a_regression_artifact_carries_its_mse_instead_of_an_accuracy():
    base, int8 = _entries("regression", mse=0.0123)
    assert base.accuracy is None and int8.accuracy is None and int8.accuracy_source is None
    assert (base.task, base.figure, base.figure_value) == ("regression", "mse", 0.0123)
    assert base.score_text() == "MSE 0.0123" and int8.score_text() == "MSE 0.01353"
    cell = _figure_cell(base)
    assert "MSE 0.0123" in cell and "%" not in cell and "data-v='0.0123'" in cell
    # an autoencoder with anomaly labels is scored by its ROC AUC, by name
    (ae, _) = _entries("autoencoder", mse=0.02, auc=0.8)
    assert ae.score() == ("auc", 0.8) and ae.score_text() == "ROC AUC 0.800"
    # a manifest from before tasks is a classifier's: its top-1 is its accuracy, as before
    (old, _) = _entries(None, top1=0.9)
    assert old.classifier and old.accuracy == 0.9 and old.score_text() == "accuracy 90.00%"
    assert _figure_cell(old) == "<td class='num'>90.00%</td>"
    # an entry written to run.json and read back keeps its figure
    from kit.farm.artifacts import ArtifactEntry

    again = ArtifactEntry.from_dict(base.to_dict())
    assert again.score_text() == "MSE 0.0123" and not again.classifier


def _choice(entries, latencies) -> ClassChoice:
    cands = [Candidate(a, latency_us=us, measured_latency_us=us, measured_on=["host-0"])
             for a, us in zip(entries, latencies)]
    winner = min(cands, key=_rank("accuracy"))
    return ClassChoice("host", ["host-0"], {}, "accuracy", winner, cands)


def test_selection_and_report_rank_and_name_the_task_figure():
    base, int8 = _entries("regression", mse=0.0123)
    # the float model has the lower MSE: objective "accuracy" picks it, though the int8 one is faster
    choice = _choice([int8, base], [50.0, 80.0])
    assert choice.winner.artifact is base
    assert choice.winner.to_dict()["figure"] == "mse" and choice.winner.to_dict()["figure_value"] == 0.0123
    row = _winners([choice])
    assert "MSE 0.0123)" in row and "accuracy -" not in row and "%" not in row
    plots = _class_plots(choice, {base.sha256: "#111111", int8.sha256: "#222222"})
    assert "MSE (lower is better)" in plots and "accuracy (%)" not in plots and "no accuracy figures" not in plots
    assert "MSE 0.01353" in plots  # the tooltip of the int8 point
    # both points are on the front: the int8 one is faster, the float one has the lower MSE
    filled = re.findall(r"<circle cx='[\d.]+' cy='[\d.]+' r='5' fill='#(\w+)'", plots)
    assert sorted(filled[-2:]) == ["111111", "222222"]
    # `kit run`'s table of winners names the figure where a classifier's top-1 would be
    table = _choices_table([choice])
    assert "MSE 0.0123" in table and "%" not in table
