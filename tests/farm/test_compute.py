"""`kit run` with compression: a real pipeline run in a worker process (and on a local Ray instance), its
artifacts profiled on the host and an emulated board, reused on a second run."""
from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import shutil

import pytest

from .farm_fixtures import emulators, farm_toml
from kit.cli import main
from kit.farm.compute import CompressJob, run_compress_jobs
from kit.farm.rundata import load_run
from kit.pipeline.manifest import entry_path

pytestmark = pytest.mark.slow  # compresses a trained model, with and without Ray

RECIPE = """
name = "quick"
[finetune]
epochs = 1
[quantize]
mode = ["none", "dynamic", "int8"]
"""
#: a second recipe on the same built-in model: it must start from the baseline the first job trained
RECIPE_B = """
name = "quick-b"
[quantize]
mode = ["int8"]
"""
#: sparse int8 only: the emulated boards load dense int8, so no selected device can use what it makes
SPARSE_ONLY = """
name = "sparse-only"
[prune]
final_sparsity = 0.5
[quantize]
mode = ["int8"]
[convert]
sparse = "on"
"""

PIPELINE = """
name = "compressed"
farm = "farm.toml"
out = "run"
[model]
path = "lenet-300-100"
data = "digits"
recipes = ["quick.toml", "quick-b.toml"]
teacher_epochs = 2
eval_samples = 300
[settings]
runs = 5
warmup = 1
[compute]
distribute = "mirrored"
[constraints]
min_accuracy = 0.5
"""

MCU_ONLY = """
[profiles.emulated-m4]
kind = "mcu"
formats = ["int8"]

[[device]]
name = "mcu-0"
uri = "{uri}"
profile = "emulated-m4"
class = "mcu"
"""

SKIPPED_RECIPE = """
name = "skip"
farm = "farm.toml"
out = "run"
[model]
path = "lenet-300-100"
data = "digits"
recipes = ["sparse-only.toml"]
[[artifact]]
path = "{hello}"
[settings]
runs = 3
warmup = 1
"""


@pytest.fixture(scope="module")
def compressed_run(tmp_path_factory, shared_dir):
    d = tmp_path_factory.mktemp("compress")
    (d / "quick.toml").write_text(RECIPE)
    (d / "quick-b.toml").write_text(RECIPE_B)
    (d / "pipeline.toml").write_text(PIPELINE)
    hello = shared_dir / "models/tflm-examples/hello_world_int8.tflite"
    with emulators(1, hello) as boards:
        (d / "farm.toml").write_text(farm_toml([b.uri for b in boards], local=1))
        first = _kit_run(d)
        _copy_run(d / "run", d / "baseline")
        second = _kit_run(d, "--baseline", str(d / "baseline"), "--fail-on-regression", "50")
    return d, first, second


def _copy_run(src, dst) -> None:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("compress"))
    plan = json.loads((dst / "run.json").read_text())
    plan["store"] = str(dst / "results.db")
    (dst / "run.json").write_text(json.dumps(plan))


def _kit_run(d, *extra: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(["run", str(d / "pipeline.toml"), "--quiet", *extra])
    return rc, out.getvalue()


def test_compresses_once_and_profiles_each_format_where_it_loads(compressed_run):
    d, (rc, out), _ = compressed_run
    assert rc == 0, out
    assert "fine-tuning under tf.distribute.MirroredStrategy with 1 replica(s)" in out
    run = load_run(d / "run")
    names = {a.label.split("/", 1)[1]: a for a in run.artifacts.values()}
    assert set(names) == {"baseline-float32", "quick/float32", "quick/dynamic", "quick/int8", "quick-b/int8"}
    assert all(a.accuracy is not None and a.accuracy > 0.5 for a in names.values())
    int8 = names["quick/int8"]
    assert int8.recipe == "quick" and int8.recipe_text.strip().startswith('name = "quick"')
    measured = {(m["device"], run.artifacts[m["artifact_sha256"]].label) for m in run.ok()}
    # the board loads int8 only; the host loads every format
    assert {n for dev, n in measured if dev == "mcu-0"} == {"lenet-300-100/quick/int8", "lenet-300-100/quick-b/int8"}
    assert {n for dev, n in measured if dev == "host-0"} == {a.label for a in run.artifacts.values()}
    not_planned = {(n["name"].split("/")[-1], n["class"]) for n in run.plan["not_planned"]}
    assert ("dynamic", "mcu") in not_planned and ("baseline-float32", "mcu") in not_planned
    choice = {c["class"]: c for c in json.loads((d / "run" / "selection.json").read_text())}
    assert choice["mcu"]["winner"]["name"] == "int8"


def test_one_baseline_per_model_trained_once_for_every_recipe(compressed_run):
    d, (rc, out), _ = compressed_run
    assert rc == 0, out
    assert out.count("training the built-in lenet-300-100 baseline") == 1
    assert "the other 1 recipe(s) start from the baseline trained once" in out
    run = load_run(d / "run")
    labels = [a.label for a in run.artifacts.values()]
    assert len(labels) == len(set(labels)) and sum("baseline" in x for x in labels) == 1
    # both recipes converted the same trained weights: one and the same float32 baseline file
    baselines = {json.loads((d / "run" / "compress" / r / "manifest.json").read_text())["baseline"]["sha256"]
                 for r in ("quick", "quick-b")}
    assert len(baselines) == 1 and baselines == {a.sha256 for a in run.artifacts.values() if a.recipe is None}


def test_a_recipe_no_selected_device_can_use_is_not_trained(tmp_path, shared_dir):
    hello = shared_dir / "models/tflm-examples/hello_world_int8.tflite"
    (tmp_path / "sparse-only.toml").write_text(SPARSE_ONLY)
    (tmp_path / "pipeline.toml").write_text(SKIPPED_RECIPE.format(hello=hello))
    with emulators(1, hello) as boards:
        (tmp_path / "farm.toml").write_text(MCU_ONLY.format(uri=boards[0].uri))
        rc, out = _kit_run(tmp_path)
    assert rc == 0, out
    assert "recipe sparse-only makes int8-sparse models, which no selected device loads" in out
    assert not (tmp_path / "run" / "compress").exists() and "training" not in out
    run = load_run(tmp_path / "run")
    assert [a.name for a in run.artifacts.values()] == ["hello_world_int8"] and len(run.ok()) == 1
    assert any("sparse-only" in n["name"] and "not compressed" in n["reason"] for n in run.plan["not_planned"])


def test_a_second_run_reuses_the_compression_and_the_measurements(compressed_run):
    d, (_, first), (rc, out) = compressed_run
    assert rc == 0
    assert "done before, reusing" in out and "already measured, running 0" in out
    assert "compress: 1 job(s)" in first and "compress: 1 job(s)" not in out
    # compared with a copy of the first run: the same measurements, no regression
    assert "+0.0%" in out and "REGRESSED" not in out


@pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                    reason="ray is not installed (optional: pip install 'prunekit[ray]')")
def test_ray_backend_on_a_local_instance(tmp_path):
    import ray

    (tmp_path / "quick.toml").write_text('name = "quick"\n[quantize]\nmode = ["int8"]\n')
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        job = CompressJob(model="lenet-300-100", recipe=str(tmp_path / "quick.toml"), data="digits",
                          out_dir=str(tmp_path / "out"), model_name="lenet", teacher_epochs=1, eval_samples=200)
        lines: list[str] = []
        [out] = run_compress_jobs([job], backend="ray", log=lines.append)
    finally:
        ray.shutdown()
    manifest = json.loads((out / "manifest.json").read_text())
    int8 = next(a for a in manifest["artifacts"] if a["name"] == "int8")
    path = entry_path(int8, out)  # the manifest keeps the worker's paths; they resolve against the output folder
    assert int8["shipped"] and path.is_file()
    assert path.stat().st_size == int8["bytes"]
    assert any("ray backend" in line for line in lines)
