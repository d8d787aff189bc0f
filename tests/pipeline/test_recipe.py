import pytest
from tests.support.recipes import assert_recipe_error

from kit.core.errors import RecipeError
from kit.recipe import builtin_recipes, load_recipe, parse_recipe


def test_builtin_recipes_parse():
    assert {"default", "best", "tfmot-tutorial"} <= set(builtin_recipes())
    for name in builtin_recipes():
        r = load_recipe(name)
        assert r.name == name


def test_full_recipe_values():
    r = parse_recipe("""
seed = 3
[prune]
schedule = "polynomial"
initial_sparsity = 0.2
final_sparsity = 0.9
end_epoch = 3
granularity = "block"
block = "1x16"
skip = ["logits"]
[prune.layers."fc.*"]
final_sparsity = 0.95
[finetune]
epochs = 5
[finetune.distill]
temperature = 2
alpha = 0.25
[cluster]
clusters = 8
[quantize]
mode = "qat"
[convert]
sparse = "on"
targets = ["litert", "tflm"]
""")
    assert r.seed == 3
    assert r.prune.block == (1, 16) and r.prune.end_epoch == 3.0
    assert r.prune.layers["fc.*"].final_sparsity == 0.95
    assert r.finetune.distill.temperature == 2.0 and r.finetune.distill.alpha == 0.25
    assert r.cluster.clusters == 8 and r.cluster.preserve_sparsity is True
    assert r.quantize.mode == ["qat"]
    assert r.convert.targets == ["litert", "tflm"]


def test_prune_without_finetune_gets_default_finetune():
    r = parse_recipe("[prune]\nfinal_sparsity = 0.5\n")
    assert r.finetune is not None and r.finetune.epochs >= 1


@pytest.mark.parametrize("text, line, words", [
    ("[prune]\nfinal_sparsty = 0.5\n", 2, ["prune.final_sparsty", "not a known key", "final_sparsity"]),
    ("\n[prune]\nfinal_sparsity = 1.5\n", 3, ["prune.final_sparsity", "out of range", "0 <= x < 1"]),
    ("[finetune]\nepochs = \"3\"\n", 2, ["finetune.epochs", "must be int"]),
    ("[prune]\ngranularity = \"blok\"\n", 2, ["prune.granularity", "did you mean 'block'"]),
    ("[quantize]\nmode = [\"int8\", \"int4\"]\n", 2, ["quantize.mode", "'int4'"]),
    ("[prune]\nblock = \"4\"\n", 2, ["prune.block", "rows x cols"]),
    ("[prune]\ninitial_sparsity = 0.9\nfinal_sparsity = 0.5\n", 2, ["above final_sparsity"]),
    ("[prune]\nbegin_step = 10\nend_step = 5\n", 3, ["prune.end_step", "not after begin_step"]),
    ("[prune.layers.fc1]\nfinal = 0.2\n", 2, ["prune.layers.fc1.final", "known keys"]),
    ("[convert]\ntargets = [\"tpu\"]\n", 2, ["convert.targets", "'tpu'"]),
    ("[prune]\nskip = [\"(\"]\n", 2, ["prune.skip", "regular expression"]),
    ("[clusterr]\nclusters = 4\n", 1, ["clusterr", "did you mean `cluster`"]),
])
def test_recipe_errors_name_line_and_key(text, line, words):
    assert_recipe_error(text, line, words)


def test_invalid_toml_and_missing_file(tmp_path):
    with pytest.raises(RecipeError, match="not valid TOML"):
        parse_recipe("[prune\nx=1", "bad.toml")
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe(tmp_path / "missing.toml")
    with pytest.raises(RecipeError, match="built-in recipes"):
        load_recipe("no-such-recipe")


def test_readme_recipe_examples_parse():
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", readme, re.S)
    assert len(blocks) >= 2
    for block in blocks:
        parse_recipe(block, "README.md")


def test_back_off_scales_every_sparsity_and_reads_back():
    from kit.recipe import write_recipe

    r = parse_recipe("[prune]\ninitial_sparsity = 0.6\nfinal_sparsity = 0.9\nback_off = [0.6, 0.45]\n"
                     "[prune.layers.fc1]\nfinal_sparsity = 0.8\n[prune.output]\nfinal_sparsity = 0.3\n"
                     "initial_sparsity = 0.3\n", "r.toml")
    lower = r.prune.backed_off()
    assert lower.final_sparsity == 0.6 and lower.initial_sparsity == 0.6 and lower.back_off == [0.45]
    assert lower.layers["fc1"].final_sparsity == pytest.approx(0.8 * 0.6 / 0.9, abs=1e-4)
    assert lower.output.final_sparsity == 0.2 and lower.output.initial_sparsity == 0.2
    last = lower.backed_off()
    assert last.final_sparsity == 0.45 and last.backed_off() is None
    assert parse_recipe(write_recipe(r)).prune.back_off == [0.6, 0.45]
    assert load_recipe("mcu").prune.back_off == [0.75, 0.65, 0.55]


@pytest.mark.parametrize("text, words", [
    ("[prune]\nfinal_sparsity = 0.8\nback_off = [0.5, 0.7]\n", ["prune.back_off", "falling"]),
    ("[prune]\nfinal_sparsity = 0.8\nback_off = [0.8]\n", ["prune.back_off", "not below final_sparsity 0.8"]),
    ("[prune]\nfinal_sparsity = 0.8\nback_off = 0.5\n", ["prune.back_off", "e.g. [0.7, 0.5]"]),
])
def test_back_off_errors(text, words):
    assert_recipe_error(text, 3, words)
