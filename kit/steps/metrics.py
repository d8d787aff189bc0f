"""[metrics]: what is measured after the run — parameters and MACs, top-k, output fidelity, robustness to
noise and shifts, host latency / FPS, energy and CO2e. Runs with its defaults (no latency) when absent."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kit.core.artifact import first_correct_runtime
from kit.core.errors import KitError
from kit.core.tables import format_table
from kit.core.vocab import DELEGATE_OF_RUNTIME
from kit.steps.base import StepContext, StepSpec, key, pair_reader


def _numbers(v, t: dict, path: tuple, name: str, default: Any) -> list:
    if name not in t:
        return list(default)
    value, sigmas = t[name], name == "noise_sigmas"
    typ = (int, float) if sigmas else int
    if not isinstance(value, list) or any(isinstance(x, bool) or not isinstance(x, typ) for x in value):
        v.fail((*path, name), f"must be a list of {'numbers' if sigmas else 'integers'}, got {value!r}")
    if any(x < 0 or (not sigmas and x == 0) for x in value):
        v.fail((*path, name), f"holds {value!r}", "sigmas >= 0, shifts >= 1 pixel")
    return [float(x) for x in value] if sigmas else list(value)


@dataclass
class MetricsStep:
    noise_sigmas: list[float] = key(doc="Gaussian input noise levels for the robustness table", read=_numbers,
                                    shape="list of numbers >= 0", factory=lambda: [0.1, 0.2])
    shifts: list[int] = key(doc="input shifts in pixels for the robustness table", read=_numbers,
                            shape="list of integers >= 1", factory=lambda: [1])
    image_shape: tuple[int, int] | None = key(None, "for shifts of flattened inputs",
                                              read=pair_reader("an image size", "write height x width, e.g. \"28x28\""),
                                              shape="\"HxW\"")
    samples: int = key(2000, "test samples used for robustness and output fidelity", type=int,
                       check=lambda x: 1 <= x <= 1000000, allowed="1 to 1000000")
    latency_runs: int = key(100, "host latency of every shipped artifact (0 = not measured)", type=int,
                            check=lambda x: 0 <= x <= 100000, allowed="0 to 100000")
    grid_g_per_kwh: float | None = key(None, "grid carbon intensity for g CO2e per million inferences", type=float,
                                       check=lambda x: 0 <= x <= 5000, allowed="0 to 5000 g/kWh")


@dataclass
class MetricsResult:
    figures: dict[str, Any]  # what the manifest records under "metrics"


def run(ctx: StepContext) -> MetricsResult:
    from kit.techniques import metrics as M

    settings = ctx.recipe.metrics or MetricsStep(latency_runs=0)
    model, current = ctx.teacher, ctx.model
    n = min(settings.samples, len(ctx.x_eval))
    x, y = ctx.x_eval[:n], ctx.y_eval[:n]
    before, after = M.model_figures(model), M.model_figures(current)
    ref, out = model.predict(x, batch_size=512, verbose=0), current.predict(x, batch_size=512, verbose=0)
    mse, psnr = M.mse_psnr(ref, out)
    classes = ref.reshape(len(ref), -1).shape[1]
    m: dict[str, Any] = {
        "before": before.to_dict(), "after": after.to_dict(), "pruning_rate": M.pruning_rate(before, after),
        "output_mse": mse, "output_psnr_db": psnr, "samples": n, "test_samples": len(ctx.x_eval),
    }
    if ctx.task == "classification":
        m["top1"] = {"original": M.topk(ref, y), "compressed": M.topk(out, y)}
        m["top5"] = {"original": M.topk(ref, y, 5), "compressed": M.topk(out, y, 5)} if classes > 5 else {}
        image_shape = ctx.image_shape()
        rob = M.robustness({"original": M.keras_predict(model), "compressed": M.keras_predict(current)}, x, y,
                           settings.noise_sigmas, settings.shifts if image_shape else (), image_shape,
                           seed=ctx.recipe.seed)
        m["robustness"] = rob.to_dict()
    else:  # top-k and the robustness table (top-1 under noise) score classifiers: the task's figures instead
        from kit.core.metrics import task_scores

        m["task_scores"] = {"original": task_scores(ctx.task, ref, x, y, None),
                            "compressed": task_scores(ctx.task, out, x, y, ref)}
    m["compression"] = {}
    baseline, artifacts = ctx.baseline, ctx.artifacts
    profiles = _profile([baseline, *artifacts], settings.latency_runs, ctx.log) if settings.latency_runs else {}
    for a in [baseline, *[a for a in artifacts if a.shipped]]:
        entry = {"bytes": a.bytes, "rate": M.compression_rate(baseline.bytes, a.bytes)}
        p = profiles.get(a.name)
        if p is not None:
            median = p.latency.median_us if p.latency else None
            entry.update(median_us=median, fps=M.fps(median), energy_uj=p.energy_uj_per_inference,
                         co2e_g_per_million=M.co2e_grams_per_million(p.energy_uj_per_inference,
                                                                     settings.grid_g_per_kwh))
            m["energy_note"] = p.energy_note
        m["compression"][a.name] = entry
    ctx.metrics = m
    return MetricsResult(m)


def _profile(artifacts: list, runs: int, log) -> dict:
    """Host latency of the baseline and every shipped artifact on LiteRT (the runtime that runs it correctly)."""
    from targets.base import RunSettings
    from targets.registry import get_target

    out = {}
    with get_target("local") as host:
        for a in artifacts:
            runtime = first_correct_runtime(a.checks, exclude=("tflm",))
            if not a.shipped or not a.path or runtime is None:
                continue
            delegate = DELEGATE_OF_RUNTIME[runtime]
            try:
                out[a.name] = host.profile(Path(a.path), RunSettings(runs=runs, warmup=max(1, runs // 10),
                                                                     delegate=delegate))
            except KitError as e:
                log(f"  latency of {a.name} not measured: {e.message}")
    return out


def render(result: MetricsResult, out: Path) -> str:
    m = result.figures
    rows = [["parameters", m["before"]["params"], m["after"]["params"]],
            ["nonzero parameters", m["before"]["nonzero_params"], m["after"]["nonzero_params"]],
            ["kernel sparsity", f"{m['before']['kernel_sparsity']:.1%}", f"{m['after']['kernel_sparsity']:.1%}"],
            ["MACs", m["before"]["macs"], m["after"]["macs"]],
            ["effective MACs (sparse)", m["before"]["effective_macs"], m["after"]["effective_macs"]]]
    total = m.get("test_samples")
    split = (f"test split, first {m['samples']:,} of {total:,} samples" if total and m["samples"] < total
             else f"test split, {m['samples']:,} samples")
    if "top1" in m:
        rows += [[f"top-1 (Keras, {split})", _pct(m["top1"]["original"]), _pct(m["top1"]["compressed"])],
                 [f"top-5 (Keras, {split})", _pct(m["top5"].get("original")), _pct(m["top5"].get("compressed"))]]
    scores = m.get("task_scores", {})
    for name, label, fmt in (("mse", "MSE (Keras)", "{:.4g}"), ("auc", "ROC AUC (Keras)", "{:.2%}")):
        if any(s.get(name) is not None for s in scores.values()):
            rows.append([label, *(None if scores[k].get(name) is None else fmt.format(scores[k][name])
                                  for k in ("original", "compressed"))])
    lines = ["## Metrics", "", format_table(["", "original", "compressed"], rows, markdown=True), "",
             f"Pruning rate {m['pruning_rate']:.1%}; output MSE vs the original {m['output_mse']:.4g}, "
             f"PSNR {m['output_psnr_db']:.1f} dB.", ""]
    if m.get("compression"):
        rows = [[a, c["bytes"], f"{c['rate']:.1f}x", c.get("median_us"), c.get("fps"), c.get("energy_uj"),
                 c.get("co2e_g_per_million")] for a, c in m["compression"].items()]
        lines += [format_table(["artifact", "bytes", "compression", "median us", "FPS", "energy uJ",
                                "g CO2e / 1M inf"], rows, markdown=True), ""]
        if m.get("energy_note"):
            lines += [f"Energy: {m['energy_note']}", ""]
    rob = m.get("robustness")
    if rob:
        rows = [["clean", *(_pct(v) for v in rob["clean"].values())]]
        rows += [[k, *(_pct(v) for v in d.values())] for k, d in {**rob["noise"], **rob["shift"]}.items()]
        lines += [f"Robustness (top-1, Keras, {split}):", "",
                  format_table(["inputs", *rob["clean"].keys()], rows, markdown=True), ""]
    return "\n".join(lines)


def _pct(x) -> str | None:
    return None if x is None else f"{100 * x:.2f}%"


STEP = StepSpec("metrics", MetricsStep, run, render, stage="artifacts", in_unpruned=True, always=True)
