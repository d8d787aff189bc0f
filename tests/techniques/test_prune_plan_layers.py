"""What the pruning plan does with a user's layers: the output layer found whatever its name, and the layers
TF-MOT leaves dense named with the reason (in the plan, hence the manifest's prune_plan, and in the report)."""
from __future__ import annotations

import re

import pytest

from kit.recipe import load_recipe, parse_recipe


def _user_mlp(head: str):
    """Hidden layers named as Keras names them (dense, dense_1), then the classifier in one of the usual spellings."""
    import tf_keras as keras

    L = keras.layers
    inp = keras.Input((16,))
    x = L.Dense(32, activation="relu")(inp)
    x = L.Dropout(0.2)(L.BatchNormalization()(L.Dense(32, activation="relu")(x)))
    if head == "softmax layer":  # Dense, then a separate Softmax named predictions
        out = L.Softmax(name="predictions")(L.Dense(10)(x))
    elif head == "predictions":  # Keras applications: Dense(..., activation="softmax", name="predictions")
        out = L.Dense(10, activation="softmax", name="predictions")(x)
    else:  # a Sequential-style name: the head is dense_2
        out = L.Dense(10, activation="softmax")(x)
    return keras.Model(inp, out)


@pytest.mark.parametrize("head", ["softmax layer", "predictions", "keras default"])
@pytest.mark.parametrize("recipe", ["mcu", "default", "best"])
def test_built_in_recipes_protect_the_output_layer_whatever_its_name(recipe, head):
    import tf_keras as keras

    from kit.techniques import prune

    keras.backend.clear_session()
    model = _user_mlp(head)
    step = load_recipe(recipe).prune
    plan = prune.plan(model, step, steps_per_epoch=10, epochs=4)
    sparsity = {p.layer: p.final_sparsity for p in plan.layers}
    dense = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert plan.outputs == [dense[-1]]
    assert sparsity[dense[-1]] == 0.7
    assert [sparsity[n] for n in dense[:-1]] == [step.final_sparsity] * 2  # hidden layers keep the recipe's target


def test_a_pattern_naming_the_output_layer_wins_and_nothing_else_is_hit():
    from kit.techniques import prune

    model = _user_mlp("keras default")
    head = model.layers[-1].name
    step = parse_recipe(f'[prune]\nfinal_sparsity = 0.9\n[prune.output]\nfinal_sparsity = 0.6\n'
                        f'[prune.layers."{head}"]\nfinal_sparsity = 0.5\n').prune
    plan = prune.plan(model, step, steps_per_epoch=10, epochs=4)
    assert {p.layer: p.final_sparsity for p in plan.layers}[head] == 0.5
    capped = parse_recipe("[prune]\nfinal_sparsity = 0.5\n[prune.output]\nfinal_sparsity = 0.7\n").prune
    assert {p.layer: p.final_sparsity for p in prune.plan(model, capped, 10, 4).layers}[head] == 0.5
    skipped = parse_recipe("[prune]\n[prune.output]\nskip = true\n").prune
    assert prune.plan(model, skipped, 10, 4).skipped == {head: "skipped by the recipe"}


def test_the_output_table_takes_only_what_the_method_reads():
    from kit.core.errors import RecipeError

    with pytest.raises(RecipeError, match="prune.output.block.*not used by method 'iterative'"):
        parse_recipe('[prune]\nmethod = "iterative"\n[prune.output]\nblock = "1x4"\n')
    with pytest.raises(RecipeError, match="prune.output.final_sparsty"):
        parse_recipe("[prune]\n[prune.output]\nfinal_sparsty = 0.5\n")


def _separable_cnn():
    import tf_keras as keras

    L = keras.layers
    inp = keras.Input((8, 8, 1))
    x = L.Conv2D(8, 3, padding="same", name="conv")(inp)
    x = L.BatchNormalization()(L.DepthwiseConv2D(3, padding="same", name="dw")(x))
    x = L.SeparableConv2D(8, 3, padding="same", name="sep")(x)
    out = L.Dense(10, name="dense")(L.GlobalAveragePooling2D()(x))
    return keras.Model(inp, out)


def test_layers_tf_mot_leaves_dense_are_reported_with_the_reason(tmp_path):
    from kit.steps.prune import PruneResult, render
    from kit.techniques import prune

    plan = prune.plan(_separable_cnn(), load_recipe("mcu").prune, steps_per_epoch=10, epochs=4)
    assert set(plan.not_pruned) == {"dw", "sep"}
    assert "TF-MOT prunes no weight of DepthwiseConv2D" in plan.not_pruned["dw"]
    assert "only pointwise_kernel of SeparableConv2D: depthwise_kernel stays dense" in plan.not_pruned["sep"]
    assert [p.layer for p in plan.layers] == ["conv", "sep", "dense"]  # the separable's pointwise kernel is pruned
    assert plan.to_dict()["not_pruned"] == plan.not_pruned  # the manifest's prune_plan
    text = render(PruneResult("magnitude", None, {}, plan.not_pruned), tmp_path)
    assert "## Layers left dense" in text and re.search(r"\| dw +\| TF-MOT prunes no weight", text)


def test_the_kit_s_own_maskers_prune_depthwise_kernels():
    from kit.techniques import masking, prune

    model = _separable_cnn()
    step = parse_recipe('[prune]\nmethod = "soft"\n').prune
    plan = prune.plan(model, step, steps_per_epoch=10, epochs=4)
    assert plan.not_pruned == {}
    assert {"dw", "sep"} <= {p.layer for p in plan.layers}
    targets = masking.kernel_targets(masking.prunable_kernels(model), plan)
    assert {"dw/depthwise_kernel", "sep/depthwise_kernel", "sep/pointwise_kernel"} <= set(targets)
    skipped = parse_recipe('[prune]\nmethod = "soft"\nskip = ["dw"]\n').prune
    assert prune.plan(model, skipped, 10, 4).skipped == {"dw": "skipped by the recipe"}
