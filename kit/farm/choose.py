"""Per device class: the best artifact that meets the constraints, or none and why.

An artifact's figures for a class are its worst over the class's devices
(latency: the highest median; RAM: the highest peak), because an app ships one
model to every device of the class. Flash is the model file's size; accuracy
is the pipeline's host figure (or the one given in pipeline.toml); a model that is
not a classifier is ranked by its task's figure instead (lower MSE, higher ROC AUC). A figure
that is missing fails the constraint that needs it: nothing is assumed. Among
the artifacts that pass, the pipeline's `objective` decides: accuracy (then
latency, then size), latency (then accuracy, size) or size (then latency,
accuracy). Latencies from an estimate (e.g. an emulator's modelled clock)
are used but flagged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from kit.core.metrics import higher_is_better
from kit.farm.artifacts import ArtifactEntry
from kit.farm.rundata import RunData


@dataclass
class Candidate:
    artifact: ArtifactEntry
    latency_us: float | None = None
    latency_device: str | None = None
    ram_bytes: int | None = None
    energy_uj: float | None = None
    estimate: bool = False
    #: the worst median over the devices that measured it, and over those that estimated it (plots show both)
    measured_latency_us: float | None = None
    estimated_latency_us: float | None = None
    measured_on: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def meets(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"artifact": self.artifact.sha256, "name": self.artifact.name, "label": self.artifact.label,
                "fmt": self.artifact.format.name, "bytes": self.artifact.bytes, "accuracy": self.artifact.accuracy,
                "task": self.artifact.task or "classification", "figure": self.artifact.figure,
                "figure_value": self.artifact.figure_value,
                "latency_us": self.latency_us, "latency_device": self.latency_device, "ram_bytes": self.ram_bytes,
                "energy_uj": self.energy_uj, "estimate": self.estimate,
                "measured_latency_us": self.measured_latency_us, "estimated_latency_us": self.estimated_latency_us,
                "measured_on": self.measured_on,
                "problems": self.problems, "notes": self.notes}


@dataclass
class ClassChoice:
    device_class: str
    devices: list[str]
    constraints: dict[str, Any]
    objective: str
    winner: Candidate | None
    candidates: list[Candidate]
    why_none: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"class": self.device_class, "devices": self.devices, "constraints": self.constraints,
                "objective": self.objective, "winner": self.winner.to_dict() if self.winner else None,
                "why_none": self.why_none, "candidates": [c.to_dict() for c in self.candidates]}


def choose(run: RunData) -> list[ClassChoice]:
    objective = run.plan.get("objective", "accuracy")
    return [_choose_class(run, cls, devices, objective) for cls, devices in sorted(run.classes().items())]


def _choose_class(run: RunData, cls: str, devices: list[str], objective: str) -> ClassChoice:
    limits = run.constraints(cls)
    planned = sorted({j["artifact"] for j in run.jobs if set(j["devices"]) & set(devices)})
    candidates = [_candidate(run, run.artifacts[sha], devices, limits) for sha in planned]
    passing = sorted((c for c in candidates if c.meets), key=_rank(objective))
    choice = ClassChoice(cls, devices, limits, objective, passing[0] if passing else None, candidates)
    if not passing:
        skipped = [f"{s['name']}: {s['reason']}" for s in run.plan.get("not_planned", []) if s["class"] == cls]
        if not candidates:
            choice.why_none = "no artifact was profiled on this class" + (f" ({'; '.join(skipped)})" if skipped else "")
        else:
            same: dict[str, list[str]] = {}  # one reason, every artifact it applies to
            for c in candidates:
                same.setdefault(", ".join(c.problems), []).append(c.artifact.label)
            reasons = "; ".join(f"{', '.join(labels)}: {why}" for why, labels in same.items())
            choice.why_none = f"none of {len(candidates)} artifact(s) meets the constraints — {reasons}"
    return choice


def _candidate(run: RunData, artifact: ArtifactEntry, devices: list[str], limits: dict[str, Any]) -> Candidate:
    c = Candidate(artifact)
    rows = [m for m in run.measurements if m["artifact_sha256"] == artifact.sha256 and m["device"] in devices]
    ok = [m for m in rows if m["status"] == "ok"]
    causes: dict[str, list[str]] = {}
    lost: list[str] = []
    for m in rows:
        if m["status"] == "failed":
            if run.device_lost(m):
                lost.append(m["device"])
                c.notes.append(f"not measured on {m['device']}: the device dropped out")
            else:
                causes.setdefault(run.last_error(m), []).append(m["device"])
    c.problems += [f"fails on {', '.join(devices)}: {cause}" for cause, devices in causes.items()]
    if not ok:
        if not c.problems:
            c.problems.append(_not_measured(run, devices, rows, lost))
        return c
    c.measured_on = [m["device"] for m in ok]
    worst = max(ok, key=_latency)
    c.latency_us, c.latency_device = _latency(worst), worst["device"]
    c.estimate = any(m["estimate"] for m in ok)
    measured = [_latency(m) for m in ok if not m["estimate"]]
    estimated = [_latency(m) for m in ok if m["estimate"]]
    c.measured_latency_us = max(measured) if measured else None
    c.estimated_latency_us = max(estimated) if estimated else None
    rams = [m["peak_memory_bytes"] for m in ok]
    c.ram_bytes = None if any(r is None for r in rams) else max(rams)
    energies = [m["energy_uj"] for m in ok if m["energy_uj"] is not None]
    c.energy_uj = max(energies) if energies else None
    est = " (estimate)" if c.estimate else ""
    if limits.get("max_latency_ms") is not None and c.latency_us / 1000 > limits["max_latency_ms"]:
        c.problems.append(f"latency {c.latency_us / 1000:.3g} ms{est} > {limits['max_latency_ms']:g} ms "
                          f"on {c.latency_device}")
    if limits.get("max_flash_bytes") is not None and artifact.bytes > limits["max_flash_bytes"]:
        c.problems.append(f"flash {artifact.bytes:,} B > {limits['max_flash_bytes']:,} B")
    if limits.get("max_ram_bytes") is not None:
        if c.ram_bytes is None:
            missing = [m["device"] for m in ok if m["peak_memory_bytes"] is None]
            c.problems.append(f"RAM was not measured on {', '.join(missing)}")
        elif c.ram_bytes > limits["max_ram_bytes"]:
            c.problems.append(f"RAM {c.ram_bytes:,} B > {limits['max_ram_bytes']:,} B")
    if limits.get("min_accuracy") is not None:
        if not artifact.classifier:
            c.problems.append(f"min_accuracy is a classifier's top-1, and this {artifact.task} model has none "
                              f"({artifact.score_text()})")
        elif artifact.accuracy is None:
            c.problems.append("accuracy unknown (give it in [[artifact]] or compress with labelled data)")
        elif artifact.accuracy < limits["min_accuracy"]:
            c.problems.append(f"accuracy {artifact.accuracy:.2%} < {limits['min_accuracy']:.2%}")
    return c


def _not_measured(run: RunData, devices: list[str], rows: list[dict[str, Any]], lost: list[str]) -> str:
    """Why an artifact has no measurement on a class: the devices that dropped out, by name and cause."""
    if lost:
        dropped = run.dropouts()
        why = "; ".join(f"{d} unreachable ({_first_line(dropped.get(d, 'dropped out'))})"
                        for d in dict.fromkeys(lost))
        return f"not measured: {why}"
    if run.invocations and all(i["status"] == "finished" for i in run.invocations):
        return f"not measured on {', '.join(devices)}: no job result was stored"
    return f"not measured on {', '.join(devices)} yet: the run was interrupted before its job ran"


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else text


def _latency(m: dict[str, Any]) -> float:
    return m["latency_median_us"] if m["latency_median_us"] is not None else m["latency_mean_us"]


def _quality(a: ArtifactEntry) -> float:
    """Smaller is better: minus top-1 (or ROC AUC), an MSE as it is; unknown last. Compares artifacts of one
    task (a class's artifacts normally come from one model)."""
    score = a.score()
    if score is None:
        return math.inf
    return -score[1] if higher_is_better(score[0]) else score[1]


def _rank(objective: str):
    def key(c: Candidate) -> tuple:
        acc = _quality(c.artifact)
        order = {"accuracy": (acc, c.latency_us, c.artifact.bytes),
                 "latency": (c.latency_us, acc, c.artifact.bytes),
                 "size": (c.artifact.bytes, c.latency_us, acc)}
        return (*order[objective], c.artifact.label)
    return key
