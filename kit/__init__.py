"""prunekit: prune, quantize, convert, check and deploy TensorFlow/Keras models.

    import kit
    result = kit.compress("model.h5", recipe="default", data="mnist5k", out="runs/a")
"""
from kit.core import env as _env  # noqa: F401  (must precede any TensorFlow import)
from kit.core.errors import DataError, KitError, ModelError, RecipeError, TargetError

__version__ = "0.1.0"


def compress(model, recipe="default", data="mnist5k", out="runs/compress", **kwargs):
    """Run a recipe on a model and write artifacts, manifest and report to `out`."""
    from kit.pipeline.compress import compress as _compress

    return _compress(model, recipe=recipe, data=data, out=out, **kwargs)


__all__ = ["compress", "KitError", "ModelError", "RecipeError", "DataError", "TargetError"]
