"""One compression run: baseline, then the recipe's steps in registry order (kit.steps.registry), then the
manifest and the report.

Every artifact is loaded on each runtime and its figures recorded; an artifact
that does not load on the runtimes the recipe targets is never shipped.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.convert.artifacts import Artifact, build_artifact
from kit.convert.check import aarch64_python
from kit.convert.converter import ArtifactSpec
from kit.core.errors import DataError, KitError
from kit.core.metrics import Task, resolve_task
from kit.data import Dataset, load_data
from kit.pipeline.manifest import write_manifest
from kit.recipe import Recipe, load_recipe, parse_recipe, write_recipe
from kit.steps import registry
from kit.steps.base import StepContext
from kit.techniques.finetune import History
from kit.techniques.prune import kernel_sparsity


@dataclass
class RunResult:
    out_dir: Path
    recipe: Recipe
    dataset: str
    baseline: Artifact
    artifacts: list[Artifact]
    keras_accuracy: dict[str, float]
    layer_sparsity: dict[str, dict]
    prune_plan: dict | None
    history: History | None
    seconds: dict[str, float]
    manifest_path: Path | None = None
    #: reports of the technique steps that ran (regularize, soft, learned, iterative, lowrank, merge, layer_prune)
    techniques: dict[str, Any] = field(default_factory=dict)
    #: compression, sparsity, params/MACs, top-k, latency/FPS/energy, robustness, output fidelity (kit.techniques.metrics)
    metrics: dict[str, Any] = field(default_factory=dict)
    #: the typed result of every step that ran, by section name
    steps: dict[str, Any] = field(default_factory=dict)
    #: what the model computes, which picked every figure (kit.core.metrics)
    task: Task = field(default_factory=lambda: Task("classification", "detected"))
    #: the task's Keras figures by label (original, compressed, ...): kit.core.metrics.task_scores
    keras_scores: dict[str, dict] = field(default_factory=dict)
    #: earlier attempts at higher sparsity that shipped nothing ([prune] back_off): final_sparsity, not_shipped
    backed_off: list[dict[str, Any]] = field(default_factory=list)

    @property
    def shipped(self) -> list[Artifact]:
        return [a for a in self.artifacts if a.shipped]


def compress(model: Any, recipe: Recipe | str = "default", data: Dataset | str = "mnist5k",
             out: str | Path = "runs/compress", model_name: str | None = None, teacher_epochs: int = 20,
             eval_samples: int | None = None, log=print, budget: dict[str, Any] | None = None,
             task: str | None = None) -> RunResult:
    """Compress `model` (a tf_keras model, a model file, or a built-in name) with `recipe` on `data`.

    budget: the budget search's section of the manifest, given for the run whose result it chose.
    task: classification | autoencoder | regression, or None/"auto" for the recipe's `[convert] task`
    (default: detected from the model's shapes and the labels; kit.core.metrics.resolve_task).
    """
    from kit.models import resolve_model
    from kit.pipeline.report import write_report

    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    if "litert-aarch64" in recipe.convert.targets:
        aarch64_python()  # no board: refused before any training, with how to build one
    dataset = data if isinstance(data, Dataset) else load_data(data, seed=recipe.seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _seed(recipe.seed)

    resolved = resolve_model(model, dataset, seed=recipe.seed, epochs=teacher_epochs, name=model_name, log=log,
                             task=task if task not in (None, "auto") else recipe.convert.task)
    model, model_name = resolved.model, resolved.name
    if resolved.trained_seconds is not None:
        timings["baseline_training"] = resolved.trained_seconds
    dataset = dataset.fit_to(model.input_shape[1:])
    run_task = _task(task, recipe, model, dataset, model_name)
    if run_task.classifier:
        _check_classes(model, dataset)
    else:
        _refuse_training(recipe, run_task.name)
    x_eval, y_eval = dataset.x_test[:eval_samples], dataset.y_test[:eval_samples]

    log(f"baseline: {model_name} on {dataset.description} ({run_task.name}, {run_task.how})")
    baseline = build_artifact(model, ArtifactSpec("float32"), dataset, x_eval, y_eval, out, model_name,
                              targets=("litert",), baseline=True, task=run_task.name)
    original_weights = model.get_weights()
    backed_off: list[dict[str, Any]] = []
    while True:
        ctx = StepContext(recipe, model, model, dataset, x_eval, y_eval, out, model_name, baseline, log=log,
                          timings=timings, task=run_task.name)
        ctx.measure("original")
        results: dict[str, Any] = {}
        for spec in registry.schedule(recipe):
            if spec.stage != "model" and "compressed" not in ctx.keras_scores:
                ctx.measure("compressed")  # what the model-changing steps made of it
            results[spec.name] = spec.timed(ctx)
        lower = None if any(a.shipped for a in ctx.artifacts) else _backed_off(recipe)
        if lower is None:
            break
        backed_off.append({"final_sparsity": recipe.prune.final_sparsity,
                           "not_shipped": {a.name: a.reason for a in ctx.artifacts}})
        log(f"nothing shipped at {recipe.prune.final_sparsity:.0%} sparsity: [prune] back_off runs again from the "
            f"original model at {lower.prune.final_sparsity:.0%}")
        for a in ctx.artifacts:  # the folder holds the files of the run the manifest describes, no others
            if a.path:
                Path(a.path).unlink(missing_ok=True)
        recipe = lower
        model.set_weights(original_weights)  # every attempt starts from the model as given
        _seed(recipe.seed)
    timings["total"] = time.perf_counter() - t_start
    result = RunResult(out, recipe, dataset.description, baseline, ctx.artifacts, ctx.keras_accuracy,
                       kernel_sparsity(ctx.model), ctx.prune_plan, ctx.history, timings, techniques=ctx.techniques,
                       metrics=ctx.metrics, steps=results, task=run_task, keras_scores=ctx.keras_scores,
                       backed_off=backed_off)
    ctx.model.save(out / f"{model_name}.compressed.h5")
    result.manifest_path = write_manifest(result, model_name, budget=budget)
    write_report(result, ctx.model, ctx.image_shape())
    return result


def _backed_off(recipe: Recipe) -> Recipe | None:
    """The recipe at its next `[prune] back_off` sparsity, read back from its TOML text (which the manifest
    records, so the text reproduces the run); None when it has none left."""
    step = recipe.prune.backed_off() if recipe.prune is not None else None
    if step is None:
        return None
    lower = copy.deepcopy(recipe)
    lower.prune = step
    return parse_recipe(write_recipe(lower), f"the recipe {recipe.name!r} backed off to {step.final_sparsity:g}")


def _seed(seed: int) -> None:
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)


def _task(declared: str | None, recipe: Recipe, model, dataset: Dataset, name: str) -> Task:
    """The run's task: `--task`, else the recipe's `[convert] task`, else detected; refused when they disagree."""
    in_recipe = recipe.convert.task
    if declared not in (None, "auto") and in_recipe not in ("auto", declared):
        raise KitError(f"the task is declared twice: {declared!r}, and [convert] task = {in_recipe!r} in the recipe",
                       "drop one, or make them agree")
    chosen = declared if declared not in (None, "auto") else in_recipe
    return resolve_task(chosen, tuple(model.input_shape[1:]), tuple(model.output_shape[1:]), dataset.y_test, name)


#: steps that train the model on the labels with a classifier's loss (cross-entropy, distillation of class scores);
#: [finetune] and [prune]'s magnitude schedule train with the task's own loss (kit.techniques.finetune)
_TRAINING = ("layer_prune", "structured", "regularize")


def _refuse_training(recipe: Recipe, task: str) -> None:
    """Most fine-tunes train classifiers: an autoencoder or regression model trained towards class labels stops
    computing what it did, so such a recipe is refused before anything is trained."""
    steps = [s for s in _TRAINING if getattr(recipe, s) is not None]
    if recipe.prune is not None and recipe.prune.method != "magnitude":
        steps.append(f"prune.method {recipe.prune.method}")
    if recipe.lowrank is not None and (recipe.finetune is not None or recipe.lowrank.epochs):
        steps.append("lowrank")
    if recipe.cluster is not None and recipe.cluster.epochs:
        steps.append("cluster")
    if recipe.quantize is not None and "qat" in recipe.quantize.mode:
        steps.append("quantize.mode qat")
    if steps:
        article = "an" if task[0] in "aeiou" else "a"
        raise KitError(f"recipe {recipe.name!r} trains the model ({', '.join(f'[{s}]' for s in steps)}) with a "
                       f"classifier's loss on the labels, which would undo {article} {task} model",
                       "prune it with [prune] method = \"magnitude\" and [finetune] (they train on the task's "
                       "MSE), or compress it after training with [quantize] and [convert]; or declare --task "
                       "classification if the model is a classifier")


def _check_classes(model, dataset: Dataset) -> None:
    units = model.output_shape[-1]
    if units is not None and dataset.num_classes > units:
        raise DataError(f"the data has labels up to {dataset.num_classes - 1} but the model has {units} outputs",
                        "use data whose labels are 0..outputs-1")
