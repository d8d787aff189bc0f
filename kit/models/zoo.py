"""Built-in example architectures, so that the demo trains its own baseline in seconds."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def lenet_300_100(input_shape=(784,), num_classes: int = 10):
    """LeNet-300-100 (LeCun et al. 1998): the classic fully connected pruning benchmark."""
    import tf_keras as keras

    return keras.Sequential([
        keras.layers.InputLayer(input_shape),
        keras.layers.Flatten(),
        keras.layers.Dense(300, activation="relu", name="fc1"),
        keras.layers.Dense(100, activation="relu", name="fc2"),
        keras.layers.Dense(num_classes, name="logits"),
    ], name="lenet_300_100")


def lenet5(input_shape=(28, 28, 1), num_classes: int = 10):
    """LeNet-5 style CNN (conv 6-16, dense 120-84)."""
    import tf_keras as keras

    L = keras.layers
    return keras.Sequential([
        L.InputLayer(input_shape),
        L.Conv2D(6, 5, padding="same", activation="relu", name="conv1"),
        L.MaxPooling2D(2, name="pool1"),
        L.Conv2D(16, 5, activation="relu", name="conv2"),
        L.MaxPooling2D(2, name="pool2"),
        L.Flatten(name="flatten"),
        L.Dense(120, activation="relu", name="fc1"),
        L.Dense(84, activation="relu", name="fc2"),
        L.Dense(num_classes, name="logits"),
    ], name="lenet5")


@dataclass(frozen=True)
class ZooEntry:
    """A built-in architecture and the input it is built for."""

    build: Callable[..., Any]
    input_shape: tuple[int, ...]
    #: flattens its input first, so it is built for the data's own sample shape (any size) instead of input_shape
    flat_input: bool = False

    def input_shape_for(self, sample_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The input shape to build for data whose samples have `sample_shape`."""
        return tuple(sample_shape) if self.flat_input else self.input_shape


ZOO: dict[str, ZooEntry] = {
    "lenet-300-100": ZooEntry(lenet_300_100, (784,), flat_input=True),
    "lenet5": ZooEntry(lenet5, (28, 28, 1)),
}


def build(name: str, input_shape=None, num_classes: int = 10):
    from kit.core.errors import ModelError

    if name not in ZOO:
        raise ModelError(f"no built-in model {name!r}", f"built-in models: {', '.join(ZOO)}")
    entry = ZOO[name]
    return entry.build(input_shape or entry.input_shape, num_classes)


def train_baseline(model, data, epochs: int = 20, batch_size: int = 64, lr: float = 1e-3, seed: int = 0,
                   verbose: int = 0):
    """Train a from-scratch baseline (logits output) on `data`; returns the model."""
    import tensorflow as tf
    import tf_keras as keras

    tf.keras.utils.set_random_seed(seed)
    model.compile(keras.optimizers.Adam(lr), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  ["accuracy"])
    model.fit(data.x_train, data.y_train, epochs=epochs, batch_size=batch_size, verbose=verbose)
    return model
