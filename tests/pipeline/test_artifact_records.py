"""The one artifact record family: format names, the first correct runtime, the manifest's schema version and
its single writer (the budget search and the farm read it, never rewrite it)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from kit.core.artifact import Format, RuntimeCheck, correct_runtimes, first_correct, first_correct_runtime
from kit.core.errors import KitError
from kit.core.vocab import COMPILED, ENCODINGS, FORMAT_NAMES, MODE_PRECISION, PRECISIONS, QUANTIZE_MODES
from kit.convert.artifacts import Artifact
from kit.pipeline.manifest import SCHEMA_VERSION, entry_format, entry_path, load_manifest, write_manifest
from kit.recipe import parse_recipe


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_format_names_read_back(precision, encoding):
    f = Format(precision, encoding)
    assert f.name == precision + ("-sparse" if encoding == "sparse" else "")
    assert Format.parse(f.name) == f
    assert Format.of(precision, encoding == "sparse") == f
    assert f.name in FORMAT_NAMES


def test_format_vocabulary_refuses_unknown_words():
    assert len(set(FORMAT_NAMES)) == len(PRECISIONS) * len(ENCODINGS)
    for name in COMPILED:  # a compiled model has a name and no sparse variant
        assert Format.parse(name).name == name
        with pytest.raises(KitError):
            Format(name, "sparse")
    for bad in ("int9", "int8-dense", "sparse", "int8-sparse-sparse", ""):
        with pytest.raises(KitError, match="unknown artifact format"):
            Format.parse(bad)
    with pytest.raises(KitError, match="encoding"):
        Format("int8", "csr")
    assert set(MODE_PRECISION) == set(QUANTIZE_MODES) and set(MODE_PRECISION.values()) <= set(PRECISIONS)


def _checks() -> list[RuntimeCheck]:
    return [
        RuntimeCheck("litert", loads=False, error="failed to prepare"),
        RuntimeCheck("litert-builtin", loads=True, top1=0.91, problem="computes wrong results on litert-builtin"),
        RuntimeCheck("tflm", loads=True, top1=0.93),
    ]


def test_first_correct_runtime_skips_runtimes_that_refuse_or_miscompute():
    checks = _checks()
    assert first_correct_runtime(checks) == "tflm"
    assert first_correct(checks).top1 == 0.93
    assert first_correct_runtime(checks, exclude=("tflm",)) is None
    assert correct_runtimes(checks) == ["tflm"]
    checks[0] = RuntimeCheck("litert", loads=True, top1=0.95)
    assert first_correct_runtime(checks) == "litert"  # the order checked is the order of preference
    assert correct_runtimes(checks) == ["litert", "tflm"]
    assert correct_runtimes(checks, exclude=["litert"]) == ["tflm"]
    assert first_correct_runtime([]) is None


def _artifact(name: str, fmt: Format, checks: list[RuntimeCheck], path: str = "") -> Artifact:
    return Artifact(path=path, sha256="ab" * 32, bytes=1000, name=name, format=fmt, gzip_bytes=900, shipped=True,
                    reason="runs correctly on litert", checks=checks)


def test_artifact_accuracy_and_runtimes_use_the_first_correct_runtime():
    a = _artifact("int8-sparse", Format("int8", "sparse"), _checks())
    assert a.accuracy == 0.93 and a.runtimes == ["tflm"]
    assert _artifact("int8", Format("int8"), _checks()[:2]).accuracy is None


def _run(out: Path) -> SimpleNamespace:
    """What `write_manifest` reads of a compression run, without running one."""
    recipe = parse_recipe('name = "r"\n[quantize]\nmode = ["int8"]\n', "r.toml")
    return SimpleNamespace(
        out_dir=out, recipe=recipe, dataset="digits", keras_accuracy={"original": 0.9},
        baseline=_artifact("baseline-float32", Format("float32"), [RuntimeCheck("litert", True, top1=0.9)],
                           str(out / "baseline-float32.tflite")),
        artifacts=[_artifact("int8-sparse", Format("int8", "sparse"), _checks(), str(out / "int8-sparse.tflite"))],
        layer_sparsity={}, prune_plan=None, history=None, techniques={}, metrics={}, seconds={"total": 1.0},
        backed_off=[])


def test_manifest_has_a_schema_version_and_both_spellings_of_a_format(tmp_path):
    path = write_manifest(_run(tmp_path), "m")
    m = json.loads(path.read_text())
    assert m["schema_version"] == SCHEMA_VERSION == 1
    assert "budget" not in m
    a = m["artifacts"][0]
    assert (a["fmt"], a["sparse"], a["format"]) == ("int8", True, "int8-sparse")  # earlier readers keep working
    assert entry_format(a) == Format("int8", "sparse")
    for key in ("name", "path", "bytes", "gzip_bytes", "sha256", "shipped", "reason", "checks", "tensors",
                "weight_bytes", "graph_bytes"):
        assert key in a, key
    assert a["checks"][2] == {"runtime": "tflm", "loads": True, "error": None, "samples": 0, "top1": 0.93,
                              "top5": None, "agreement": None, "max_abs_error": None, "seconds": None,
                              "problem": None}
    assert load_manifest(tmp_path) == m


def test_load_manifest_reads_unversioned_and_refuses_newer_manifests(tmp_path):
    m = json.loads(write_manifest(_run(tmp_path), "m").read_text())
    old = {k: v for k, v in m.items() if k != "schema_version"}
    for a in old["artifacts"]:
        del a["format"]
    (tmp_path / "manifest.json").write_text(json.dumps(old))
    assert load_manifest(tmp_path) == old
    assert entry_format(old["artifacts"][0]) == Format("int8", "sparse")
    (tmp_path / "manifest.json").write_text(json.dumps({**m, "schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(KitError, match=f"schema version {SCHEMA_VERSION + 1}.*up to {SCHEMA_VERSION}"):
        load_manifest(tmp_path)
    with pytest.raises(KitError, match="has no manifest.json"):
        load_manifest(tmp_path / "elsewhere")


def test_the_budget_section_goes_through_the_one_writer(tmp_path):
    section = {"file": "budget.json", "budget": "accuracy-drop=1", "objective": "size",
               "per_layer_sparsity": {"fc1": 0.5}, "validation": "last 20%"}
    m = json.loads(write_manifest(_run(tmp_path), "m", section).read_text())
    assert m["budget"] == section


def test_budget_results_leave_the_manifest_alone(tmp_path):
    from kit.search.budget import ArtifactOutcome, Budget, BudgetResult, _write

    manifest = write_manifest(_run(tmp_path), "m")
    before = manifest.read_bytes()
    recipe = parse_recipe('name = "r"\n[prune]\nfinal_sparsity = 0.5\n', "r.toml")
    outcome = ArtifactOutcome(str(tmp_path / "int8-sparse.tflite"), "ab" * 32, 500, "int8-sparse",
                              Format("int8", "sparse"), "litert", 0.9, 0.5, 0.89, 0.4, val_bound=0.8)
    result = BudgetResult(Budget(1.0), "size", tmp_path, "last 20%", {"fc1": 0.5}, {"fc1": 100}, recipe, None,
                          1000, 0.9, 0.9, None, [outcome], [], [], None)
    written = _write(result)
    assert manifest.read_bytes() == before
    saved = json.loads(written.read_text())
    assert saved["artifacts"][0]["format"] == "int8-sparse" and saved["artifacts"][0]["val_bound"] == 0.8
    assert (tmp_path / "budget.md").is_file()


def test_farm_reads_a_manifest_written_elsewhere_without_rewriting_it(tmp_path, tiny_tflite):
    """A worker compressed in its own temporary folder: its paths are gone, the files are in the run folder."""
    from kit.farm.artifacts import from_manifest

    out = tmp_path / "run"
    (out / "rejected").mkdir(parents=True)
    worker = Path("/nonexistent-worker/out")
    run = _run(worker)
    run.baseline.path = str(worker / "baseline-float32.tflite")
    run.artifacts.append(_artifact("float32-sparse", Format("float32", "sparse"), _checks()[:1],
                                   str(worker / "rejected" / "float32-sparse.tflite")))
    run.artifacts[-1].shipped = False
    run.out_dir = out
    manifest = write_manifest(run, "m")
    for name in ("baseline-float32", "int8-sparse", "rejected/float32-sparse"):
        shutil.copy(tiny_tflite, out / f"{name}.tflite")
    before = manifest.read_bytes()

    entries = from_manifest(load_manifest(out), out, "m")
    assert manifest.read_bytes() == before
    assert [e.name for e in entries] == ["baseline-float32", "int8-sparse"]  # shipped ones only
    assert [Path(e.path) for e in entries] == [(out / "baseline-float32.tflite").resolve(),
                                               (out / "int8-sparse.tflite").resolve()]
    int8 = entries[1]
    assert int8.format == Format("int8", "sparse")  # as the manifest says, not as the stand-in file looks
    assert int8.accuracy == 0.93 and int8.accuracy_source == "top-1 on the test split, tflm on the host"
    assert int8.host_problem("litert-builtin") and int8.host_problem("tflm") is None
    assert int8.recipe == "r" and entries[0].recipe is None
    rejected = load_manifest(out)["artifacts"][1]
    assert entry_path(rejected, out) == out / "rejected" / "float32-sparse.tflite"
