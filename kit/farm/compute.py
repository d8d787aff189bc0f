"""Compression jobs for `kit run`: a local process pool (default) or a Ray cluster.

Each job (one model x one recipe) runs `kit.pipeline.compress.compress` in a worker
with its inputs sent along (model file bytes, recipe text, .npz bytes), so a
worker on another host needs no shared file system: it compresses in a
temporary folder and sends the output files back; the orchestrator writes them
under the run folder together with a stamp of the inputs. A job whose stamp
matches is not run again (resume after a crash).

Ray: `pip install prunekit[ray]`, then `[compute] backend = "ray"` and
`ray_address = "auto"` (an existing cluster; every node needs prunekit
installed) or no address (a local Ray instance). Fine-tuning can run under a
`tf.distribute` strategy (`distribute = "mirrored"`: MirroredStrategy over the
worker's GPUs, or its CPU when it has none); TF-MOT's pruning and clustering
wrappers support it.

One baseline per model: when a built-in model is compressed with several
recipes, the first job trains it and sends the trained model back
(`trained-baseline/<model>.h5`); the other jobs start from that file, so every
recipe compresses the same weights and the run has one baseline.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from kit.core.errors import KitError

STAMP = "farm_job.json"
#: where a job that trained a built-in model keeps it, inside its output folder
TRAINED_BASELINE = "trained-baseline"


@dataclass
class CompressJob:
    model: str  # a model file path or a built-in model name
    recipe: str  # a built-in recipe name or a .toml path
    data: str  # a built-in data set name or an .npz path
    out_dir: str
    model_name: str
    teacher_epochs: int = 20
    eval_samples: int | None = None
    distribute: str = "none"
    #: quantization modes to build (a subset of the recipe's: only formats some selected device loads)
    modes: list[str] | None = None
    #: a built-in model: train it, save it under TRAINED_BASELINE and compress that file
    save_baseline: bool = False

    def payload(self) -> dict[str, Any]:
        """Everything a worker needs, by value."""
        from kit.recipe import load_recipe

        recipe = load_recipe(self.recipe)
        model_path = Path(self.model)
        payload = {"model_name": self.model_name, "recipe_text": recipe.source,
                   "recipe_where": Path(self.recipe).name if self.recipe.endswith(".toml") else f"{self.recipe}.toml",
                   "teacher_epochs": self.teacher_epochs, "eval_samples": self.eval_samples,
                   "distribute": self.distribute, "modes": self.modes, "save_baseline": self.save_baseline,
                   "model": None, "model_bytes": None,
                   "data": self.data,
                   "data_bytes": None}
        if model_path.is_file():
            payload["model_bytes"], payload["model"] = model_path.read_bytes(), model_path.name
        elif model_path.is_dir():
            raise KitError(f"model {self.model} is a folder", "farm runs take a Keras .h5/.keras file or a built-in")
        else:
            payload["model"] = self.model
        if self.data.endswith(".npz"):
            payload["data_bytes"] = Path(self.data).read_bytes()
        return payload

    def stamp(self, payload: dict[str, Any]) -> str:
        h = hashlib.sha256()
        for key in sorted(payload):
            value = payload[key]
            h.update(key.encode())
            h.update(value if isinstance(value, bytes) else json.dumps(value).encode())
        return h.hexdigest()


def trained_baseline(out_dir: str | Path, model_name: str) -> Path:
    """The trained built-in model a `save_baseline` job leaves in its output folder."""
    return Path(out_dir) / TRAINED_BASELINE / f"{model_name}.h5"


def run_compress_jobs(jobs: list[CompressJob], backend: str = "local", workers: int = 1,
                      ray_address: str | None = None, log: Callable[[str], None] = print) -> list[Path]:
    """Run the jobs not already done; return each job's output folder (with manifest.json), in order.

    A job with `save_baseline` runs first, alone; the others then compress the model it trained.
    """
    first = [j for j in jobs if j.save_baseline]
    if first and len(jobs) > 1:
        [lead] = first
        rest = [j for j in jobs if j is not lead]
        _run_batch([lead], backend, workers, ray_address, log)
        trained = str(trained_baseline(lead.out_dir, lead.model_name))
        for j in rest:
            j.model = trained
        log(f"the other {len(rest)} recipe(s) start from the baseline trained once: {trained}")
        _run_batch(rest, backend, workers, ray_address, log)
    else:
        _run_batch(jobs, backend, workers, ray_address, log)
    return [Path(j.out_dir) for j in jobs]


def _run_batch(jobs: list[CompressJob], backend: str, workers: int, ray_address: str | None,
               log: Callable[[str], None]) -> None:
    payloads = [j.payload() for j in jobs]
    stamps = [j.stamp(p) for j, p in zip(jobs, payloads)]
    todo = [i for i, j in enumerate(jobs) if not _finished(Path(j.out_dir), stamps[i])]
    for i in set(range(len(jobs))) - set(todo):
        log(f"compress {jobs[i].model_name} with {Path(jobs[i].recipe).stem}: done before, reusing {jobs[i].out_dir}")
    if todo:
        log(f"compress: {len(todo)} job(s) on the {backend} backend"
            + (f" ({workers} worker(s))" if backend == "local" else ""))
        results = (_on_ray if backend == "ray" else _on_pool)([payloads[i] for i in todo], workers, ray_address)
        for i, result in zip(todo, results):
            if "error" in result:
                raise KitError(f"compressing {jobs[i].model_name} with {Path(jobs[i].recipe).stem} failed: "
                               f"{result['error']}", result.get("hint"))
            _write_outputs(Path(jobs[i].out_dir), result, stamps[i])
            for line in result["log"]:
                log(f"  {line}")


def _finished(out: Path, stamp: str) -> bool:
    try:
        return json.loads((out / STAMP).read_text())["stamp"] == stamp and (out / "manifest.json").is_file()
    except (OSError, ValueError, KeyError):
        return False


def _write_outputs(out: Path, result: dict[str, Any], stamp: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for rel, data in result["files"].items():
        target = (out / rel).resolve()
        if out.resolve() not in target.parents:
            raise KitError(f"a compression worker returned the path {rel!r}, outside its output folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    # the manifest keeps the worker's paths as the pipeline wrote them; readers resolve them against `out`
    tmp = out / (STAMP + ".tmp")
    tmp.write_text(json.dumps({"stamp": stamp}))
    tmp.replace(out / STAMP)  # written last: a crash before it means "not done"


def _on_pool(payloads: list[dict[str, Any]], workers: int, ray_address: str | None) -> list[dict[str, Any]]:
    context = multiprocessing.get_context("spawn")  # TensorFlow must not inherit a forked runtime
    with ProcessPoolExecutor(max_workers=max(1, min(workers, len(payloads))), mp_context=context) as pool:
        return list(pool.map(compress_payload, payloads))


def _on_ray(payloads: list[dict[str, Any]], workers: int, ray_address: str | None) -> list[dict[str, Any]]:
    try:
        import ray
    except ImportError:
        raise KitError("the ray backend needs Ray", "pip install 'prunekit[ray]', or use backend = \"local\"") from None
    if not ray.is_initialized():
        ray.init(address=ray_address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
    remote = ray.remote(num_cpus=1, max_retries=1)(compress_payload)
    return ray.get([remote.remote(p) for p in payloads])


def compress_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """Worker side: compress in a temporary folder; return its files, the log, or the error."""
    import kit  # noqa: F401  (environment before TensorFlow)
    from kit.data import load_data
    from kit.models import resolve_model
    from kit.pipeline.compress import compress
    from kit.recipe import parse_recipe

    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="kit-compress-") as tmp:
        root = Path(tmp)
        try:
            model: Any = payload["model"]
            if payload["model_bytes"] is not None:
                model = root / "input" / payload["model"]
                model.parent.mkdir()
                model.write_bytes(payload["model_bytes"])
                model = str(model)
            data = payload["data"]
            if payload["data_bytes"] is not None:
                data = str(root / "data.npz")
                Path(data).write_bytes(payload["data_bytes"])
            recipe = parse_recipe(payload["recipe_text"], payload["recipe_where"])
            if payload["modes"] is not None and recipe.quantize is not None:
                recipe.quantize.mode = list(payload["modes"])
            out = root / "out"
            if payload.get("save_baseline") and payload["model_bytes"] is None:
                resolved = resolve_model(model, load_data(data, seed=recipe.seed), seed=recipe.seed,
                                         epochs=payload["teacher_epochs"], name=payload["model_name"],
                                         log=lines.append)
                saved = trained_baseline(out, payload["model_name"])
                saved.parent.mkdir(parents=True)
                resolved.model.save(saved)
                model = str(saved)  # compressed from the file, exactly as the other recipes' jobs load it

            def run() -> None:
                compress(model, recipe, data, out, model_name=payload["model_name"],
                         teacher_epochs=payload["teacher_epochs"], eval_samples=payload["eval_samples"],
                         log=lines.append)

            if payload["distribute"] == "mirrored":
                import tensorflow as tf

                strategy = tf.distribute.MirroredStrategy()
                lines.append(f"fine-tuning under tf.distribute.MirroredStrategy with "
                             f"{strategy.num_replicas_in_sync} replica(s)")
                with strategy.scope():
                    run()
            else:
                run()
        except KitError as e:
            return {"error": e.message, "hint": e.hint, "log": lines}
        files = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
        return {"files": files, "log": lines}
