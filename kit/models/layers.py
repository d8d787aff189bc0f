"""Layers the kit's own surgery puts into a model, registered so that a saved model loads again.

`SelectFeatures` keeps chosen features of a flat input (a TFLite GATHER with a constant index vector): the
input pixels a model does not use are dropped before its first Dense, which then stores only the rows of
the ones that are left (kit.techniques.structured.features). A model saved with it loads in any program
that has imported `kit.models` (the layer is registered as `prunekit>SelectFeatures`).
"""
from __future__ import annotations

import tf_keras as keras


@keras.utils.register_keras_serializable(package="prunekit")
class SelectFeatures(keras.layers.Layer):
    """The features at `indices` of the last axis, in that order; no weights."""

    def __init__(self, indices, **kwargs):
        super().__init__(**kwargs)
        self.indices = [int(i) for i in indices]
        if not self.indices or min(self.indices) < 0:
            raise ValueError("SelectFeatures needs at least one non-negative index")

    def call(self, x):
        import tensorflow as tf

        return tf.gather(x, tf.constant(self.indices, dtype=tf.int32), axis=-1)

    def compute_output_shape(self, input_shape):
        return (*tuple(input_shape)[:-1], len(self.indices))

    def get_config(self) -> dict:
        return {**super().get_config(), "indices": list(self.indices)}
