"""Recipe steps come from one registry: parsing, writing, the run, the report and the budget search's derived
recipes all follow it. A step defined here, in this file only, goes through all of them."""
from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pytest

import kit  # noqa: F401  (selects tf_keras before TensorFlow is imported)
from kit.core.errors import RecipeError
from kit.recipe import builtin_recipes, load_recipe, parse_recipe, write_recipe
from kit.search.budget import budget_recipe, unpruned_recipe
from kit.steps import registry
from kit.steps.base import StepContext, StepSpec, key
from tests.support.recipes import assert_recipe_error

#: recipes that between them set every key of every step to something other than its default
EVERY_KEY = [
    """
name = "all-magnitude"
description = "every key"
seed = 7
[layer_prune]
blocks = 2
max_cost = 0.5
samples = 200
epochs = 3
[structured]
ratio = 0.25
criterion = "l2"
scope = "global"
round_to = 4
skip = ["logits"]
layers = { conv1 = 0.5 }
kernels = { conv1 = 3, conv2 = "3x1" }
strides = { conv1 = [2, 1] }
input_border = [1, 2, 0, 1]
inputs = 0.25
calibration_samples = 64
[regularize]
kind = "elasticnet"
l1 = 1e-5
l2 = 1e-4
epochs = 2
learning_rate = 0.01
threshold = 0.01
skip = ["fc.*"]
[prune]
schedule = "polynomial"
initial_sparsity = 0.1
final_sparsity = 0.9
back_off = [0.7, 0.5]
begin_step = 2
end_step = 40
frequency = 5
granularity = "block"
block = "1x16"
skip = ["logits"]
[prune.layers."fc.*"]
skip = false
initial_sparsity = 0.05
final_sparsity = 0.7
granularity = "unstructured"
block = "2x2"
[prune.layers.other]
skip = true
[prune.output]
final_sparsity = 0.6
granularity = "unstructured"
[finetune]
epochs = 3
learning_rate = 0.01
batch_size = 32
validation_split = 0.2
[finetune.distill]
temperature = 2.0
alpha = 0.25
[finetune.augment]
shift = 3
copies = 1
[lowrank]
energy = 0.9
choose = "always"
skip = ["logits"]
merge = { fc2 = 0.25 }
epochs = 1
learning_rate = 0.001
[cluster]
clusters = 8
preserve_sparsity = false
epochs = 2
learning_rate = 0.001
[quantize]
mode = ["none", "float16", "qat"]
io = "uint8"
calibration_samples = 100
qat_epochs = 2
qat_learning_rate = 0.001
[convert]
sparse = "on"
targets = ["litert-builtin", "tflm"]
max_accuracy_drop = 2.5
task = "autoencoder"
objective = "latency"
[metrics]
noise_sigmas = [0.05]
shifts = [1, 2]
image_shape = "8x8"
samples = 100
latency_runs = 10
grid_g_per_kwh = 350
""",
    """
[prune]
schedule = "constant"
final_sparsity = 0.6
begin_epoch = 0.5
end_epoch = 2.0
[lowrank]
rank = 4
[metrics]
""",
    """
[prune]
method = "soft"
granularity = "filter"
scope = "layer"
final_sparsity = 0.5
[lowrank]
params_fraction = 0.5
""",
    """
[prune]
method = "learned"
gate = "sigmoid"
mask_epochs = 2
mask_learning_rate = 0.5
scope = "global"
""",
    """
[prune]
method = "iterative"
importance = "taylor"
cycles = 2
threshold = 0.1
threshold_kind = "score"
scope = "global"
[regularize]
kind = "group_lasso"
group = 1e-3
""",
]


def _set_keys(recipe) -> set[str]:
    """Dotted names of the step keys `recipe` sets to something other than the default."""
    out = set()
    for spec in registry.STEPS:
        config = getattr(recipe, spec.name)
        if config is None:
            continue
        default = spec.config()
        out |= {f"{spec.name}.{f.name}" for f in fields(config) if getattr(config, f.name) != getattr(default, f.name)}
    return out


@pytest.mark.parametrize("name", builtin_recipes())
def test_builtin_recipes_write_and_read_back(name):
    r = load_recipe(name)
    assert parse_recipe(write_recipe(r), "again.toml") == r


@pytest.mark.parametrize("text", EVERY_KEY)
def test_every_key_writes_and_reads_back(text):
    r = parse_recipe(text, "every.toml")
    again = parse_recipe(write_recipe(r), "again.toml")
    assert again == r and again.to_dict() == r.to_dict()


def test_the_round_trip_recipes_cover_every_key_of_every_step():
    covered = set().union(*(_set_keys(parse_recipe(t, "every.toml")) for t in EVERY_KEY))
    every = {f"{s.name}.{f.name}" for s in registry.STEPS for f in fields(s.config)}
    assert every - covered == set()


def test_known_sections_come_from_the_registry():
    assert registry.names() == ["layer_prune", "structured", "regularize", "prune", "finetune", "lowrank", "cluster",
                                "quantize", "convert", "metrics"]
    r = parse_recipe(EVERY_KEY[0], "every.toml")
    assert list(r.to_dict())[3:] == registry.names()
    assert r.prune.block == (1, 16) and r.structured.kernels == {"conv1": (3, 3), "conv2": (3, 1)}


def test_lowrank_runs_before_the_finetune_only_without_pruning():
    plain = parse_recipe("[lowrank]\nenergy = 0.9\n[finetune]\nepochs = 1\n")
    assert [s.name for s in registry.schedule(plain)] == ["lowrank", "finetune", "convert", "metrics"]
    pruned = parse_recipe("[prune]\nfinal_sparsity = 0.5\n[lowrank]\nenergy = 0.9\n")
    assert [s.name for s in registry.schedule(pruned)] == ["prune", "finetune", "lowrank", "convert", "metrics"]


# -- the three budget-search bugs ---------------------------------------------------------------------------------

BUDGET_BASE = """
name = "r"
[regularize]
kind = "l1"
l1 = 1e-5
[prune]
final_sparsity = 0.8
"""


def test_budget_recipe_keeps_regularize():
    r = budget_recipe(parse_recipe(BUDGET_BASE, "r.toml"), {"fc1": 0.9, "fc2": 0.0})
    assert r.regularize.kind == "l1" and r.regularize.l1 == 1e-5 and r.regularize.l2 == 0.0
    assert r.prune.layers["fc1"].final_sparsity == 0.9 and r.prune.layers["fc2"].skip


def test_errors_of_a_derived_recipe_name_no_file():
    with pytest.raises(RecipeError) as e:
        budget_recipe(parse_recipe(BUDGET_BASE, "r.toml"), {"fc1": 1.0})  # 100% is out of range
    msg = str(e.value)
    assert "prune.layers.fc1.final_sparsity" in msg and "derived from 'r'" in msg, msg
    assert ".toml" not in msg, msg


def test_unpruned_recipe_with_structured_reads_back():
    base = load_recipe("lenet5-latency")
    plain = unpruned_recipe(base)
    assert plain.structured is None and plain.finetune is None and plain.quantize is None
    assert plain.convert == base.convert


def test_unpruned_recipe_drops_every_step_that_changes_the_model():
    base = parse_recipe(EVERY_KEY[0], "every.toml")
    assert all(getattr(base, s.name) is not None for s in registry.STEPS)
    plain = unpruned_recipe(base)
    for name in ("layer_prune", "structured", "regularize", "prune", "finetune", "lowrank", "cluster", "quantize"):
        assert getattr(plain, name) is None, name
    assert plain.convert == base.convert and plain.metrics == base.metrics
    assert [s.name for s in registry.schedule(plain)] == ["convert", "metrics"]


# -- a step defined in this file only -----------------------------------------------------------------------------

@dataclass
class ToyStep:
    scale: float = key(2.0, "factor applied to the last layer's kernel and bias", type=float,
                       check=lambda x: 0 < x <= 10, allowed="0 < x <= 10")
    label: str = key("toy", "what the report calls it", choices=("toy", "demo"))


@dataclass
class ToyResult:
    scale: float
    layer: str


def _run_toy(ctx: StepContext) -> ToyResult:
    """Scale the logits: the predicted classes stay, the model object is replaced by a changed copy."""
    from kit.techniques.prune import private_copy

    model = private_copy(ctx.model)
    last = model.layers[-1]
    last.set_weights([w * ctx.recipe.toy.scale for w in last.get_weights()])
    ctx.model = model
    ctx.techniques["toy"] = {"scale": ctx.recipe.toy.scale, "layer": last.name}
    ctx.measure("toy")
    return ToyResult(ctx.recipe.toy.scale, last.name)


def _render_toy(result: ToyResult, out: Path) -> str:
    return f"## Toy step\n\n{result.layer} scaled by {result.scale:g}.\n"


TOY = StepSpec("toy", ToyStep, _run_toy, _render_toy)


@pytest.fixture
def toy_registry():
    saved = list(registry.STEPS)
    registry.register(TOY, after="cluster")
    yield TOY
    registry.STEPS[:] = saved


TOY_RECIPE = """
name = "toy-run"
[toy]
scale = 3.0
label = "demo"
[quantize]
mode = "none"
"""


@pytest.mark.parametrize("text, line, words", [
    ("[toy]\nscale = 50\n", 2, ["toy.scale", "out of range", "0 < x <= 10"]),
    ("[toy]\nscal = 2.0\n", 2, ["toy.scal", "did you mean `scale`"]),
    ("\n[toy]\nlabel = \"dem\"\n", 3, ["toy.label", "did you mean 'demo'"]),
    ("[toyy]\nscale = 2.0\n", 1, ["toyy", "did you mean `toy`"]),
])
def test_a_registered_step_is_parsed_with_line_numbers(toy_registry, text, line, words):
    assert_recipe_error(text, line, words)


def test_a_registered_step_is_written_and_derived(toy_registry):
    r = parse_recipe(TOY_RECIPE, "toy.toml")
    assert r.toy == ToyStep(3.0, "demo") and r.to_dict()["toy"] == {"scale": 3.0, "label": "demo"}
    text = write_recipe(r)
    assert "[toy]" in text and parse_recipe(text, "again.toml") == r
    pruned = parse_recipe(TOY_RECIPE + "[prune]\nfinal_sparsity = 0.5\n", "toy.toml")
    assert budget_recipe(pruned, {"dense": 0.7}).toy == ToyStep(3.0, "demo")
    assert unpruned_recipe(pruned).toy is None  # it changes the model
    assert "toy" in registry.key_table()


def test_without_the_fixture_the_step_is_unknown():
    with pytest.raises(RecipeError, match="toy"):
        parse_recipe("[toy]\nscale = 2.0\n", "r.toml")


def test_a_registered_step_runs_and_reports(toy_registry, digits, tmp_path):
    import tf_keras as keras

    from kit.pipeline.compress import compress

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.InputLayer((64,)), keras.layers.Dense(10, name="dense")])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(digits.x_train, digits.y_train, epochs=3, verbose=0)
    before = model.predict(digits.x_test, verbose=0)
    run = compress(model, parse_recipe(TOY_RECIPE, "toy.toml"), digits, tmp_path, model_name="tiny",
                   log=lambda *a: None)
    assert isinstance(run.steps["toy"], ToyResult) and run.steps["toy"].scale == 3.0
    assert run.techniques["toy"] == {"scale": 3.0, "layer": "dense"}
    assert "toy" in run.seconds
    assert run.keras_accuracy["toy"] == run.keras_accuracy["original"] == run.keras_accuracy["compressed"]
    np.testing.assert_allclose(model.predict(digits.x_test, verbose=0), before)  # the original is untouched
    report = (tmp_path / "report.md").read_text()
    assert "## Toy step" in report and "dense scaled by 3." in report
    assert report.count("# Compression report") == 1
    assert [a.name for a in run.artifacts] == ["float32"] and run.artifacts[0].shipped


# -- the README's key tables --------------------------------------------------------------------------------------

def test_readme_key_tables_match_the_steps():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    m = re.search(r"<!-- recipe keys: start -->\n(.*?)<!-- recipe keys: end -->", readme, re.DOTALL)
    assert m, "README.md has no recipe key tables"
    assert m.group(1).strip() == registry.key_table().strip(), \
        "README.md's recipe key tables are out of date: paste kit.steps.registry.key_table() between the markers"
