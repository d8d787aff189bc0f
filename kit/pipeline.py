"""One compression run: baseline -> prune -> fine-tune -> cluster -> quantize -> convert -> check -> write.

Every artifact is loaded on each runtime and its figures recorded; an artifact
that does not load on the runtimes the recipe targets is never shipped.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kit import _env  # noqa: F401
from kit import check as checks
from kit import prune as pruning
from kit.convert import ArtifactSpec, convert
from kit.data import Dataset, load_data
from kit.errors import DataError, KitError
from kit.finetune import History, fit, steps_per_epoch
from kit.recipe import Recipe, load_recipe
from kit.tflite_file import read_tflite


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

    def check_on(self, runtime: str) -> checks.RuntimeCheck | None:
        return next((c for c in self.checks if c.runtime == runtime), None)

    @property
    def accuracy(self) -> float | None:
        """Top-1 on the first runtime that runs the artifact correctly, in order of preference."""
        for c in self.checks:
            if c.loads and c.problem is None and c.top1 is not None:
                return c.top1
        return None


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

    @property
    def shipped(self) -> list[Artifact]:
        return [a for a in self.artifacts if a.shipped]


def compress(model: Any, recipe: Recipe | str = "default", data: Dataset | str = "mnist5k",
             out: str | Path = "runs/compress", model_name: str | None = None, teacher_epochs: int = 20,
             eval_samples: int | None = None, log=print) -> RunResult:
    """Compress `model` (a tf_keras model, a model file, or a built-in name) with `recipe` on `data`."""
    from kit.models import ZOO, build, load_model, train_baseline
    from kit.report.run_report import write_report

    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    dataset = data if isinstance(data, Dataset) else load_data(data, seed=recipe.seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _seed(recipe.seed)

    if isinstance(model, str) and model in ZOO:
        model_name = model_name or model
        log(f"training the built-in {model} baseline on {dataset.name} ({teacher_epochs} epochs)")
        flat_input = dataset.x_train.shape[1:] if model == "lenet-300-100" else None
        model = build(model, input_shape=flat_input, num_classes=dataset.num_classes)
        train_baseline(model, dataset.fit_to(model.input_shape[1:]), epochs=teacher_epochs, seed=recipe.seed)
        timings["baseline_training"] = time.perf_counter() - t_start
    elif isinstance(model, (str, Path)):
        model_name = model_name or Path(model).stem
        model = load_model(model)
    model_name = model_name or model.name
    dataset = dataset.fit_to(model.input_shape[1:])
    _check_classes(model, dataset)
    x_eval, y_eval = dataset.x_test[:eval_samples], dataset.y_test[:eval_samples]

    log(f"baseline: {model_name} on {dataset.description}")
    keras_acc = {"original": _keras_accuracy(model, x_eval, y_eval)}
    baseline = _build_artifact(model, ArtifactSpec("float32"), dataset, x_eval, y_eval, out, model_name,
                               targets=("litert",), baseline=True)

    current, history, plan_dict = model, None, None
    pruned = clustered = False
    t = time.perf_counter()
    if recipe.prune is not None:
        ft = recipe.finetune
        spe = steps_per_epoch(len(dataset.x_train), ft)
        plan = pruning.plan(model, recipe.prune, spe, ft.epochs)
        plan_dict = plan.to_dict()
        log(f"prune: {recipe.prune.schedule} to {recipe.prune.final_sparsity:.0%} ({recipe.prune.granularity}), "
            f"steps {plan.begin_step}->{plan.end_step} every {plan.frequency}, {len(plan.layers)} layers")
        wrapped = pruning.apply(model, plan, recipe.prune.schedule)
        history = fit(wrapped, dataset.x_train, dataset.y_train, ft, teacher=model,
                      extra_callbacks=pruning.callbacks(), sparsity_fn=pruning.mask_sparsity)
        current = pruning.strip(wrapped)
        pruned = True
    elif recipe.finetune is not None:
        log(f"fine-tune: {recipe.finetune.epochs} epochs")
        current = pruning.private_copy(model)
        history = fit(current, dataset.x_train, dataset.y_train, recipe.finetune, teacher=model)
    timings["prune_finetune"] = time.perf_counter() - t

    if recipe.cluster is not None:
        from kit import cluster as clustering

        t = time.perf_counter()
        log(f"cluster: {recipe.cluster.clusters} clusters, preserve_sparsity={recipe.cluster.preserve_sparsity}")
        wrapped = clustering.cluster(current, recipe.cluster)
        if recipe.cluster.epochs:
            ft = recipe.finetune or _default_finetune()
            fit(wrapped, dataset.x_train, dataset.y_train, ft, teacher=model if ft.distill else None,
                epochs=recipe.cluster.epochs, lr=recipe.cluster.learning_rate)
        current = clustering.strip(wrapped)
        clustered = True
        timings["cluster"] = time.perf_counter() - t
    keras_acc["compressed"] = _keras_accuracy(current, x_eval, y_eval)

    t = time.perf_counter()
    artifacts = []
    quantize = recipe.quantize
    modes = quantize.mode if quantize is not None else ["none"]
    for mode in modes:
        source, fmt = current, {"none": "float32"}.get(mode, mode)
        if mode == "qat":
            source, fmt = _qat(current, model, dataset, recipe, pruned, clustered, log), "int8"
            keras_acc["qat"] = _keras_accuracy(source, x_eval, y_eval)
        io = quantize.io if quantize is not None else "int8"
        artifacts += _artifacts_for(source, fmt, io, pruned, recipe, dataset, x_eval, y_eval, out, model_name, log)
    timings["convert_check"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t_start

    result = RunResult(out, recipe, dataset.description, baseline, artifacts, keras_acc,
                       pruning.kernel_sparsity(current), plan_dict, history, timings)
    current.save(out / f"{model_name}.compressed.h5")
    result.manifest_path = _write_manifest(result, model_name)
    write_report(result)
    return result


def _default_finetune():
    from kit.recipe import FinetuneStep

    return FinetuneStep()


def _seed(seed: int) -> None:
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)


def _check_classes(model, dataset: Dataset) -> None:
    units = model.output_shape[-1]
    if units is not None and dataset.num_classes > units:
        raise DataError(f"the data has labels up to {dataset.num_classes - 1} but the model has {units} outputs",
                        "use data whose labels are 0..outputs-1")


def _keras_accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(model.predict(x, batch_size=512, verbose=0).argmax(axis=1) == y))


def _qat(current, teacher, dataset: Dataset, recipe: Recipe, pruned: bool, clustered: bool, log):
    from kit.quantize import qat_model

    q = recipe.quantize
    log(f"quantization-aware training: {q.qat_epochs} epochs"
        + (" (sparsity preserved)" if pruned else "") + (" (clusters preserved)" if clustered else ""))
    qm = qat_model(current, pruned, clustered)
    ft = recipe.finetune or _default_finetune()
    fit(qm, dataset.x_train, dataset.y_train, ft, teacher=teacher if ft.distill else None, epochs=q.qat_epochs,
        lr=q.qat_learning_rate)
    return qm


def _artifacts_for(source, fmt: str, io: str, pruned: bool, recipe: Recipe, dataset: Dataset, x_eval, y_eval,
                   out: Path, model_name: str, log) -> list[Artifact]:
    """Build dense and/or sparse encodings of one format and decide which ships."""
    targets = tuple(recipe.convert.targets)
    mode = recipe.convert.sparse if pruned else "off"
    dense = sparse = None
    if mode in ("auto", "off"):
        dense = _build_artifact(source, ArtifactSpec(fmt, False, io), dataset, x_eval, y_eval, out, model_name, targets)
    if mode in ("auto", "on"):
        sparse = _build_artifact(source, ArtifactSpec(fmt, True, io), dataset, x_eval, y_eval, out, model_name,
                                 targets)
    if mode == "auto" and sparse is not None and dense is not None:
        if sparse.shipped and sparse.bytes < dense.bytes:
            dense.shipped, dense.reason = False, f"sparse encoding is smaller ({sparse.bytes:,} < {dense.bytes:,} bytes)"
        elif sparse.shipped:
            sparse.shipped, sparse.reason = False, f"no smaller than dense ({sparse.bytes:,} >= {dense.bytes:,} bytes)"
        # else: sparse.reason already says which runtime refused it
    produced = [a for a in (dense, sparse) if a is not None]
    for a in produced:
        _place(a, out)
        state = "shipped" if a.shipped else f"not shipped: {a.reason}"
        log(f"  {a.name:16s} {a.bytes:>10,} bytes  acc {_pct(a.accuracy)}  {state}")
    return produced


def _build_artifact(model, spec: ArtifactSpec, dataset: Dataset, x_eval, y_eval, out: Path, model_name: str,
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
        sha256=hashlib.sha256(data).hexdigest(), shipped=shipped, reason=reason or "loads on " + ", ".join(targets),
        checks=results, weight_bytes=info.weight_bytes, graph_bytes=info.graph_bytes,
        tensors=[{"name": t.name, "shape": t.shape, "dtype": t.dtype, "storage": t.storage, "bytes": t.buffer_bytes,
                  "index_bytes": t.sparse_index_bytes,
                  "sparsity": None if t.zero_fraction is None else round(t.zero_fraction, 4)}
                 for t in info.tensors if t.constant],
    )
    a._data = data  # written by _place once shipping is decided
    if baseline:
        _place(a, out)
    return a


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


def _place(a: Artifact, out: Path) -> None:
    folder = out if a.shipped else out / "rejected"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{a.name}.tflite"
    path.write_bytes(a._data)
    a.path = str(path)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def library_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    names = ["prunekit", "tensorflow", "tf-keras", "tensorflow-model-optimization", "ai-edge-litert", "tflite-micro",
             "numpy"]
    out = {}
    for n in names:
        try:
            out[n] = version(n)
        except PackageNotFoundError:
            out[n] = None
    return out


def _artifact_dict(a: Artifact) -> dict:
    d = asdict(a)
    d["checks"] = [c.to_dict() for c in a.checks]
    return d


def _write_manifest(r: RunResult, model_name: str) -> Path:
    manifest = {
        "model": model_name,
        "dataset": r.dataset,
        "recipe": r.recipe.to_dict(),
        "recipe_source": r.recipe.source,
        "keras_accuracy": r.keras_accuracy,
        "baseline": _artifact_dict(r.baseline),
        "artifacts": [_artifact_dict(a) for a in r.artifacts],
        "layer_sparsity": r.layer_sparsity,
        "prune_plan": r.prune_plan,
        "history": asdict(r.history) if r.history else None,
        "seconds": {k: round(v, 2) for k, v in r.seconds.items()},
        "versions": library_versions(),
    }
    path = r.out_dir / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2))
    return path


def load_manifest(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "manifest.json"
    if not path.is_file():
        raise KitError(f"{run_dir} has no manifest.json", "pass the output folder of `kit compress`")
    return json.loads(path.read_text())
