"""Recipe sections of the techniques: values parse, mistakes name the line, the key and what is allowed."""
import pytest
from tests.support.recipes import assert_recipe_error

from kit.recipe import parse_recipe


def test_full_technique_recipe():
    r = parse_recipe("""
[layer_prune]
blocks = 2
max_cost = 0.1
[regularize]
kind = "elasticnet"
l1 = 1e-5
l2 = 1e-4
epochs = 3
[prune]
method = "iterative"
final_sparsity = 0.9
cycles = 4
importance = "fisher"
scope = "global"
[lowrank]
energy = 0.9
skip = ["logits"]
[lowrank.merge]
fc2 = 0.25
[metrics]
noise_sigmas = [0.05, 0.1]
shifts = [1, 2]
image_shape = "28x28"
grid_g_per_kwh = 350
latency_runs = 0
""")
    assert r.layer_prune.blocks == 2 and r.layer_prune.max_cost == 0.1
    assert (r.regularize.kind, r.regularize.l1, r.regularize.l2, r.regularize.epochs) == ("elasticnet", 1e-5, 1e-4, 3)
    p = r.prune
    assert (p.method, p.cycles, p.importance, p.scope) == ("iterative", 4, "fisher", "global")
    assert r.lowrank.energy == 0.9 and r.lowrank.merge == {"fc2": 0.25} and r.lowrank.skip == ["logits"]
    m = r.metrics
    assert m.noise_sigmas == [0.05, 0.1] and m.shifts == [1, 2] and m.image_shape == (28, 28)
    assert m.grid_g_per_kwh == 350.0 and m.latency_runs == 0
    assert r.finetune is not None  # pruning always fine-tunes


def test_defaults_of_the_other_methods_do_not_get_in_the_way():
    """A serialiser that writes every field (method-specific ones at their defaults) still reads back."""
    r = parse_recipe('[prune]\nmethod = "magnitude"\nscope = "layer"\ncycles = 3\ngate = "ste"\nmask_epochs = 4\n')
    assert r.prune.method == "magnitude"


@pytest.mark.parametrize("text, line, words", [
    ('[prune]\nmethod = "magnitude"\ncycles = 5\n', 3, ["prune.cycles", "not used by method 'magnitude'", "iterative"]),
    ('[prune]\nmethod = "sof"\n', 2, ["prune.method", "did you mean 'soft'"]),
    ('[prune]\nmethod = "learned"\ngranularity = "block"\n', 3, ["prune.granularity", "unstructured, filter"]),
    ('[prune]\nmethod = "soft"\ngranularity = "filter"\nscope = "global"\n', 4, ["prune.scope", "filters"]),
    ('[prune]\nmethod = "iterative"\nimportance = "hessian"\n', 3, ["prune.importance", "fisher"]),
    ('[prune]\nmethod = "iterative"\nthreshold = 0.5\nfinal_sparsity = 0.9\n', 3, ["prune.threshold", "not both"]),
    ('[prune]\nmethod = "iterative"\n[prune.layers.fc1]\nblock = "1x4"\n', 4,
     ["prune.layers.fc1.block", "not used by method 'iterative'"]),
    ('[prune]\nmethod = "learned"\nmask_epochs = 0\n', 3, ["prune.mask_epochs", "1 to 1000"]),
    ('[regularize]\nkind = "l1"\n', 2, ["regularize.kind", "regularize.l1` is missing"]),
    ('[regularize]\nkind = "l2"\nl2 = 1e-4\nl1 = 1e-5\n', 4, ["regularize.l1", "not used by kind 'l2'"]),
    ('[regularize]\nkind = "group_lasso"\ngroup = 2.0\n', 3, ["regularize.group", "0 < x < 1"]),
    ('[regularize]\nkind = "lasso"\n', 2, ["regularize.kind", "group_lasso"]),
    ('[lowrank]\nenergy = 0.9\nrank = 4\n', 2, ["lowrank.energy", "lowrank.rank", "both set"]),
    ('[lowrank]\nenergy = 1.5\n', 2, ["lowrank.energy", "0 < x <= 1"]),
    ('[lowrank]\nrank = 2\n[lowrank.merge]\nfc1 = 1.0\n', 4, ["lowrank.merge.fc1", "0 < x < 1"]),
    ('[lowrank]\nchoose = "auto"\n', 1, ["lowrank", "needs rank, energy or params_fraction"]),
    ('[layer_prune]\nblocks = 0\n', 2, ["layer_prune.blocks", "1 to 1000"]),
    ('[metrics]\nimage_shape = "28"\n', 2, ["metrics.image_shape", "height x width"]),
    ('[metrics]\nnoise_sigmas = 0.1\n', 2, ["metrics.noise_sigmas", "list of numbers"]),
    ('[metrics]\nshifts = [0]\n', 2, ["metrics.shifts", "shifts >= 1"]),
    ('[metrics]\ngrid_g_per_kw = 400\n', 2, ["metrics.grid_g_per_kw", "did you mean `grid_g_per_kwh`"]),
])
def test_technique_mistakes_are_precise(text, line, words):
    assert_recipe_error(text, line, words)
