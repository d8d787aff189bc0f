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
        measurements=measurements, attempts=attempts, invocations=invocations,
    )
