"""Weight clustering (TF-MOT), optionally keeping the zeros that pruning made."""
from __future__ import annotations

from typing import TYPE_CHECKING

from kit.techniques.prune import private_copy

if TYPE_CHECKING:
    from kit.steps.cluster import ClusterStep


def cluster(model, step: ClusterStep, skip: set[str] = frozenset()):
    """Wrap every Dense/Conv kernel for clustering; returns the wrapped model (train it, then `strip`)."""
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    c = tfmot.clustering.keras
    params = {
        "number_of_clusters": step.clusters,
        "cluster_centroids_init": c.CentroidInitialization.KMEANS_PLUS_PLUS,
        "preserve_sparsity": step.preserve_sparsity,
    }

    def wrap(layer):
        if layer.name not in skip and isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D,
                                                         keras.layers.DepthwiseConv2D)):
            return c.cluster_weights(layer, **params)
        return layer

    # wrappers take their centroids from the layers they hold: those of a private copy
    return keras.models.clone_model(private_copy(model), clone_function=wrap)


def strip(model):
    import tensorflow_model_optimization as tfmot

    return tfmot.clustering.keras.strip_clustering(model)
