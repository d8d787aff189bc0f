"""Model loading and the built-in example architectures."""
from kit.models.loading import load_model
from kit.models.zoo import ZOO, build, train_baseline

__all__ = ["load_model", "ZOO", "build", "train_baseline"]
