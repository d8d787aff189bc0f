"""Latency regressions between two farm runs, for CI: fail the build when a model got slower.

Measurements are matched by device and artifact label (model/recipe/format),
so a retrained model with a new hash is compared with its predecessor; the
chosen model of each device class is compared too. A regression is a median
latency more than `threshold_pct` percent above the baseline's. A measured
figure is never compared with an estimated one.
"""
from __future__ import annotations

from dataclasses import dataclass

from kit.farm.rundata import RunData
from kit.farm.choose import choose


@dataclass
class Change:
    what: str  # "device pixel-1: lenet/default/int8" or "class phone-mid (chosen model)"
    baseline_us: float
    current_us: float
    regressed: bool
    note: str = ""

    @property
    def change_pct(self) -> float:
        return 100.0 * (self.current_us - self.baseline_us) / self.baseline_us


def compare_runs(current: RunData, baseline: RunData, threshold_pct: float) -> list[Change]:
    changes = []
    base = _by_label(baseline)
    for key, (us, estimate) in sorted(_by_label(current).items()):
        if key not in base:
            continue
        base_us, base_estimate = base[key]
        if estimate != base_estimate:
            continue
        changes.append(_change(f"device {key[0]}: {key[1]}", base_us, us, threshold_pct, estimate))
    base_choices = {c.device_class: c for c in choose(baseline)}
    for c in choose(current):
        b = base_choices.get(c.device_class)
        if c.winner is None or b is None or b.winner is None or c.winner.estimate != b.winner.estimate:
            continue
        note = "" if c.winner.artifact.label == b.winner.artifact.label else \
            f"chosen model changed: {b.winner.artifact.label} -> {c.winner.artifact.label}"
        change = _change(f"class {c.device_class} (chosen model)", b.winner.latency_us, c.winner.latency_us,
                         threshold_pct, c.winner.estimate)
        change.note = "; ".join(x for x in (change.note, note) if x)
        changes.append(change)
    return changes


def _change(what: str, base_us: float, us: float, threshold_pct: float, estimate: bool) -> Change:
    regressed = us > base_us * (1 + threshold_pct / 100.0)
    return Change(what, base_us, us, regressed, "estimate" if estimate else "")


def _by_label(run: RunData) -> dict[tuple[str, str], tuple[float, bool]]:
    out = {}
    for m in run.ok():
        us = m["latency_median_us"] if m["latency_median_us"] is not None else m["latency_mean_us"]
        out[(m["device"], run.artifacts[m["artifact_sha256"]].label)] = (us, bool(m["estimate"]))
    return out
