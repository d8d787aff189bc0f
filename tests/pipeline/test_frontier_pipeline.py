"""The frontier in a real run: every candidate timed on LiteRT, only the frontier ships, the report and manifest
say which is the default and why the others do not ship (real converter, LiteRT and a tiny model on digits)."""
import json

import pytest

import kit  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from kit.convert.artifacts import storage_summary
from kit.convert.frontier import LATENCY_TIE, LATENCY_TIE_US, frontier, point_of
from kit.core.tflite_file import read_tflite
from kit.recipe import parse_recipe

#: pruned to 10%: too little for the sparse encoding to pay, so each sparse file is the dense one plus its
#: sparsity metadata, computes the same and can only lose to it
RECIPE = """
[prune]
schedule = "constant"
final_sparsity = 0.1
[finetune]
epochs = 1
batch_size = 256
[convert]
max_accuracy_drop = 100
objective = "size"
[metrics]
samples = 100
noise_sigmas = [0.1]
shifts = []
latency_runs = 0
"""


#: the one run every test of the frontier and of split names reads (test_split_names imports the fixture)
_RUN: list = []


@pytest.fixture(scope="session")
def frontier_run(digits, tmp_path_factory):
    if not _RUN:
        _RUN.append(_compress(digits, tmp_path_factory))
    return _RUN[0]


def _compress(digits, tmp_path_factory):
    import tf_keras as keras

    from kit.pipeline.compress import compress

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.InputLayer((64,)), keras.layers.Dense(32, activation="relu", name="fc"),
                              keras.layers.Dense(10, name="logits")])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(digits.x_train, digits.y_train, epochs=3, verbose=0)
    out = tmp_path_factory.mktemp("frontier")
    lines: list[str] = []
    run = compress(model, parse_recipe(RECIPE, "frontier.toml"), digits, out, model_name="tiny",
                   log=lambda *a: lines.append(" ".join(map(str, a))))
    run.log = lines
    return run


@pytest.mark.slow
def test_every_candidate_is_timed_and_a_dominated_one_names_who_beats_it(frontier_run):
    run = frontier_run
    arts = {a.name: a for a in run.artifacts}
    assert set(arts) == {"float32", "float32-sparse"}
    candidates = [a for a in run.artifacts if a.latency_us is not None]
    assert [a.name for a in candidates] == ["float32", "float32-sparse"]
    for a in candidates:
        assert a.latency_us > 0 and a.latency_method.startswith("LiteRT Interpreter, XNNPACK (default delegate), "
                                                                "1 thread, median of ")
    sparse, dense = arts["float32-sparse"], arts["float32"]
    assert sparse.bytes >= dense.bytes  # nothing to gain from the encoding at 10%
    assert not sparse.shipped
    assert "than float32 (" in sparse.reason.split(",")[0], sparse.reason
    assert f"on disk ({sparse.bytes:,} vs {dense.bytes:,} B)" in sparse.reason
    assert "rejected" in sparse.path and dense.shipped and "rejected" not in dense.path
    # the shipped set is exactly the frontier of the recorded figures
    decision = frontier([point_of(a, "litert", "classification") for a in candidates], "size")
    assert [a.name for a in run.artifacts if a.shipped] == decision.shipped
    for name, why in decision.reasons.items():
        assert arts[name].reason == why and any(f"than {s} (" in why for s in decision.shipped)


@pytest.mark.slow
def test_the_objective_marks_one_default_and_the_manifest_and_report_say_why(frontier_run):
    run = frontier_run
    defaults = [a for a in run.artifacts if a.default]
    assert len(defaults) == 1 and defaults[0].shipped
    smallest = min((a for a in run.artifacts if a.shipped), key=lambda a: a.bytes)
    assert defaults[0] is smallest  # objective = "size"
    m = json.loads(run.manifest_path.read_text())
    assert m["frontier"]["objective"] == "size" and m["frontier"]["default"] == smallest.name
    assert m["frontier"]["why_default"] == "the only artifact on the frontier"
    assert m["frontier"]["dominated"] == {"float32-sparse": run.artifacts[1].reason}
    entry = {e["name"]: e for e in m["artifacts"]}[smallest.name]
    assert entry["default"] is True and entry["latency"]["median_us"] == smallest.latency_us
    report = (run.out_dir / "report.md").read_text()
    section = report.split("## Frontier", 1)[1].split("\n## ", 1)[0]
    assert f"Default: `{smallest.name}` (the only artifact on the frontier)" in section
    assert f"within {LATENCY_TIE:.0%} or {LATENCY_TIE_US:g} µs" in section
    for a in run.artifacts:
        if a.latency_us is not None:
            row = next(line for line in section.splitlines() if line.startswith(f"| {a.name} "))
            assert ("default" if a.default else "yes" if a.shipped else "no") in row
            stored = storage_summary(t.storage for t in read_tflite(a.path).tensors if t.constant)
            assert row.split("|")[2].strip() == stored  # the encoding the converter chose, read off the file
            assert a.shipped or a.reason[:40] in row
    assert storage_summary(["dense", "sparse block 1x16", "sparse CSR", "sparse block 1x16"]) == \
        "unstructured (CSR) x1, 1x16 blocks x2"
    assert any(f"default: {smallest.name} (the only" in line for line in run.log)
