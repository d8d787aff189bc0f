"""Model loading, the built-in example architectures, and what a MODEL argument resolves to."""
from kit.models.loading import load_model
from kit.models.resolve import ResolvedModel, resolve_model
from kit.models.zoo import ZOO, ZooEntry, build, train_baseline

__all__ = ["ZOO", "ResolvedModel", "ZooEntry", "build", "load_model", "resolve_model", "train_baseline"]
