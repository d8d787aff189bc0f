"""The kit from Python: one function per job, each returning a typed result (a dataclass).

The `kit` commands call these same functions and only format what they return, so a notebook or a
build script gets exactly the figures the command line prints. Defaults are the command line's; every
knob of a command is a keyword argument here. Heavy libraries (TensorFlow, the runtimes) are imported
inside the functions, so `import kit` stays fast.

    import kit
    info = kit.inspect("model_int8.tflite")
    ev = kit.evaluate("model_int8.tflite", data="mnist5k")
    prof = kit.profile("model_int8.tflite", target="local", op_profiling=True)
    fw = kit.firmware("model_int8.tflite", out="fw/")
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kit.core.artifact import RuntimeCheck
from kit.core.errors import KitError, ModelError
from kit.core.measurement import ProfileResult, RunSettings
from kit.core.metrics import Task

if TYPE_CHECKING:
    from firmware_tools.project import FirmwareProject
    from kit.core.tflite_file import TFLiteInfo
    from kit.pipeline.compress import RunResult

#: called with one line per step of a long job; None = silent (the API's default)
Progress = Callable[[str], None] | None

__all__ = ["Evaluation", "compress", "evaluate", "firmware", "inspect", "profile", "profile_many", "stderr_progress"]


def stderr_progress(message: str) -> None:
    """The commands' progress: a line per step when stderr is a log file or CI (so a long step does not
    look hung), one self-erasing status line on a terminal."""
    stream = sys.stderr
    if stream.isatty():
        stream.write(f"\r\x1b[K{message}" if message else "\r\x1b[K")
    elif message:
        stream.write(f"kit: {message}\n")
    stream.flush()


def _step(progress: Progress, message: str) -> None:
    if progress is not None:
        progress(message)


def compress(model: Any, recipe: str = "default", data: str = "mnist5k", out: str | Path = "runs/compress",
             **kwargs: Any) -> RunResult:
    """Run a recipe on a model; write artifacts, `manifest.json` and `report.md` to `out`.

    The same run as `kit compress` (without `--budget`); keyword arguments reach
    `kit.pipeline.compress.compress` (model_name, teacher_epochs, eval_samples, log, task: classification |
    autoencoder | regression, default the recipe's `[convert] task`, else detected).
    """
    from kit.pipeline.compress import compress as _compress

    return _compress(model, recipe=recipe, data=data, out=out, **kwargs)


def inspect(model: str | Path | bytes) -> TFLiteInfo:
    """What a `.tflite` holds: ops, tensors with their storage (dense, CSR, block) and sparsity,
    quantization and a size breakdown (`weight_bytes`, `graph_bytes`), read from the flatbuffer itself
    without loading a runtime, so it also describes models no runtime here can run."""
    from kit.core.tflite_file import read_tflite

    return read_tflite(model)


@dataclass
class Evaluation:
    """`evaluate`'s result: one `RuntimeCheck` per runtime (or one for the Keras model), each scored for `task`."""

    model: str
    data: str
    samples: int
    results: list[RuntimeCheck] = field(default_factory=list)
    #: what the model computes and how that was settled; it picked the figures in `results`
    task: Task = field(default_factory=lambda: Task("classification", "declared"))

    @property
    def loads_anywhere(self) -> bool:
        return any(r.loads for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "data": self.data, "samples": self.samples, "task": self.task.to_dict(),
                "results": [r.to_dict() for r in self.results]}


def evaluate(model: str | Path, data: str = "mnist5k", *, reference: str | Path | None = None,
             runtimes: Sequence[str] | None = None, samples: int | None = None, task: str | None = None,
             progress: Progress = None) -> Evaluation:
    """Score a model on a data set's test split with its task's figures, and its fidelity to `reference`.

    `task` (classification | autoencoder | regression; default detected from the model's shapes and the
    labels, refused when neither settles it) picks the figures: top-1/top-5 and top-1 agreement for a
    classifier; reconstruction MSE for an autoencoder, with the ROC AUC of its per-sample MSE as anomaly
    score when the labels are 0/1; MSE against the labels for regression; and for these two the cosine
    similarity of the outputs with `reference`'s.

    A `.tflite` is run on every runtime it is meant for (`runtimes`, default all: LiteRT, LiteRT's
    built-in kernels, TFLite Micro, LiteRT's CompiledModel API), each in a child process, so a runtime that crashes on the model
    is reported as not loading instead of taking the caller down; a Keras model is scored as it is.
    `reference` (a Keras model) gives each runtime's agreement and largest output difference.
    """
    import os

    from kit.convert import check as checks
    from kit.core.metrics import resolve_task
    from kit.data import check_labels_fit, check_samples, load_data
    from kit.models import load_model

    model = str(model)
    check_samples(samples)
    _step(progress, f"loading data {data}")
    dataset = load_data(str(data))
    if model.endswith(".tflite"):
        from kit.core.tflite_file import read_tflite

        info = read_tflite(model)
        if len(info.inputs) != 1:
            raise ModelError(f"{model} has {len(info.inputs)} inputs; kit eval evaluates models with one",
                             "evaluate a classifier with a single input tensor")
        dataset = dataset.fit_to(tuple(info.tensor(info.inputs[0]).shape[1:]))
        x, y = dataset.x_test[:samples], dataset.y_test[:samples]
        out = info.tensor(info.outputs[0]).shape
        run_task = resolve_task(task, tuple(x.shape[1:]), tuple(out[1:]), y, os.path.basename(model))
        if run_task.classifier:
            check_labels_fit(y, out[-1] if out else None, os.path.basename(model))
        chosen = tuple(runtimes or checks.EVAL_RUNTIMES)
        bad = [r for r in chosen if r not in checks.RUNTIMES]
        if bad:
            raise KitError(f"unknown runtime(s) {', '.join(bad)}", f"use {', '.join(checks.RUNTIMES)}")
        ref_out = None
        if reference:
            _step(progress, f"running the reference {reference}")
            ref_out = load_model(str(reference)).predict(x, batch_size=512, verbose=0)
        data_bytes = Path(model).read_bytes()
        results = []
        for runtime in chosen:
            _step(progress, f"{runtime}: running {len(x)} samples")
            t0 = time.perf_counter()
            results += checks.check(data_bytes, x, y, ref_out, (runtime,), name=os.path.basename(model),
                                    task=run_task.name)
            _step(progress, f"{runtime}: done in {time.perf_counter() - t0:.1f} s")
    else:
        if runtimes:
            raise KitError("runtimes apply to .tflite models", "convert the model, or drop --runtime")
        _step(progress, f"loading {model}")
        keras_model = load_model(model)
        dataset = dataset.fit_to(keras_model.input_shape[1:])
        x, y = dataset.x_test[:samples], dataset.y_test[:samples]
        run_task = resolve_task(task, tuple(keras_model.input_shape[1:]), tuple(keras_model.output_shape[1:]), y,
                                model)
        if run_task.classifier:
            check_labels_fit(y, keras_model.output_shape[-1], model)
        _step(progress, f"keras: running {len(x)} samples")
        ref_out = None
        if reference:
            _step(progress, f"running the reference {reference}")
            ref_out = load_model(str(reference)).predict(x, batch_size=512, verbose=0)
        results = [checks.score("keras", keras_model.predict(x, batch_size=512, verbose=0), y, ref_out,
                                task=run_task.name, x=x)]
    _step(progress, "")
    return Evaluation(model=model, data=dataset.description, samples=len(x), results=results, task=run_task)


def profile_many(models: Sequence[str | Path], target: str = "local", *, device_profile: str | None = None,
                 threads: int = 1, warmup: int = 10, runs: int = 100, instances: int = 1,
                 delegate: str = "default", core_mask: str | None = None, input: str | Path | None = None,
                 timeout_s: float = 600.0, op_profiling: bool = False, options: dict[str, Any] | None = None,
                 progress: Progress = None) -> list[ProfileResult]:
    """`profile` for several models over one connection to the target (one SSH session, one ADB device)."""
    from targets.registry import get_target

    settings = RunSettings(threads=threads, warmup=warmup, runs=runs, delegate=delegate, core_mask=core_mask,
                           input_path=str(input) if input else None, timeout_s=timeout_s, instances=instances)
    for m in models:
        if not Path(m).is_file():
            raise KitError(f"model file {m} does not exist")
    target_options = dict(options or {})
    if op_profiling:
        target_options["op_profiling"] = True
    results = []
    _step(progress, f"connecting to {target}")
    with get_target(target, device_profile, **target_options) as t:
        for m in models:
            _step(progress, f"{Path(m).name}: {warmup} warm-up and {runs} timed runs on {target}")
            t0 = time.perf_counter()
            results.append(t.profile(m, settings))
            _step(progress, f"{Path(m).name}: done in {time.perf_counter() - t0:.1f} s")
    _step(progress, "")
    return results


def profile(model: str | Path, target: str = "local", *, device_profile: str | None = None, threads: int = 1,
            warmup: int = 10, runs: int = 100, instances: int = 1, delegate: str = "default",
            core_mask: str | None = None, input: str | Path | None = None, timeout_s: float = 600.0,
            op_profiling: bool = False, options: dict[str, Any] | None = None,
            progress: Progress = None) -> ProfileResult:
    """Deploy a `.tflite` to a target, time every inference in a fresh process there, and clean up.

    `target` is a URI as on the command line (`local`, `ssh://user@host`, `adb://SERIAL`, `serial:///dev/…`);
    `device_profile` names a profile in `targets/profiles/` (energy method, Python path, …). Latency is
    per inference (min/median/p90/p99/std); memory is labelled with how it was measured (`memory_method`:
    process RSS on Linux targets). `op_profiling=True` adds the runtime's own per-op times
    (`result.op_profile`), or says why this runtime has none. `options` are the target's `--option`s.
    """
    return profile_many([model], target, device_profile=device_profile, threads=threads, warmup=warmup,
                        runs=runs, instances=instances, delegate=delegate, core_mask=core_mask, input=input,
                        timeout_s=timeout_s, op_profiling=op_profiling, options=options, progress=progress)[0]


def firmware(model: str | Path, out: str | Path, *, board: str = "nucleo_l4r5zi", compress: str = "auto",
             baud: int = 115200, tflm: str | Path | None = None, max_flash_bytes: int | None = None,
             max_ram_bytes: int | None = None) -> FirmwareProject:
    """Write a TFLite Micro firmware project for a full-int8 model into `out`.

    `tflm` is the TFLite Micro tree the project's Makefile builds against (default: KIT_TFLM_ROOT, else the
    shared pinned tree); `firmware_tools.build.build(project.out_dir, "mps2-an386")` then builds it.
    `max_flash_bytes` / `max_ram_bytes`: the compression is chosen so that the model's flash and RAM fit,
    or a KitError names the numbers.
    `compress`: "auto" picks per tensor the smaller of TFLM's DECODE formats and checks that the model
    still gives exactly the original outputs; "none" stores the model as it is; or one method by name.
    The result holds the measured arena, flash and RAM, and the latency/energy ESTIMATE for `board`.
    """
    from firmware_tools.compress import METHODS
    from firmware_tools.project import Limits, generate_project

    choices = ("auto", "none", *METHODS)
    if compress not in choices:
        raise KitError(f"unknown compression {compress!r}", f"use one of {', '.join(choices)}")
    methods = {"auto": METHODS, "none": ()}.get(compress, (compress,))
    return generate_project(model, out, board=board, methods=methods, baud=baud, tflm=tflm,
                            limits=Limits(max_flash_bytes, max_ram_bytes))
