"""Every JSON the kit writes is strict: no NaN or Infinity, a note where a value was not finite."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from kit.core.jsonio import dumps, write_json


def _strict_load(text: str):
    def refuse(word):
        raise ValueError(f"non-strict JSON constant {word}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_becomes_null_with_a_note():
    text = dumps({"top1": math.nan, "latency": [1.5, math.inf], "nested": {"x": -math.inf}, "ok": 0.5})
    d = _strict_load(text)
    assert d["top1"] is None and "NaN" in d["top1_note"]
    assert d["latency"] == [1.5, None] and "item 1" in d["latency_note"] and "Infinity" in d["latency_note"]
    assert d["nested"]["x"] is None and "-Infinity" in d["nested"]["x_note"]
    assert d["ok"] == 0.5 and "ok_note" not in d


def test_numpy_values_and_paths():
    d = _strict_load(dumps({"a": np.float32(np.nan), "b": np.arange(3), "c": np.int64(7), "p": Path("x/y")}))
    assert d == {"a": None, "a_note": d["a_note"], "b": [0, 1, 2], "c": 7, "p": "x/y"}


def test_unserialisable_value_raises():
    with pytest.raises(TypeError, match="object"):
        dumps({"x": object()})


def test_write_json_leaves_old_file_when_value_is_bad(tmp_path):
    path = tmp_path / "m.json"
    write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        write_json(path, {"a": {1, 2}})
    assert _strict_load(path.read_text()) == {"a": 1}


def test_manifest_writer_is_strict(tmp_path):
    """write_manifest with a NaN accuracy: the file parses strictly and says what the value was."""
    from types import SimpleNamespace

    from kit.pipeline.manifest import write_manifest

    recipe = SimpleNamespace(to_dict=lambda: {"name": "r"}, source="")
    baseline = SimpleNamespace(to_dict=lambda: {"accuracy": math.nan})
    run = SimpleNamespace(out_dir=tmp_path, dataset="d", recipe=recipe, keras_accuracy={"original": math.inf},
                          baseline=baseline, artifacts=[], layer_sparsity={}, prune_plan=None, history=None,
                          techniques=[], metrics={}, seconds={"total": 1.0}, backed_off=[])
    path = write_manifest(run, "m")
    d = _strict_load(path.read_text())
    assert d["baseline"]["accuracy"] is None and "NaN" in d["baseline"]["accuracy_note"]
    assert d["keras_accuracy"]["original"] is None and "Infinity" in d["keras_accuracy"]["original_note"]


def test_inspect_json_is_strict(tmp_path, capfd, tiny_models):
    from kit.cli import main

    model = tmp_path / "m.tflite"
    model.write_bytes(tiny_models.int8)
    assert main(["inspect", str(model), "--json"]) == 0
    d = _strict_load(capfd.readouterr().out)
    assert d["size_bytes"] == len(tiny_models.int8)


def test_profile_result_with_a_non_finite_figure_round_trips():
    from kit.core.measurement import ArtifactRef, DeviceInfo, LatencyStats, ProfileResult, RunSettings

    result = ProfileResult(target="local", device=DeviceInfo(name="host"), artifact=ArtifactRef("m.tflite", "ab" * 32, 10),
                           settings=RunSettings(runs=3), latency=LatencyStats.from_samples([1.0, 2.0, 3.0]),
                           energy_uj_per_inference=math.nan)
    result.latency.std_us = math.inf
    d = _strict_load(result.to_json())
    assert d["energy_uj_per_inference"] is None and "NaN" in d["energy_uj_per_inference_note"]
    assert d["latency"]["std_us"] is None and "std_us_note" in d["latency"]
    back = ProfileResult.from_dict(d)
    assert back.energy_uj_per_inference is None and back.latency.std_us is None and back.latency.median_us == 2.0
