"""[cluster]: weight clustering (TF-MOT), optionally keeping the pruned zeros, with a short fine-tune."""
from __future__ import annotations

from dataclasses import dataclass

from kit.steps import finetune
from kit.steps.base import StepContext, StepSpec, key


@dataclass
class ClusterStep:
    clusters: int = key(16, "distinct values per kernel", type=int, check=lambda x: 2 <= x <= 256,
                        allowed="2 to 256")
    preserve_sparsity: bool = key(True, "pruned zeros stay zero", type=bool)
    epochs: int = key(1, "fine-tune of the cluster centroids (0 = none)", type=int, check=lambda x: 0 <= x <= 1000,
                      allowed="0 to 1000")
    learning_rate: float = key(1e-4, "of that fine-tune", type=float, check=lambda x: 0 < x < 1, allowed="0 < x < 1")


@dataclass
class ClusterResult:
    clusters: int


def run(ctx: StepContext) -> ClusterResult:
    from kit.techniques import cluster as clustering
    from kit.techniques.finetune import fit

    c = ctx.recipe.cluster
    ctx.log(f"cluster: {c.clusters} clusters, preserve_sparsity={c.preserve_sparsity}")
    wrapped = clustering.cluster(ctx.model, c)
    if c.epochs:
        ft = finetune.settings(ctx)
        fit(wrapped, ctx.dataset.x_train, ctx.dataset.y_train, ft, teacher=ctx.teacher if ft.distill else None,
            epochs=c.epochs, lr=c.learning_rate)
    ctx.model = clustering.strip(wrapped)
    return ClusterResult(c.clusters)


STEP = StepSpec("cluster", ClusterStep, run)
