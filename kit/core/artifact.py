"""The artifact records every part of the kit shares.

`ArtifactRef` is a .tflite file as a device sees it (path, sha256, size);
`ArtifactRecord` adds what the file is (its name and `Format`). The pipeline's
build artifact, the farm's entries and jobs, and the budget search's outcomes
extend `ArtifactRecord`; targets deploy and report an `ArtifactRef`.
`RuntimeCheck` is how one runtime ran an artifact on the host, and
`first_correct` the one rule for "the first runtime that ran it correctly".
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterable

from kit.core.vocab import format_name, parse_format_name


@dataclass(frozen=True)
class Format:
    """What an artifact is: a precision (float32, float16, dynamic, int8) and an encoding (dense, sparse)."""

    precision: str
    encoding: str = "dense"

    def __post_init__(self) -> None:
        format_name(self.precision, self.encoding)  # refuses words outside the vocabulary

    @property
    def name(self) -> str:
        """`int8`, `int8-sparse`: how manifests, profiles and farm files spell the format."""
        return format_name(self.precision, self.encoding)

    @property
    def sparse(self) -> bool:
        return self.encoding == "sparse"

    @classmethod
    def parse(cls, name: str) -> "Format":
        return cls(*parse_format_name(name))

    @classmethod
    def of(cls, precision: str, sparse: bool) -> "Format":
        return cls(precision, "sparse" if sparse else "dense")

    def __str__(self) -> str:
        return self.name


@dataclass
class ArtifactRef:
    """A model file: where it is, its content hash and its size."""

    path: str
    sha256: str
    bytes: int

    @classmethod
    def of(cls, path: str | Path) -> "ArtifactRef":
        data = Path(path).read_bytes()
        return cls(path=str(path), sha256=sha256_of(data), bytes=len(data))


@dataclass
class ArtifactRecord(ArtifactRef):
    """A model file with its name and format: the core every artifact record extends."""

    name: str
    format: Format

    def to_dict(self) -> dict[str, Any]:
        """Every field, the format written by name; subclasses with nested records override."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["format"] = self.format.name
        return d


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class RuntimeCheck:
    """How one runtime ran an artifact on the host, against labels and the Keras model's outputs."""

    runtime: str
    loads: bool
    error: str | None = None
    samples: int = 0
    top1: float | None = None
    top5: float | None = None
    agreement: float | None = None  # top-1 agreement with the reference (Keras) model
    max_abs_error: float | None = None  # against the reference outputs
    #: what the figures score (kit.core.metrics.TASKS); None in records written before tasks existed (classifiers)
    task: str | None = None
    mse: float | None = None  # autoencoder: reconstruction MSE against the inputs; regression: against the labels
    cosine: float | None = None  # non-classifiers: mean cosine similarity with the reference outputs
    auc: float | None = None  # autoencoder with 0/1 anomaly labels: ROC AUC of the per-sample reconstruction MSE
    auc_note: str | None = None  # why `auc` is absent although labels were given
    seconds: float | None = None
    #: against LiteRT's own x86 run of the same artifact (the `litert` check), for the other runtimes: top-1
    #: agreement (classifiers) and the largest output difference; where an architecture or an API computes
    #: differently (aarch64 NEON/fp16 kernels, TFLM's reference kernels)
    litert_agreement: float | None = None
    litert_max_diff: float | None = None
    #: why the artifact must not be used on this runtime (set by the pipeline); None = runs correctly
    problem: str | None = None

    @property
    def correct(self) -> bool:
        """Loads, and nothing says it computes the wrong thing."""
        return self.loads and not self.problem

    def to_dict(self) -> dict:
        """Every field; the task's and the cross-runtime fields only where set, so a classifier's record reads as it
        did before them."""
        return {k: v for k, v in asdict(self).items() if v is not None or k not in _OPTIONAL_FIELDS}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RuntimeCheck":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


#: RuntimeCheck fields added with tasks (kit.core.metrics) and cross-runtime comparison, left out of its dict when unset
_OPTIONAL_FIELDS = ("task", "mse", "cosine", "auc", "auc_note", "litert_agreement", "litert_max_diff")


def correct_runtimes(checks: Iterable[RuntimeCheck], exclude: Iterable[str] = ()) -> list[str]:
    """The runtimes that ran the artifact correctly, in the order checked (the order of preference)."""
    skip = set(exclude)
    return [c.runtime for c in checks if c.correct and c.runtime not in skip]


def first_correct(checks: Iterable[RuntimeCheck], exclude: Iterable[str] = ()) -> RuntimeCheck | None:
    """The check of the first runtime, in order of preference, that ran the artifact correctly."""
    skip = set(exclude)
    return next((c for c in checks if c.correct and c.runtime not in skip), None)


def first_correct_runtime(checks: Iterable[RuntimeCheck], exclude: Iterable[str] = ()) -> str | None:
    c = first_correct(checks, exclude)
    return None if c is None else c.runtime
