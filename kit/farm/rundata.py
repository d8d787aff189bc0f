"""A farm run on disk: `run.json` (the plan) next to the results store (the measurements).

`run.json` is written before any job starts and lists every planned job, so
a report or export of an interrupted run knows what is missing. Reports,
selection and export read a run only through `load_run`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.core.errors import KitError
from kit.core.jsonio import dumps as strict_dumps
from kit.farm.artifacts import ArtifactEntry
from kit.farm.store import Key, ResultsStore

RUN_FILE = "run.json"
FORMAT_VERSION = 1


@dataclass
class RunData:
    dir: Path
    name: str
    plan: dict[str, Any]
    artifacts: dict[str, ArtifactEntry]
    devices: dict[str, dict[str, Any]]
    measurements: list[dict[str, Any]]
    attempts: list[dict[str, Any]]
    invocations: list[dict[str, Any]] = field(default_factory=list)
    store_path: Path | None = None

    @property
    def jobs(self) -> list[dict[str, Any]]:
        return self.plan["jobs"]

    def classes(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for name, d in self.devices.items():
            out.setdefault(d["class"], []).append(name)
        return out

    def constraints(self, device_class: str) -> dict[str, Any]:
        return self.plan["constraints"].get(device_class, {})

    def ok(self) -> list[dict[str, Any]]:
        return [m for m in self.measurements if m["status"] == "ok"]

    def failed(self) -> list[dict[str, Any]]:
        return [m for m in self.measurements if m["status"] == "failed"]

    def _tries(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        return [a for a in self.attempts if (a["artifact_sha256"], a["device"], a["settings_hash"]) ==
                (row["artifact_sha256"], row["device"], row["settings_hash"])]

    def device_lost(self, row: dict[str, Any]) -> bool:
        """Did the failure of this row come from its device dropping out (its last attempt, or no attempt)?"""
        tries = self._tries(row)
        return not tries or bool(tries[-1]["device_lost"])

    def last_error(self, row: dict[str, Any]) -> str:
        """The cause of the last failed attempt on this row's device (the row's own text sums up all attempts)."""
        tries = self._tries(row)
        return tries[-1]["error"] if tries else row["error"]

    def dropouts(self) -> dict[str, str]:
        """device -> why it dropped out (its first attempt that lost the device), for devices that did."""
        out: dict[str, str] = {}
        for a in self.attempts:
            if a["device_lost"]:
                out.setdefault(a["device"], a["error"])
        return out

    def failure_groups(self, rows: list[dict[str, Any]] | None = None) -> list[FailureGroup]:
        """Failed rows (default: all), one group per cause with the devices named: a dead device is one entry,
        not one per job, and an artifact refused alike by several boards is one entry naming them all.

        A device that dropped out groups every job it lost under the cause it dropped out with; an artifact
        failure groups by its last attempt's cause.
        """
        dropped = self.dropouts()
        groups: dict[tuple[bool, str], FailureGroup] = {}
        for m in self.failed() if rows is None else rows:
            lost = self.device_lost(m)
            cause = ((dropped.get(m["device"]) or m["error"]) if lost else self.last_error(m)) or "no cause recorded"
            group = groups.setdefault((lost, cause), FailureGroup([], lost, cause, [], 0))
            a = self.artifacts.get(m["artifact_sha256"])
            label = a.label if a else m["artifact_sha256"][:12]
            group.jobs += 1
            if m["device"] not in group.devices:
                group.devices.append(m["device"])
            if label not in group.artifacts:
                group.artifacts.append(label)
        for g in groups.values():
            g.devices.sort()
        return sorted(groups.values(), key=lambda g: (g.devices, not g.device_lost, g.cause))


@dataclass
class FailureGroup:
    """Failed jobs that share a cause: the devices they ran on, the artifacts, how many jobs."""

    devices: list[str]
    device_lost: bool
    cause: str
    artifacts: list[str]
    jobs: int

    def headline(self) -> str:
        """One line: the devices named, what happened; the cause's first line."""
        first = self.cause.strip().splitlines()[0] if self.cause.strip() else "no cause recorded"
        where = ", ".join(self.devices)
        if self.device_lost:
            return f"failed: {where} unreachable, dropped out: {first}"
        return f"failed on {where}: {first}"


#: how `memory_method` texts are sorted into columns that measure one thing each: kind -> (heading, what)
MEMORY_KINDS = {
    "arena": ("TFLM arena", "bytes of the board's TensorFlow Lite Micro tensor arena in use"),
    "process": ("process peak", "peak RSS or memory footprint of the whole process that ran the model"),
    "growth": ("process growth", "memory the run added to the process (model and runtime, not the total)"),
}


def memory_kind(method: str | None) -> str | None:
    """`arena`, `process` or `growth` for a stored `memory_method`; None when nothing was measured."""
    if not method:
        return None
    text = method.lower()
    if "arena" in text:
        return "arena"
    if "growth" in text or "delta" in text:
        return "growth"
    return "process"


def store_rows(run: RunData) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Every row the run's store holds for this pipeline (any selection, any invocation), with `latest` set on
    the rows of the current plan; and the store's artifacts by sha256."""
    plan_keys = {Key(j["artifact"], dev, j["settings_hash"]) for j in run.plan["jobs"] for dev in j["devices"]}
    with ResultsStore(run.store_path, read_only=True) as store:
        ours = {i["id"] for i in store.invocations(run.name)}
        rows = [m for m in store.measurements() if m["invocation"] in ours or
                Key(m["artifact_sha256"], m["device"], m["settings_hash"]) in plan_keys]
        artifacts = {a["sha256"]: a for a in store.artifacts()}
    for m in rows:
        m["latest"] = Key(m["artifact_sha256"], m["device"], m["settings_hash"]) in plan_keys
    return rows, artifacts


def write_plan(run_dir: Path, plan: dict[str, Any]) -> Path:
    """Atomically: a reader never sees half a file, even if the orchestrator is killed while writing."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / RUN_FILE
    tmp = path.with_suffix(".json.tmp")
    with open(tmp, "w") as f:
        f.write(strict_dumps({"format": FORMAT_VERSION, **plan}))
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    return path


def load_run(run_dir: str | Path) -> RunData:
    d = Path(run_dir)
    path = d / RUN_FILE
    if not path.is_file():
        raise KitError(f"{d} is not a farm run: it has no {RUN_FILE}", "pass the `out` folder of a `kit run`")
    try:
        plan = json.loads(path.read_text())
    except ValueError as e:
        raise KitError(f"{path} is damaged: {e}", "run the pipeline again to rewrite it") from None
    if plan.get("format") != FORMAT_VERSION:
        raise KitError(f"{path} has format {plan.get('format')!r}; this kit reads format {FORMAT_VERSION}")
    store_path = Path(plan["store"])
    if not store_path.is_absolute():
        store_path = d / store_path
    if not store_path.is_file():
        raise KitError(f"the results store {store_path} of run {d} is missing")
    keys = {Key(j["artifact"], dev, j["settings_hash"]) for j in plan["jobs"] for dev in j["devices"]}
    with ResultsStore(store_path, read_only=True) as store:  # reading never creates or changes a store
        measurements = store.measurements(keys)
        attempts = [a for a in store.attempts() if Key(a["artifact_sha256"], a["device"], a["settings_hash"]) in keys]
        invocations = store.invocations(plan["name"])
    return RunData(
        dir=d, name=plan["name"], plan=plan,
        artifacts={a["sha256"]: ArtifactEntry.from_dict(a) for a in plan["artifacts"]},
        devices={dev["name"]: dev for dev in plan["devices"]},
        measurements=measurements, attempts=attempts, invocations=invocations, store_path=store_path,
    )
