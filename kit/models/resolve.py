"""What the commands accept as MODEL, turned into a tf_keras model: a built-in name, a model file, or a model.

A built-in name is built for the data and trained on it first; a path is loaded; a model object is used as is.
Compression, the budget search and the sensitivity analysis all start here, so a model means the same everywhere.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kit.core.errors import ModelError
from kit.models.loading import load_model
from kit.models.zoo import ZOO, build, train_baseline

if TYPE_CHECKING:
    from kit.data import Dataset


@dataclass(frozen=True)
class ResolvedModel:
    model: Any  # tf_keras model
    name: str  # for artifacts and reports: the given name, else the built-in name, file stem or model name
    trained_seconds: float | None = None  # training time of a built-in architecture; None when loaded or given


def resolve_model(model: Any, data: Dataset, *, seed: int = 0, epochs: int = 20, name: str | None = None,
                  train_split: Callable[[Dataset], Dataset] | None = None, log=print,
                  task: str | None = None, classifier_only: str | None = None) -> ResolvedModel:
    """`model` as a tf_keras model.

    A built-in name (kit.models.ZOO) is built for `data` (its classes; its sample shape when the architecture
    flattens its input) and trained for `epochs` with `seed` on the training split, or on `train_split` of it
    (e.g. without the validation samples). A str or Path is loaded; anything else is taken as a model.
    task: the task the caller declared (kit.core.metrics.TASK_CHOICES); None or "auto": the model must fit the
    data as some task does (a classifier its classes, a regression model its targets, ...).
    classifier_only: why the caller scores top-1 only (e.g. "the budget search ..."); a model that computes
    something else is then refused with that reason.
    """
    if isinstance(model, str) and model in ZOO:
        if data.regression_targets:
            raise ModelError(f"the built-in {model} is a classifier, and {data.name} holds regression targets",
                             "give a model file that predicts the targets (e.g. ending in Dense(1))")
        entry = ZOO[model]
        built = build(model, input_shape=entry.input_shape_for(data.x_train.shape[1:]), num_classes=data.num_classes)
        train = data.fit_to(built.input_shape[1:])
        if train_split is not None:
            train = train_split(train)
        log(f"training the built-in {model} baseline on {len(train.x_train)} samples of {data.name} "
            f"({epochs} epochs)")
        t = time.perf_counter()
        train_baseline(built, train, epochs=epochs, seed=seed)
        return ResolvedModel(built, name or model, time.perf_counter() - t)
    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.exists():
            raise ModelError(f"model {path} does not exist",
                             f"give a .h5, .keras or SavedModel folder, or a built-in name: {', '.join(ZOO)}")
        return ResolvedModel(_fits(load_model(path), data, path.name, task, classifier_only), name or path.stem)
    return ResolvedModel(_fits(model, data, name or model.name, task, classifier_only), name or model.name)


def _fits(model: Any, data: Dataset, what: str, task: str | None, classifier_only: str | None) -> Any:
    """A given model must fit `data` as the task it computes does (kit.core.metrics.resolve_task): a classifier
    needs an output per class, a regression model one per target, an autoencoder its input's shape. Every command
    that scores it (compress, budget search, sensitivity) would otherwise report figures it cannot have."""
    from kit.core.metrics import resolve_task

    shapes = (getattr(model, "input_shape", None), getattr(model, "output_shape", None))
    if all(isinstance(s, tuple) and len(s) >= 2 for s in shapes) and isinstance(shapes[1][-1], int):
        found = resolve_task(task, tuple(shapes[0][1:]), tuple(shapes[1][1:]), data.y_test, what)
        if classifier_only and not found.classifier:
            article = "an" if found.name[0] in "aeiou" else "a"
            raise ModelError(f"{what} is {article} {found.name} model ({found.how}), and {classifier_only}",
                             "compress it with kit compress: [prune] (magnitude) and [finetune] train it on its "
                             "own MSE, and the report compares the MSE")
    return model
