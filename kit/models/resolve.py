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

import numpy as np

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
                  train_split: Callable[[Dataset], Dataset] | None = None, log=print) -> ResolvedModel:
    """`model` as a tf_keras model.

    A built-in name (kit.models.ZOO) is built for `data` (its classes; its sample shape when the architecture
    flattens its input) and trained for `epochs` with `seed` on the training split, or on `train_split` of it
    (e.g. without the validation samples). A str or Path is loaded; anything else is taken as a model.
    """
    if isinstance(model, str) and model in ZOO:
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
        return ResolvedModel(_fits(load_model(path), data, path.name), name or path.stem)
    return ResolvedModel(_fits(model, data, name or model.name), name or model.name)


def _fits(model: Any, data: Dataset, what: str) -> Any:
    """A given model must have an output per class of `data`: every command that scores it (compress,
    budget search, sensitivity) would otherwise report accuracy against classes it cannot predict."""
    from kit.data import check_labels_fit

    shape = getattr(model, "output_shape", None)
    if isinstance(shape, tuple) and len(shape) >= 2 and isinstance(shape[-1], int):
        check_labels_fit(np.array([data.num_classes - 1]), shape[-1], what)
    return model
