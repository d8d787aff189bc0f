"""prunekit: prune, quantize, convert, check and deploy TensorFlow/Keras models.

    import kit
    result = kit.compress("model.h5", recipe="default", data="mnist5k", out="runs/a")
    info = kit.inspect("runs/a/model_int8.tflite")           # ops, tensors, sparsity, sizes
    ev = kit.evaluate("runs/a/model_int8.tflite", data="mnist5k")  # top-1/top-5 on every runtime
    prof = kit.profile("runs/a/model_int8.tflite", target="local", op_profiling=True)
    fw = kit.firmware("runs/a/model_int8.tflite", out="fw/")   # TFLite Micro project

Each returns a dataclass; `kit.api` documents every argument. The commands call the same functions.
"""
import importlib

from kit.core import env as _env  # noqa: F401  (must precede any TensorFlow import)
from kit.core.errors import DataError, KitError, ModelError, RecipeError, TargetError
from kit.core.measurement import ProfileResult

__version__ = "0.1.0"

#: the Python API, loaded on first use: every layer imports `kit` for its environment, and none of them
#: may depend on kit.api, which sits just under the commands
_API = ("compress", "inspect", "evaluate", "profile", "profile_many", "firmware", "Evaluation")


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module("kit.api"), name)
    raise AttributeError(f"module 'kit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])

__all__ = ["DataError", "Evaluation", "KitError", "ModelError", "ProfileResult", "RecipeError", "TargetError", "compress",
           "evaluate", "firmware", "inspect", "profile", "profile_many"]
