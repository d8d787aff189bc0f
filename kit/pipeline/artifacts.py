"""Artifacts of one compression run: build each encoding, check it on every runtime, decide what ships."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kit.core.tflite_file import read_tflite
from kit.pipeline import check as checks
from kit.pipeline.convert import ArtifactSpec, convert
from kit.pipeline.data import Dataset
from kit.recipe import Recipe


@dataclass
class Artifact:
    name: str
    fmt: str
    sparse: bool
    path: str | None
    bytes: int
    gzip_bytes: int
    sha256: str
    shipped: bool
    reason: str
    checks: list[checks.RuntimeCheck] = field(default_factory=list)
    tensors: list[dict] = field(default_factory=list)
    weight_bytes: int = 0
    graph_bytes: int = 0
    #: the flatbuffer itself, written to `path` once shipping is decided; not part of the manifest
    content: bytes = field(default=b"", repr=False, compare=False)

    def check_on(self, runtime: str) -> checks.RuntimeCheck | None:
        return next((c for c in self.checks if c.runtime == runtime), None)

    @property
    def accuracy(self) -> float | None:
        """Top-1 on the first runtime that runs the artifact correctly, in order of preference."""
        for c in self.checks:
            if c.loads and c.problem is None and c.top1 is not None:
                return c.top1
        return None


#: lowest top-1 agreement with the converted Keras model for an artifact to ship
MIN_AGREEMENT = {"float32": 0.99, "float16": 0.99, "dynamic": 0.97, "int8": 0.97}


def _problem(c: checks.RuntimeCheck, fmt: str) -> str | None:
    """Why an artifact must not ship on this runtime: it does not load, or computes something else."""
    if not c.loads:
        return f"does not load on {c.runtime}: {c.error}"
    if c.max_abs_error is not None and not np.isfinite(c.max_abs_error):
        return f"computes non-finite outputs on {c.runtime}"
    if c.agreement is not None and c.agreement < MIN_AGREEMENT[fmt]:
        return (f"computes wrong results on {c.runtime}: top-1 agreement with the Keras model "
                f"{c.agreement:.2%} < {MIN_AGREEMENT[fmt]:.0%}")
    return None


def place(a: Artifact, out: Path) -> None:
    folder = out if a.shipped else out / "rejected"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{a.name}.tflite"
    path.write_bytes(a.content)
    a.path = str(path)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def build_artifact(model, spec: ArtifactSpec, dataset: Dataset, x_eval, y_eval, out: Path, model_name: str,
                    targets: tuple[str, ...], baseline: bool = False) -> Artifact:
    data = convert(model, spec, dataset.x_calib)
    reference = model.predict(x_eval, batch_size=512, verbose=0)
    results = checks.check(data, x_eval, y_eval, reference.reshape(len(x_eval), -1))
    info = read_tflite(data)
    for c in results:
        c.problem = _problem(c, spec.fmt)
    problems = [c.problem for c in results if c.runtime in targets and c.problem]
    shipped = not problems
    reason = "; ".join(problems)
    name = "baseline-float32" if baseline else spec.name
    a = Artifact(
        name=name, fmt=spec.fmt, sparse=spec.sparse, path=None, bytes=len(data), gzip_bytes=info.gzip_bytes,
        sha256=hashlib.sha256(data).hexdigest(), shipped=shipped, reason=reason or "runs correctly on " + ", ".join(targets),
        checks=results, weight_bytes=info.weight_bytes, graph_bytes=info.graph_bytes,
        tensors=[{"name": t.name, "shape": t.shape, "dtype": t.dtype, "storage": t.storage, "bytes": t.buffer_bytes,
                  "index_bytes": t.sparse_index_bytes,
                  "sparsity": None if t.zero_fraction is None else round(t.zero_fraction, 4)}
                 for t in info.tensors if t.constant],
        content=data,
    )
    if baseline:
        place(a, out)
    return a


def artifacts_for(source, fmt: str, io: str, pruned: bool, recipe: Recipe, dataset: Dataset, x_eval, y_eval,
                   out: Path, model_name: str, log) -> list[Artifact]:
    """Build dense and/or sparse encodings of one format and decide which ships."""
    targets = tuple(recipe.convert.targets)
    mode = recipe.convert.sparse if pruned else "off"
    dense = sparse = None
    if mode in ("auto", "off"):
        dense = build_artifact(source, ArtifactSpec(fmt, False, io), dataset, x_eval, y_eval, out, model_name, targets)
    if mode in ("auto", "on"):
        sparse = build_artifact(source, ArtifactSpec(fmt, True, io), dataset, x_eval, y_eval, out, model_name,
                                 targets)
    if mode == "auto" and sparse is not None and dense is not None:
        if sparse.shipped and sparse.bytes < dense.bytes:
            dense.shipped, dense.reason = False, f"sparse encoding is smaller ({sparse.bytes:,} < {dense.bytes:,} bytes)"
        elif sparse.shipped:
            sparse.shipped, sparse.reason = False, f"no smaller than dense ({sparse.bytes:,} >= {dense.bytes:,} bytes)"
        # else: sparse.reason already says which runtime refused it
    produced = [a for a in (dense, sparse) if a is not None]
    for a in produced:
        place(a, out)
        state = "shipped" if a.shipped else f"not shipped: {a.reason}"
        log(f"  {a.name:16s} {a.bytes:>10,} bytes  acc {_pct(a.accuracy)}  {state}")
    return produced
