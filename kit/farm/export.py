"""`kit export RUN`: the chosen model per device class, in the form an app or firmware build consumes.

`--android DIR` (phones and Linux boards): `<class>.tflite` per class, the
labels file, and `prunekit_models.json` — per model its file, sha256, input
and output specs (shape, dtype, quantization), input normalisation, the source
model and recipe, and the figures measured on the farm (estimates flagged) —
which a build checks before packaging (see docs/farm.md for a Gradle task).
`--firmware DIR` (microcontroller classes): a firmware project per class from
`firmware_tools.project.generate_project` (TFLM-compressed C array, op
resolver, arena size, MLPerf Tiny protocol main) plus the same manifest.
Classes without a winner are listed under `unresolved` with the reason.
"""
from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from kit.core.errors import KitError
from kit.core.jsonio import dumps as strict_dumps
from kit.core.paths import safe_component
from kit.farm.rundata import RunData
from kit.farm.choose import ClassChoice

MANIFEST = "prunekit_models.json"
MANIFEST_FORMAT = "prunekit-models/1"


def export_run(run: RunData, choices: list[ClassChoice], android: Path | None = None, firmware: Path | None = None,
               log: Callable[[str], None] = print) -> list[Path]:
    """Write the exports; return the manifests written. Raises KitError when a chosen file changed since."""
    if android is None and firmware is None:
        raise KitError("nothing to export", "pass --android DIR and/or --firmware DIR")
    written = []
    for where, mcu in ((android, False), (firmware, True)):
        if where is None:
            continue
        wanted = [c for c in choices if _is_mcu(run, c) == mcu]
        if not wanted:
            log(f"no {'microcontroller' if mcu else 'app'} device class in run {run.name}; nothing written to {where}")
            continue
        written.append(_export(run, wanted, Path(where), mcu, log))
    return written


def unresolved(run: RunData, choices: list[ClassChoice], android: bool, firmware: bool) -> list[ClassChoice]:
    """Classes an export was asked for that have no winner."""
    return [c for c in choices if c.winner is None and (firmware if _is_mcu(run, c) else android)]


def _is_mcu(run: RunData, choice: ClassChoice) -> bool:
    return any(run.devices[d]["kind"] == "mcu" for d in choice.devices)


def _export(run: RunData, choices: list[ClassChoice], out: Path, mcu: bool, log: Callable[[str], None]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    settings = run.plan.get("export", {})
    labels = _labels(settings.get("labels"))
    if labels is not None:
        shutil.copyfile(settings["labels"], out / "labels.txt")
    models, missing = [], []
    for c in choices:
        if c.winner is None:
            missing.append({"device_class": c.device_class, "why": c.why_none})
            log(f"warning: class {c.device_class} has no model to export: {c.why_none}")
            continue
        a = c.winner.artifact
        safe_component(c.device_class, "device class")  # runs recorded before classes were checked
        data = _verified_bytes(a.path, a.sha256)
        if labels is not None:
            _check_labels(labels, a.outputs, a.label)
        entry = _entry(run, c, settings, labels)
        if mcu:
            entry.update(_firmware(a.path, out / c.device_class, settings.get("board") or "nucleo_l4r5zi",
                                   c.constraints))
        else:
            (out / f"{c.device_class}.tflite").write_bytes(data)
            entry["file"] = f"{c.device_class}.tflite"
        models.append(entry)
        log(f"exported {a.label} for {c.device_class} -> {out / entry['file']}")
    manifest = {"format": MANIFEST_FORMAT, "run": run.name, "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "models": models, "unresolved": missing}
    path = out / MANIFEST
    path.write_text(strict_dumps(manifest))
    return path


def _entry(run: RunData, c: ClassChoice, settings: dict[str, Any], labels: list[str] | None) -> dict[str, Any]:
    a = c.winner.artifact
    rows = [m for m in run.ok() if m["artifact_sha256"] == a.sha256 and m["device"] in c.devices]
    return {
        "device_class": c.device_class,
        "devices": c.devices,
        "sha256": a.sha256,
        "bytes": a.bytes,
        "format": a.format.name,
        "inputs": a.inputs,
        "outputs": a.outputs,
        "normalisation": settings.get("normalisation"),
        "labels": "labels.txt" if labels is not None else None,
        "source": {"artifact": a.name, "model": a.model, "recipe": a.recipe, "recipe_sha256": a.recipe_sha256},
        "accuracy": a.accuracy,
        "accuracy_source": a.accuracy_source,
        "constraints": c.constraints,
        "objective": c.objective,
        "measured": [{"device": m["device"], "latency_median_us": m["latency_median_us"],
                      "latency_p90_us": m["latency_p90_us"], "latency_p99_us": m["latency_p99_us"],
                      "latency_mean_us": m["latency_mean_us"], "init_us": m["init_us"],
                      "peak_memory_bytes": m["peak_memory_bytes"], "memory_method": m["memory_method"],
                      "energy_uj_per_inference": m["energy_uj"], "energy_method": m["energy_method"],
                      "estimate": bool(m["estimate"])} for m in rows],
    }


def _firmware(model: str, out: Path, board: str, limits: dict[str, Any]) -> dict[str, Any]:
    """The class's flash and RAM limits pick the compression (prune-DECODE moves weights into RAM)."""
    from firmware_tools.project import Limits, generate_project

    project = generate_project(model, out, board=board,
                               limits=Limits(limits.get("max_flash_bytes"), limits.get("max_ram_bytes")))
    return {"file": f"{out.name}/", "firmware": {"board": project.board, "flash_bytes": project.memory.flash_bytes,
                                                 "arena_bytes": project.arena_size,
                                                 "ram_bytes": project.memory.ram_bytes,
                                                 "files": sorted(str(p.relative_to(out)) for p in project.files)}}


def _verified_bytes(path: str, sha256: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise KitError(f"the chosen model {path} cannot be read: {e}", "run the pipeline again") from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise KitError(f"{path} changed since it was profiled (sha256 differs)",
                       "run the pipeline again so that what ships is what was measured")
    return data


def _labels(path: str | None) -> list[str] | None:
    if not path:
        return None
    try:
        lines = [ln.strip() for ln in Path(path).read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise KitError(f"cannot read the labels file {path}: {e}") from None
    return [ln for ln in lines if ln]


def _check_labels(labels: list[str], outputs: list[dict[str, Any]], name: str) -> None:
    if len(outputs) != 1:
        return
    classes = outputs[0]["shape"][-1] if outputs[0]["shape"] else 1
    if classes != len(labels):
        raise KitError(f"the labels file has {len(labels)} labels but {name} outputs {classes} values",
                       "fix the labels file (one label per output, in output order)")
