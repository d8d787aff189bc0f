"""Automatic per-layer sparsity under an accuracy budget: allocation path, recipes, and real searches on digits."""
import json
from pathlib import Path

import pytest

import kit  # noqa: F401
from kit.convert import check as checks
from kit.recipe import write_recipe as recipe_toml
from kit.search.budget import (Budget, Probe, _bisect, _continue, _final, _without_back_off, allocation_path,
                               budget_recipe, parse_budget, search, unpruned_recipe)
from kit.core.errors import KitError, RecipeError
from kit.recipe import LayerOverride, builtin_recipes, load_recipe, parse_recipe
from kit.search.sensitivity import SensitivityResult, SensitivityRow
from tests.support.models import VAL_FRACTION

RECIPE = """
name = "quick"
[prune]
initial_sparsity = 0.2
final_sparsity = 0.8
granularity = "block"
block = "1x4"
[finetune]
epochs = 3
[finetune.distill]
alpha = 0.5
[convert]
sparse = "auto"
"""


def test_parse_budget():
    assert parse_budget("accuracy-drop=0.5") == Budget(0.5)
    assert parse_budget(" accuracy-drop = 2 ").accuracy_drop == 2.0
    for bad in ("0.5", "accuracy-drop=-1", "latency=3", "accuracy-drop=150", ""):
        with pytest.raises(KitError):
            parse_budget(bad)


def _row(layer, ratio, kl, params):
    return SensitivityRow(layer, "unstructured", ratio, 0.9, 0.0, kl, params, int(ratio * params))


def test_allocation_path_spends_cost_where_it_saves_most():
    # big: many weights, cheap; small: few weights, expensive; its 70% point sits above the chord (non-convex)
    rows = [_row("big", r, kl, 10000) for r, kl in ((0, 0), (0.5, 0.01), (0.9, 0.05), (0.99, 2.0))]
    rows += [_row("small", r, kl, 100) for r, kl in ((0, 0), (0.5, 0.5), (0.7, 2.0), (0.9, 2.1))]
    sens = SensitivityResult("m", "val", 0.9, rows)
    path = allocation_path(sens, "size")
    assert path[0] == {"big": 0.0, "small": 0.0}
    assert path[-1] == {"big": 0.99, "small": 0.9}
    for a, b in zip(path, path[1:]):  # one layer rises per step, none falls
        assert sum(b[k] != a[k] for k in a) == 1 and all(b[k] >= a[k] for k in a)
    assert path[1] == {"big": 0.5, "small": 0.0} and path[2] == {"big": 0.9, "small": 0.0}
    assert {"big": 0.9, "small": 0.7} not in path  # the non-convex point is skipped by the hull
    assert path.index({"big": 0.99, "small": 0.0}) < path.index({"big": 0.99, "small": 0.5})

    latency = [SensitivityRow("big", "unstructured", r, 0.9, 0, kl, 100, 0, 10.0, gain)
               for r, kl, gain in ((0, 0, 0), (0.5, 0.1, -2.0), (0.9, 0.2, 3.0))]
    latency += [SensitivityRow("slow", "unstructured", r, 0.9, 0, kl, 100, 0, 10.0, -1.0)
                for r, kl in ((0, 0), (0.9, 0.1))]
    path = allocation_path(SensitivityResult("m", "val", 0.9, latency), "latency")
    assert path == [{"big": 0.0, "slow": 0.0}, {"big": 0.9, "slow": 0.0}]  # no gain, never pruned


class _Limits:
    """Stands in for the pipeline runs in a test of the search order: passes below fixed per-layer limits."""

    def __init__(self, path, limits):
        self.path, self.limits, self.search_probes, self.boundary, self.tried = path, limits, 0, (0, len(path)), []

    def probe(self, sparsity, stage, step=None):
        self.search_probes += 1
        self.tried.append(dict(sparsity))
        return Probe(step, sparsity, stage, all(v <= self.limits[k] for k, v in sparsity.items()), {}, None, "", 0.0)


def test_bisection_then_continuation_past_a_sensitive_layer():
    rows = [_row("big", r, kl, 10000) for r, kl in ((0, 0), (0.5, 0.01), (0.9, 0.05), (0.99, 0.3))]
    rows += [_row("small", r, kl, 100) for r, kl in ((0, 0), (0.5, 0.1), (0.9, 0.2))]
    path = allocation_path(SensitivityResult("m", "val", 0.9, rows))
    assert path.index({"big": 0.99, "small": 0.0}) < path.index({"big": 0.99, "small": 0.5})
    oracle = _Limits(path, {"big": 0.9, "small": 0.9})  # big's last step breaks the budget, small's do not
    passing = _bisect(oracle, path, max_probes=20)
    notes = []
    _continue(oracle, path, passing, 20, notes)
    assert passing[-1] == {"big": 0.9, "small": 0.9}  # small still rose after big was frozen
    assert all(a in oracle.tried for a in passing)
    assert "big at 90%" in notes[0]
    few = _Limits(path, {"big": 0.9, "small": 0.9})
    assert len(_bisect(few, path, max_probes=1)) <= 1 and few.search_probes == 1


class _LuckyOnce(_Limits):
    """Stands in for the pipeline: the most aggressive passing allocation fails its final run (it was lucky)."""

    def __init__(self, path, limits, lucky):
        super().__init__(path, limits)
        self.lucky = lucky

    def probe(self, sparsity, stage, step=None):
        p = super().probe(sparsity, stage, step)
        if stage == "final" and sparsity == self.lucky:
            p.passed = False
        return p


def test_a_setting_that_fails_its_final_run_backs_off_to_the_next_passing_one():
    rows = [_row("big", r, kl, 10000) for r, kl in ((0, 0), (0.5, 0.01), (0.9, 0.05))]
    path = allocation_path(SensitivityResult("m", "val", 0.9, rows))
    lucky = {"big": 0.9}
    oracle = _LuckyOnce(path, {"big": 0.9}, lucky)
    passing = _bisect(oracle, path, max_probes=20)
    assert passing[-1] == lucky
    notes = []
    chosen = _final(oracle, path, passing, notes)
    assert chosen == {"big": 0.5} and oracle.tried[-2:] == [lucky, {"big": 0.5}]
    assert "big 90%" in notes[0] and "not after the final run" in notes[0]
    nothing = _LuckyOnce(path, {"big": 0.0}, None)
    assert _final(nothing, path, [], notes := []) == path[0] and "unpruned" in notes[0]


def _per_layer_magnitude(name: str) -> bool:
    p = load_recipe(name).prune
    return p is not None and p.method == "magnitude" and p.granularity != "2:4"


@pytest.mark.parametrize("name", [n for n in builtin_recipes() if _per_layer_magnitude(n)])
def test_budget_recipes_read_back_from_their_toml(name):
    base = load_recipe(name)
    r = budget_recipe(base, {"fc1": 0.97, "fc2": 0.0, "a.b": 0.1},
                      {"fc1": LayerOverride(granularity="block", block=(1, 16))})
    assert parse_recipe(recipe_toml(r)).to_dict() == r.to_dict()
    assert list(r.prune.layers)[:3] == ["fc1", "fc2", r"a\.b"]  # ours first: the first match wins
    assert r.prune.layers["fc1"].final_sparsity == 0.97 and r.prune.layers["fc1"].block == (1, 16)
    assert r.prune.layers["fc2"].skip
    assert r.prune.layers[r"a\.b"].initial_sparsity <= 0.1
    for pattern, override in base.prune.layers.items():
        if pattern not in r.prune.layers or pattern in ("fc1", "fc2"):
            continue
        assert r.prune.layers[pattern] == override
    plain = unpruned_recipe(base)
    assert plain.prune is None and plain.quantize is None and plain.finetune is None


def _val_drops(out: Path, split) -> dict[str, tuple[float, float]]:
    """Independent check: (drop, standard error) in points of every shipped artifact on the validation split."""
    manifest = json.loads((out / "manifest.json").read_text())
    base = checks.predict((out / "baseline-float32.tflite").read_bytes(), "litert", split.x).argmax(1) == split.y
    drops = {}
    for a in manifest["artifacts"]:
        if a["shipped"]:
            runtime = next(c["runtime"] for c in a["checks"] if c["loads"] and c["problem"] is None)
            ok = checks.predict(Path(a["path"]).read_bytes(), runtime, split.x).argmax(1) == split.y
            diff = base.astype(float) - ok
            drops[a["name"]] = (100 * diff.mean(), 100 * diff.std(ddof=1) / len(diff) ** 0.5)
    assert drops, "nothing shipped"
    return drops


@pytest.fixture(scope="module")
def searched(held_out_lenet, tmp_path_factory):
    data, split, model = held_out_lenet
    out = tmp_path_factory.mktemp("budget")
    result = search(model, parse_recipe(RECIPE, "quick.toml"), data, out, "accuracy-drop=2", val_fraction=VAL_FRACTION,
                    ratios=(0.5, 0.9), max_probes=3, model_name="lenet", log=lambda *a: None)
    return result, split, out


def test_search_result_is_within_budget_on_validation(searched):
    result, split, out = searched
    assert result.within_budget
    drops = _val_drops(out, split)
    assert set(drops) == {a.name for a in result.artifacts}
    for name, (d, se) in drops.items():  # the default judges the drop alone (sigmas 0)
        assert d <= 2.0 + 1e-9, f"{name} loses {d:.2f} +- {se:.2f} points on validation"
        outcome = next(a for a in result.artifacts if a.name == name)
        assert d == pytest.approx(outcome.val_drop) and d == pytest.approx(outcome.val_bound)
    assert max(result.chosen.values()) > 0  # 2 points of budget buy at least one pruned layer
    assert all(a.test_accuracy is not None for a in result.artifacts)  # the test split is reported


def test_chosen_settings_are_in_the_manifest_and_budget_json(searched):
    result, _, out = searched
    manifest = json.loads((out / "manifest.json").read_text())
    layers = manifest["recipe"]["prune"]["layers"]
    for name, sparsity in result.chosen.items():
        if sparsity > 0:
            assert layers[name]["final_sparsity"] == sparsity
            assert manifest["layer_sparsity"][f"{name}/kernel"]["sparsity"] == pytest.approx(sparsity, abs=0.02)
        else:
            assert layers[name]["skip"] is True
    assert manifest["budget"]["file"] == "budget.json"
    assert manifest["budget"]["per_layer_sparsity"] == result.chosen
    assert json.loads(json.dumps(parse_recipe(manifest["recipe_source"]).to_dict())) == manifest["recipe"]
    saved = json.loads((out / "budget.json").read_text())
    assert {n: v["sparsity"] for n, v in saved["chosen"].items()} == result.chosen
    assert saved["within_budget"] is True
    assert [p["passed"] for p in saved["probes"]][-1] is True and saved["probes"][-1]["stage"] == "final"
    assert (out / "sensitivity" / "sensitivity.csv").is_file() and (out / "budget.md").is_file()


def test_tight_budget_backs_off(held_out_lenet, tmp_path):
    data, split, model = held_out_lenet
    result = search(model, parse_recipe(RECIPE, "quick.toml"), data, tmp_path, Budget(0.0),
                    val_fraction=VAL_FRACTION, ratios=(0.95, 0.99), max_probes=3, model_name="lenet", sigmas=1.0,
                    log=lambda *a: None)
    failed = [p for p in result.probes if not p.passed]
    assert failed, "no allocation failed: the budget was not tight"
    for f in failed:  # the result backs off below every allocation that failed, in at least one layer
        assert any(result.chosen[k] < f.sparsity[k] for k in f.sparsity), (result.chosen, f.sparsity)
    assert result.within_budget
    for name, (d, se) in _val_drops(tmp_path, split).items():
        assert d + se <= 1e-9, f"{name} loses {d:.2f} +- {se:.2f} points on validation with a zero budget"


def test_recipe_without_pruning_is_refused(held_out_lenet, tmp_path):
    data, _, model = held_out_lenet
    with pytest.raises(RecipeError, match="no \\[prune\\]"):
        search(model, parse_recipe("[finetune]\nepochs = 1\n"), data, tmp_path, "accuracy-drop=1", log=lambda *a: None)


def test_latency_objective_refuses_runtimes_without_sparse_kernels(held_out_lenet, tmp_path):
    data, _, model = held_out_lenet
    recipe = parse_recipe(RECIPE + '\n[quantize]\nmode = ["int8"]\n')
    with pytest.raises(KitError, match="no sparse kernels"):
        search(model, recipe, data, tmp_path, "accuracy-drop=1", objective="latency", log=lambda *a: None)
    assert not (tmp_path / "manifest.json").exists()


def test_cli_flags_need_a_budget(capsys):
    from kit.cli import main

    assert main(["compress", "lenet-300-100", "--data", "digits", "--objective", "latency"]) == 2
    assert "--budget" in capsys.readouterr().err
    assert main(["compress", "lenet-300-100", "--data", "digits", "--budget", "drop=1"]) == 2
    assert "accuracy-drop" in capsys.readouterr().err


def test_the_search_runs_every_probe_at_its_own_sparsity_without_back_off():
    recipe = load_recipe("mcu")
    assert recipe.prune.back_off and "back_off" in _without_back_off(recipe)[0]
    assert recipe.prune.back_off == [] and _without_back_off(recipe) == []
    assert budget_recipe(recipe, {"fc1": 0.6}).prune.back_off == []
