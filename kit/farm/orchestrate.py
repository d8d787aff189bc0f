"""`kit run`: compress once, profile every artifact on the selected devices, choose, export.

The plan (`run.json`) is written before the first job; measurements go to the
results store as they finish. Running the same pipeline again resumes: the
compression outputs are reused when their inputs are unchanged, and jobs with
a measurement in the store are not run again.
"""
from __future__ import annotations

import contextlib
import fcntl
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from kit.core.errors import KitError
from kit.core.jsonio import dumps as strict_dumps
from kit.core.vocab import ENCODINGS, MODE_PRECISION, format_name
from kit.farm import artifacts as artifact_files
from kit.farm.artifacts import ArtifactEntry
from kit.farm.compute import CompressJob, run_compress_jobs
from kit.farm.inventory import Device, load_farm
from kit.farm.progress import Progress
from kit.farm.rundata import load_run, write_plan
from kit.farm.scheduler import Job, Report, Scheduler
from kit.farm.choose import ClassChoice, choose
from kit.farm.spec import PipelineSpec
from kit.farm.store import ResultsStore, settings_hash, settings_key
from kit.pipeline.manifest import load_manifest

if TYPE_CHECKING:
    from kit.recipe import Recipe

#: device kind -> the pipeline host check that stands for its runtime
KIND_RUNTIME = {"mcu": "tflm", "linux": "litert", "android": "litert", "edgetpu": "litert"}


@dataclass
class RunOutcome:
    run_dir: Path
    planned: int
    skipped: int
    report: Report
    choices: list[ClassChoice]
    exported: list[Path]
    invocation: str = ""
    #: the whole `kit run`, from reading the farm to the export
    wall_s: float = 0.0
    #: compression (zero when every output was reused)
    compress_s: float = 0.0

    @property
    def profile_s(self) -> float:
        """The profiling jobs on the devices (the scheduler's time)."""
        return self.report.wall_s


def run_pipeline(spec: PipelineSpec, log: Callable[[str], None] = print, live: bool | None = None,
                 quiet_progress: bool = False, progress: Progress | None = None) -> RunOutcome:
    """`progress` replaces the terminal display (e.g. a CI reporter); by default one is made here."""
    t0 = time.monotonic()
    farm = load_farm(spec.farm)
    devices = farm.select(spec.select)
    spec.out.mkdir(parents=True, exist_ok=True)
    with _exclusive(spec.out):
        outcome = _run_locked(spec, devices, log, live, quiet_progress, progress)
    outcome.wall_s = time.monotonic() - t0
    return outcome


def _run_locked(spec: PipelineSpec, devices: list[Device], log: Callable[[str], None], live: bool | None,
                quiet_progress: bool, progress: Progress | None) -> RunOutcome:
    t_compress = time.monotonic()
    artifacts, skipped_recipes = _artifacts(spec, devices, log)
    compress_s = time.monotonic() - t_compress
    jobs, not_planned = plan_jobs(spec, devices, artifacts)
    not_planned += skipped_recipes
    if not jobs:
        raise KitError("no artifact can run on any selected device",
                       "; ".join(f"{n['name']} on {n['class']}: {n['reason']}" for n in not_planned)[:800])
    with ResultsStore(spec.store) as store:
        for a in artifacts:
            store.add_artifact(a.sha256, a.name, a.format.name, a.bytes, a.path, a.model, a.recipe, a.accuracy,
                               a.accuracy_source, {"label": a.label, "recipe_sha256": a.recipe_sha256,
                                                   **({} if a.classifier else {"task": a.task, "figure": a.figure,
                                                                               "figure_value": a.figure_value})})
        write_plan(spec.out, _plan(spec, devices, artifacts, jobs, not_planned))
        done = store.done()
        todo = [j for j in jobs if not any(j.key(d) in done for d in j.devices)]
        skipped = len(jobs) - len(todo)
        invocation = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        store.begin(invocation, spec.name, len(jobs), skipped)
        log(f"{len(jobs)} job(s): {len(artifacts)} artifact(s) on {len(devices)} device(s); "
            f"{skipped} already measured, running {len(todo)}")
        if progress is None:
            progress = Progress([d.name for d in devices], len(todo), live=live, enabled=not quiet_progress)
        progress.total = len(todo)
        scheduler = Scheduler(devices, store, invocation, max_attempts=spec.max_attempts,
                              probe_timeout_s=spec.probe_timeout_s, progress=progress)
        try:
            report = scheduler.run(todo)
        finally:
            progress.close()
        store.end(invocation, "interrupted" if report.interrupted else "finished")
    run = load_run(spec.out)
    choices = choose(run)
    (spec.out / "selection.json").write_text(strict_dumps([c.to_dict() for c in choices]))
    exported: list[Path] = []
    if not report.interrupted and (spec.export.android or spec.export.firmware):
        from kit.farm.export import export_run

        exported = export_run(run, choices, android=spec.export.android, firmware=spec.export.firmware, log=log)
    return RunOutcome(spec.out, len(jobs), skipped, report, choices, exported, invocation, compress_s=compress_s)


@contextlib.contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """One `kit run` per run folder at a time; the OS drops the lock when the process ends, even on kill -9."""
    with open(out / ".kit-run.lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise KitError(f"another `kit run` is using {out}",
                           "wait for it to finish, or give this pipeline another `out` folder") from None
        yield


def plan_jobs(spec: PipelineSpec, devices: list[Device],
              artifacts: list[ArtifactEntry]) -> tuple[list[Job], list[dict]]:
    """Jobs for every artifact a device's profile loads; why the others are not planned."""
    jobs: list[Job] = []
    not_planned: list[dict] = []
    groups: dict[tuple[str, str], list[Device]] = {}
    for d in devices:
        key = (d.device_class, d.profile.name) if spec.spread == "pool" else (d.device_class, d.name)
        groups.setdefault(key, []).append(d)
    for a in artifacts:
        for (cls, _), members in groups.items():
            profile = members[0].profile
            if not profile.accepts(a.format.name):
                not_planned.append({"artifact": a.sha256, "name": a.label, "class": cls,
                                    "reason": f"profile {profile.name} does not load {a.format.name} models"})
                continue
            problem = a.host_problem(KIND_RUNTIME.get(profile.kind, "litert"))
            if problem:
                not_planned.append({"artifact": a.sha256, "name": a.label, "class": cls,
                                    "reason": f"the pipeline's host check: {problem}"})
                continue
            settings = spec.run_settings(cls)
            jobs.append(Job(a, settings, settings_hash(settings),
                            [m.name for m in members], a.label, spec.timeout_for(settings)))
    return jobs, not_planned


def _artifacts(spec: PipelineSpec, devices: list[Device],
               log: Callable[[str], None]) -> tuple[list[ArtifactEntry], list[dict]]:
    """The artifacts to profile, with unique labels; the recipes not compressed and why."""
    entries = [artifact_files.from_file(a.path, a.name, a.format, a.accuracy, a.model, "given in the pipeline file")
               for a in spec.artifacts]
    skipped: list[dict] = []
    if spec.model is not None:
        compressed, skipped = _compressed(spec, devices, log)
        entries += compressed
    unique: dict[str, ArtifactEntry] = {}
    for e in entries:
        unique.setdefault(e.sha256, e)
    if not unique and skipped:
        raise KitError("no recipe of the pipeline makes a model any selected device loads",
                       "; ".join(f"{s['name']}: {s['reason']}" for s in skipped)[:800])
    return artifact_files.unique_labels(list(unique.values())), skipped


def recipe_formats(recipe: Recipe, modes: list[str]) -> dict[str, set[str]]:
    """mode -> the format names its artifacts can have (`[convert] sparse`: on = sparse, off = dense, auto = either)."""
    sparse = recipe.convert.sparse if recipe.convert is not None else "auto"
    encodings = {"on": ("sparse",), "off": ("dense",)}.get(sparse, ENCODINGS)
    return {mode: {format_name(MODE_PRECISION[mode], e) for e in encodings} for mode in modes}


def _compressed(spec: PipelineSpec, devices: list[Device],
                log: Callable[[str], None]) -> tuple[list[ArtifactEntry], list[dict]]:
    """Compress with every recipe some selected device can use; a recipe no device can use is not trained."""
    from kit.models import ZOO
    from kit.recipe import load_recipe

    m = spec.model
    model_name = Path(m.source).stem if Path(m.source).suffix else m.source
    accepted = {f for d in devices for f in d.profile.formats}
    jobs, skipped = [], []
    for r in m.recipes:
        recipe = load_recipe(r)
        modes = recipe.quantize.mode if recipe.quantize is not None else ["none"]
        formats = recipe_formats(recipe, modes)
        needed = [mode for mode in modes if formats[mode] & accepted]
        if not needed:
            made = sorted(set().union(*formats.values()))
            reason = (f"makes {' or '.join(made)} models, which no selected device loads (they load "
                      f"{', '.join(sorted(accepted))}): not compressed")
            log(f"recipe {recipe.name} {reason}")
            skipped.append({"artifact": None, "name": f"{model_name}/{recipe.name}", "class": "every selected class",
                            "reason": reason})
            continue
        if needed != modes:
            log(f"recipe {recipe.name}: building {', '.join(needed)} only "
                f"(no selected device loads {', '.join(MODE_PRECISION[x] for x in modes if x not in needed)})")
        jobs.append(CompressJob(model=m.source, recipe=r, data=m.data, out_dir=str(spec.out / "compress" / recipe.name),
                                model_name=model_name, teacher_epochs=m.teacher_epochs, eval_samples=m.eval_samples,
                                distribute=spec.distribute, modes=needed if recipe.quantize is not None else None))
    if len(jobs) > 1 and m.source in ZOO:
        jobs[0].save_baseline = True  # one trained baseline for every recipe
    entries: list[ArtifactEntry] = []
    have_baseline = False
    for out in run_compress_jobs(jobs, spec.backend, spec.workers, spec.ray_address, log):
        for e in artifact_files.from_manifest(load_manifest(out), out, model_name):
            if e.recipe is None:  # the baseline: one per model, whichever recipe's job converted it
                if not m.include_baseline or have_baseline:
                    continue
                have_baseline = True
            entries.append(e)
    return entries, skipped


def _plan(spec: PipelineSpec, devices: list[Device], artifacts: list[ArtifactEntry], jobs: list[Job],
          not_planned: list[dict]) -> dict:
    classes = sorted({d.device_class for d in devices})
    export = spec.export
    return {
        "name": spec.name,
        "pipeline": str(spec.path),
        "store": str(spec.store),
        "objective": spec.objective,
        "spread": spec.spread,
        "constraints": {c: spec.constraints_for(c).to_dict() for c in classes},
        "export": {"labels": str(export.labels) if export.labels else None, "normalisation": export.normalisation,
                   "board": export.board},
        "devices": [d.to_dict() for d in devices],
        "artifacts": [a.to_dict() for a in artifacts],
        "jobs": [{"artifact": j.artifact.sha256, "label": j.label, "devices": j.devices,
                  "settings_hash": j.settings_hash, "settings": settings_key(j.settings)} for j in jobs],
        "not_planned": not_planned,
    }
