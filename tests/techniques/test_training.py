"""Regularisation, soft, learned and iterative pruning on real data (scikit-learn digits, LeNet-300-100),
alone and through `compress` recipes."""
import json

import numpy as np
import pytest

import kit  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from kit.techniques import prune as pruning
from kit.techniques.finetune import fit, steps_per_epoch
from kit.techniques.masking import kernel_targets, prunable_kernels
from kit.pipeline.compress import compress
from kit.recipe import FinetuneStep, PruneStep, parse_recipe
from tests.support.models import copy_model


@pytest.fixture(scope="module")
def baseline(digits_lenet):
    return copy_model(digits_lenet)


def _acc(model, data) -> float:
    return float(np.mean(model.predict(data.x_test, verbose=0).argmax(1) == data.y_test))


def test_l1_raises_near_zero_fraction_over_plain_training(baseline, digits):
    from kit.techniques.regularize import near_zero_fraction, regularize

    step = FinetuneStep(epochs=3)
    plain = pruning.private_copy(baseline)
    fit(plain, digits.x_train, digits.y_train, step, progress=False)
    plain_w = {k: v.numpy() for k, v in prunable_kernels(plain).items()}
    l1_model, report = regularize(baseline, "l1", digits.x_train, digits.y_train, step, l1=1e-4, epochs=3,
                                  threshold=1e-2)
    l1_w = {k: v.numpy() for k, v in prunable_kernels(l1_model).items()}
    assert near_zero_fraction(l1_w, 1e-2) > near_zero_fraction(plain_w, 1e-2) + 0.1
    assert report.near_zero_after == pytest.approx(near_zero_fraction(l1_w, 1e-2))
    assert report.near_zero_after > report.near_zero_before
    assert sum(report.histogram["after"]) == sum(w.size for w in l1_w.values())
    assert _acc(l1_model, digits) > 0.9
    assert not baseline.losses and not l1_model.losses  # the penalty is gone from what is returned


def test_group_lasso_shrinks_whole_units(baseline, digits):
    from kit.techniques.regularize import regularize, unit_norms

    step = FinetuneStep(epochs=3)
    plain = pruning.private_copy(baseline)
    fit(plain, digits.x_train, digits.y_train, step, progress=False)
    grouped, report = regularize(baseline, "group_lasso", digits.x_train, digits.y_train, step, group=2e-3, epochs=3)
    for key in ("fc1/kernel", "fc2/kernel"):
        before = unit_norms(prunable_kernels(plain)[key].numpy())
        after = unit_norms(prunable_kernels(grouped)[key].numpy())
        assert np.median(after) < 0.8 * np.median(before)
        assert report.unit_norms[key] == pytest.approx(after.round(6).tolist(), abs=1e-5)


def test_soft_pruning_lets_masked_weights_return(baseline, digits):
    from kit.techniques.soft_prune import soft_prune

    ft = FinetuneStep(epochs=6)
    spe = steps_per_epoch(len(digits.x_train), ft)
    plan = pruning.plan(baseline, PruneStep(final_sparsity=0.9), spe, ft.epochs)
    work = pruning.private_copy(baseline)
    kernels = prunable_kernels(work)
    masks, report, history = soft_prune(work, kernels, kernel_targets(kernels, plan), digits.x_train, digits.y_train,
                                        ft, plan.begin_step, plan.end_step, plan.frequency)
    before_final = [u["revived"] for u in report.timeline[:-1]]
    assert before_final[-1] > 0, "no masked weight ever came back before the final mask"
    assert report.revived >= before_final[-1] and report.revived_in_final > 0
    for key, var in kernels.items():
        w = var.numpy()
        assert np.all(w[~masks[key]] == 0)
        assert np.mean(w == 0) == pytest.approx(0.9, abs=0.005)
    assert history.sparsity[-1] == pytest.approx(0.9, abs=0.005)
    assert _acc(work, digits) > 0.85


@pytest.mark.parametrize("gate, scope", [("ste", "layer"), ("sigmoid", "layer"), ("ste", "global")])
def test_learned_masks_reach_requested_sparsity(baseline, digits, gate, scope):
    from kit.techniques.learned_masks import learn_masks

    keys = list(prunable_kernels(baseline))
    before = [w.copy() for w in baseline.get_weights()]
    model, masks, report = learn_masks(baseline, {k: 0.9 for k in keys}, digits.x_train, digits.y_train, epochs=4,
                                       gate=gate, scope=scope)
    assert abs(report.learned_sparsity - 0.9) <= 0.02, report.timeline
    if scope == "layer":
        for k, s in report.layer_learned_sparsity.items():
            assert abs(s - 0.9) <= 0.02, (k, s)
    assert report.final_sparsity == pytest.approx(0.9, abs=1e-3)
    kernels = prunable_kernels(model)
    for k, m in masks.items():
        assert np.all(kernels[k].numpy()[~m] == 0)
    assert all(np.array_equal(a, b) for a, b in zip(before, baseline.get_weights()))  # the input is untouched
    assert _acc(model, digits) > 0.5


def test_learned_filter_masks_remove_whole_units_but_not_outputs(baseline, digits):
    from kit.techniques.learned_masks import learn_masks

    keys = list(prunable_kernels(baseline))
    model, masks, report = learn_masks(baseline, {k: 0.5 for k in keys}, digits.x_train, digits.y_train, epochs=3,
                                       granularity="filter")
    for k in ("fc1/kernel", "fc2/kernel"):
        m = masks[k]
        assert np.all(m.all(axis=0) | ~m.any(axis=0))  # each unit wholly kept or wholly removed
        assert (~m.any(axis=0)).mean() == pytest.approx(0.5, abs=0.01)
    logits = masks["logits/kernel"]
    assert logits.any(axis=0).all()  # every class output keeps weights


def test_iterative_cycles_are_nested_and_reach_target(baseline, digits):
    from kit.techniques.iterative import cycle_targets, iterative_prune

    assert cycle_targets(0.9, 3) == pytest.approx([1 - 0.1 ** (1 / 3), 1 - 0.1 ** (2 / 3), 0.9])
    work = pruning.private_copy(baseline)
    kernels = prunable_kernels(work)
    seen = []

    def log(line):
        seen.append({k: v.numpy() == 0 for k, v in kernels.items()})

    masks, report, history = iterative_prune(work, kernels, {k: 0.9 for k in kernels}, digits.x_train,
                                             digits.y_train, FinetuneStep(epochs=6), cycles=3, log=log)
    assert [r["sparsity"] for r in report.records] == pytest.approx(cycle_targets(0.9, 3), abs=0.002)
    for earlier, later in zip(seen, seen[1:]):
        for k in earlier:
            assert np.all(later[k][earlier[k]]), "a pruned weight came back between cycles"
    assert len(history.epoch) == 6 and report.epochs_per_cycle == [2, 2, 2]
    assert _acc(work, digits) > 0.8


def test_iterative_relative_threshold_prunes_under_a_fraction_of_layer_rms(baseline, digits):
    from kit.techniques.iterative import iterative_prune

    work = pruning.private_copy(baseline)
    kernels = prunable_kernels(work)
    w0 = {k: v.numpy().copy() for k, v in kernels.items()}
    masks, report, _ = iterative_prune(work, kernels, {k: 0.0 for k in kernels}, digits.x_train, digits.y_train,
                                       FinetuneStep(epochs=1), cycles=1, threshold=0.5, threshold_kind="relative")
    for k, w in w0.items():
        rms = np.sqrt(np.mean(w ** 2))
        assert np.array_equal(masks[k], np.abs(w) >= 0.5 * rms)


RECIPE_SOFT = """
[regularize]
kind = "elasticnet"
l1 = 3e-5
l2 = 1e-5
epochs = 2
[prune]
method = "soft"
final_sparsity = 0.85
[prune.layers.logits]
final_sparsity = 0.5
[finetune]
epochs = 5
[quantize]
mode = ["none", "int8"]
[metrics]
noise_sigmas = [0.1, 0.3]
shifts = [1]
latency_runs = 20
grid_g_per_kwh = 400
"""


def test_recipe_regularize_soft_with_metrics(baseline, digits, tmp_path):
    r = compress(baseline, parse_recipe(RECIPE_SOFT, "soft.toml"), digits, tmp_path, model_name="lenet",
                 log=lambda *a: None)
    m = json.loads(r.manifest_path.read_text())
    assert m["techniques"]["regularize"]["kind"] == "elasticnet"
    soft = m["techniques"]["soft"]  # revival depends on the run; test_soft_pruning_lets_masked_weights_return checks it
    assert 0 <= soft["revived_in_final"] <= soft["revived"] <= soft["ever_masked"] and soft["ever_masked"] > 0
    assert r.layer_sparsity["fc1/kernel"]["sparsity"] == pytest.approx(0.85, abs=0.005)
    assert r.layer_sparsity["logits/kernel"]["sparsity"] == pytest.approx(0.5, abs=0.005)
    metrics = m["metrics"]
    assert metrics["after"]["kernel_sparsity"] == pytest.approx(
        sum(v["params"] * v["sparsity"] for v in r.layer_sparsity.values())
        / sum(v["params"] for v in r.layer_sparsity.values()), abs=1e-6)
    assert metrics["after"]["effective_macs"] < 0.3 * metrics["after"]["macs"]
    assert set(metrics["robustness"]["noise"]) == {"sigma=0.1", "sigma=0.3"}
    assert "shift=1px" in metrics["robustness"]["shift"]
    shipped = [a.name for a in r.shipped]
    for name in ["baseline-float32", *shipped]:
        entry = metrics["compression"][name]
        assert entry["median_us"] > 0 and entry["fps"] == pytest.approx(1e6 / entry["median_us"])
        assert entry["energy_uj"] is None and entry["co2e_g_per_million"] is None  # the host has no meter
    best = min(r.shipped, key=lambda a: a.bytes)
    assert metrics["compression"][best.name]["rate"] == pytest.approx(r.baseline.bytes / best.bytes)
    report = (tmp_path / "report.md").read_text()
    for section in ("## Metrics", "## Regularisation", "## Soft pruning", "## What was pruned"):
        assert section in report
    for png in ("weights_regularisation.png", "sparsity_maps.png", "input_importance.png", "importance.png"):
        assert (tmp_path / png).stat().st_size > 1000


RECIPE_ITERATIVE_LOWRANK = """
[prune]
method = "iterative"
final_sparsity = 0.8
cycles = 2
importance = "taylor"
scope = "global"
skip = ["logits"]
[finetune]
epochs = 4
[lowrank]
energy = 0.95
choose = "auto"
epochs = 1
[convert]
max_accuracy_drop = 10  # a short recovery on digits; the gate has its own tests
"""


def test_recipe_iterative_then_lowrank_keeps_zeros(baseline, digits, tmp_path):
    r = compress(baseline, parse_recipe(RECIPE_ITERATIVE_LOWRANK, "it.toml"), digits, tmp_path, model_name="lenet",
                 log=lambda *a: None)
    it = r.techniques["iterative"]
    assert it["importance"] == "taylor" and len(it["records"]) == 2
    assert it["final_sparsity"] == pytest.approx(0.8, abs=0.002)
    lowrank = r.techniques["lowrank"]
    for c in lowrank["layers"]:  # auto: factorised exactly where the factors are smaller than the layer now
        assert c["factorized"] == (c["bytes_lowrank"] < c["bytes_now"])
    for c in lowrank["layers"]:  # layers left sparse kept their zeros through the recovery fine-tune
        key = f"{c['layer']}/kernel"
        if not c["factorized"] and key in it["layer_sparsity"]:
            assert r.layer_sparsity[key]["sparsity"] == pytest.approx(it["layer_sparsity"][key], abs=1e-6)
    assert r.keras_accuracy["compressed"] > 0.85
    assert any(a.shipped for a in r.artifacts)


def test_recipe_lowrank_without_pruning_fine_tunes_the_factors(baseline, digits, tmp_path):
    text = '[lowrank]\nparams_fraction = 0.3\nskip = ["logits"]\n[finetune]\nepochs = 3\n[convert]\nsparse = "off"\n' \
        'max_accuracy_drop = 10\n'
    r = compress(baseline, parse_recipe(text, "svd.toml"), digits, tmp_path, model_name="lenet", log=lambda *a: None)
    factorized = [c["layer"] for c in r.techniques["lowrank"]["layers"] if c["factorized"]]
    assert factorized == ["fc1", "fc2"]
    assert r.history is not None and len(r.history.epoch) == 3  # the fine-tune recovered the factors
    assert r.metrics["after"]["params"] < 0.4 * r.metrics["before"]["params"]
    assert "fc1_u/kernel" in r.layer_sparsity
    assert r.keras_accuracy["compressed"] > 0.9
    assert r.artifacts[0].shipped and r.artifacts[0].bytes < 0.45 * r.baseline.bytes
