"""[finetune]: training after the model changed — with [prune] it is the pruning schedule's training, after
[structured] the recovery; optionally distilled from the original model and over shifted image copies. The loss is
the task's (kit.techniques.finetune): cross-entropy for a classifier, MSE for an autoencoder or regression model."""
from __future__ import annotations

from dataclasses import dataclass

from kit.steps.base import StepContext, StepSpec, key, table_reader


@dataclass
class Distill:
    temperature: float = key(4.0, "softmax temperature of teacher and student", type=float,
                             check=lambda x: 0 < x <= 100, allowed="0 < x <= 100")
    alpha: float = key(0.5, "weight of the hard-label loss; 1 - alpha goes to the teacher", type=float,
                       check=lambda x: 0 <= x <= 1, allowed="0 <= x <= 1")


@dataclass
class Augment:
    """Shifted copies of the training images; with distillation the teacher labels each copy."""

    shift: int = key(2, "largest translation in pixels, each direction", type=int, check=lambda x: 1 <= x <= 64,
                     allowed="1 to 64 pixels")
    copies: int = key(2, "shifted copies added per training image", type=int, check=lambda x: 1 <= x <= 32,
                      allowed="1 to 32")


@dataclass
class FinetuneStep:
    epochs: int = key(4, "passes over the training split, shifted copies included", type=int,
                      check=lambda x: 1 <= x <= 10000, allowed="1 to 10000")
    learning_rate: float = key(1e-3, "Adam learning rate", type=float, check=lambda x: 0 < x < 1, allowed="0 < x < 1")
    batch_size: int = key(64, "training batch size", type=int, check=lambda x: 1 <= x <= 65536, allowed="1 to 65536")
    validation_split: float = key(0.1, "share of the training split held out for validation", type=float,
                                  check=lambda x: 0 <= x < 0.9, allowed="0 <= x < 0.9")
    distill: Distill | None = key(None, "knowledge distillation from the original model", read=table_reader(Distill),
                                  shape="[finetune.distill]: temperature, alpha")
    augment: Augment | None = key(None, "image inputs: shifted copies labelled by the teacher",
                                  read=table_reader(Augment), shape="[finetune.augment]: shift, copies")


@dataclass
class FinetuneResult:
    epochs: int


def run(ctx: StepContext) -> FinetuneResult | None:
    """A plain fine-tune of the model, unless a step (pruning) already trained with these settings."""
    from kit.techniques.finetune import fit
    from kit.techniques.prune import private_copy

    if ctx.finetuned:
        return None
    ft = ctx.recipe.finetune
    aug = ft.augment
    ctx.log(f"fine-tune: {ft.epochs} epochs"
            + (f" over the images and {aug.copies} copies shifted up to {aug.shift} px" if aug else ""))
    ctx.model = private_copy(ctx.model)
    ctx.history = fit(ctx.model, ctx.dataset.x_train, ctx.dataset.y_train, ft, teacher=ctx.teacher, task=ctx.task)
    ctx.finetuned = True
    return FinetuneResult(ft.epochs)


STEP = StepSpec("finetune", FinetuneStep, run, timing="prune_finetune")


def settings(ctx: StepContext) -> FinetuneStep:
    """The recipe's [finetune], or its defaults for steps that train without one."""
    return ctx.recipe.finetune or FinetuneStep()
