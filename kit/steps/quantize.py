"""[quantize]: the number formats the run converts to — float32 ("none"), dynamic range, float16, full int8,
or int8 after quantization-aware training (pruning and clustering preserved)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kit.core.vocab import MODE_PRECISION
from kit.core.vocab import QUANTIZE_MODES as QUANT_MODES
from kit.steps import finetune
from kit.steps.base import StepContext, StepSpec, key


def _modes(v, t: dict, path: tuple, name: str, default: Any) -> list[str]:
    mode = t.get(name, default)
    modes = [mode] if isinstance(mode, str) else v.string_list(t, path, name, default)
    for m in modes:
        if m not in QUANT_MODES:
            v.fail((*path, name), f"{m!r} is not a quantization mode", f"use {' | '.join(QUANT_MODES)}")
    if not modes:
        v.fail((*path, name), "lists no mode: the run would make no artifact", f"use {' | '.join(QUANT_MODES)}")
    if len(set(modes)) != len(modes):
        v.fail((*path, name), "lists a mode twice")
    return list(modes)


@dataclass
class QuantizeStep:
    mode: list[str] = key(doc="one artifact format per mode", read=_modes,
                          shape=f"mode or list of {' | '.join(QUANT_MODES)}", factory=lambda: ["int8"])
    io: str = key("int8", "input/output type of full-int8 artifacts", choices=("int8", "uint8", "float32"))
    calibration_samples: int = key(500, "representative samples for full-int8 calibration", type=int,
                                   check=lambda x: 1 <= x <= 100000, allowed="1 to 100000")
    qat_epochs: int = key(1, "quantization-aware training epochs (mode qat)", type=int,
                          check=lambda x: 1 <= x <= 1000, allowed="1 to 1000")
    qat_learning_rate: float = key(1e-4, "its learning rate", type=float, check=lambda x: 0 < x < 1,
                                   allowed="0 < x < 1")


@dataclass
class Source:
    """A model to convert, in one format."""

    model: Any
    fmt: str
    io: str = "int8"


@dataclass
class QuantizeResult:
    sources: list[Source]


def run(ctx: StepContext) -> QuantizeResult:
    q = ctx.recipe.quantize
    for mode in q.mode:
        model = ctx.model
        if mode == "qat":
            model = _qat(ctx)
            ctx.measure("qat", model)
        ctx.sources.append(Source(model, MODE_PRECISION[mode], q.io))
    return QuantizeResult(list(ctx.sources))


def _qat(ctx: StepContext):
    from kit.techniques.finetune import fit
    from kit.techniques.quantize import qat_model

    q, pruned, clustered = ctx.recipe.quantize, ctx.recipe.prune is not None, ctx.recipe.cluster is not None
    ctx.log(f"quantization-aware training: {q.qat_epochs} epochs"
            + (" (sparsity preserved)" if pruned else "") + (" (clusters preserved)" if clustered else ""))
    qm = qat_model(ctx.model, pruned, clustered)
    ft = finetune.settings(ctx)
    fit(qm, ctx.dataset.x_train, ctx.dataset.y_train, ft, teacher=ctx.teacher if ft.distill else None,
        epochs=q.qat_epochs, lr=q.qat_learning_rate)
    return qm


STEP = StepSpec("quantize", QuantizeStep, run, stage="artifacts", timing="convert_check")
