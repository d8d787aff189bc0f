"""Load Keras models (.h5, tf-keras .keras, SavedModel) as tf_keras models, or say why not."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

from kit.core.errors import ModelError


def load_model(path: str | Path):
    """Load a model for compression. Built-in names (`lenet5`) are not handled here."""
    import tf_keras as keras

    p = Path(path)
    if not p.exists():
        raise ModelError(f"model {p} does not exist")
    if p.is_dir():
        if not (p / "saved_model.pb").is_file():
            raise ModelError(f"{p} is a folder but not a SavedModel (no saved_model.pb)")
        kind = "SavedModel"
    elif p.suffix == ".keras":
        if _keras_version(p).startswith("3"):
            return _load_keras3(p)
        kind = "tf-keras .keras"
    elif p.suffix in (".h5", ".hdf5"):
        kind = "HDF5"
    elif p.suffix == ".tflite":
        raise ModelError(f"{p} is already a TFLite flatbuffer", "compress the Keras model it was converted from; "
                         "use `kit inspect` or `kit eval` for .tflite files")
    else:
        raise ModelError(f"unknown model format {p.suffix!r} for {p}", "use .h5, .keras or a SavedModel folder")
    import kit.models.layers  # noqa: F401  (registers the layers the kit's surgery adds)

    try:
        model = keras.models.load_model(p, compile=False)
    except Exception as e:
        raise ModelError(f"cannot load {kind} model {p}: {type(e).__name__}: {_first_line(e)}",
                         "check that the file is complete; custom layers must be importable") from None
    return ensure_supported(model, p)


def ensure_supported(model, where: object = "model"):
    """TF-MOT needs a Sequential or Functional tf_keras model."""
    import tf_keras as keras

    if not isinstance(model, keras.Model):
        raise ModelError(
            f"{where} loaded as {type(model).__name__}, not a Keras model (a SavedModel without Keras metadata)",
            "save the model with tf_keras (`model.save(...)`) rather than tf.saved_model.save",
        )
    if not isinstance(model, keras.Sequential) and not getattr(model, "_is_graph_network", False):
        raise ModelError(
            f"{where} is a subclassed Keras model ({type(model).__name__}); pruning needs a Sequential or Functional "
            "graph",
            "re-express the model with the Functional API (keras.Input -> layers -> keras.Model) and load the "
            "trained weights into it with model.load_weights",
        )
    return model


def _keras_version(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as z:
            meta = json.loads(z.read("metadata.json"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, OSError) as e:
        raise ModelError(f"{path} is not a readable .keras archive ({e})") from None
    if not isinstance(meta, dict):
        raise ModelError(f"{path} is not a readable .keras archive (its metadata.json is a "
                         f"{type(meta).__name__}, not an object)")
    return str(meta.get("keras_version", ""))


def _load_keras3(path: Path):
    try:
        from kit.models.keras3 import load_keras3
    except ImportError:
        raise ModelError(
            f"{path} was saved by Keras 3; TF-MOT works only with tf_keras (Keras 2)",
            "save the model with tf_keras (`import tf_keras as keras`) or export weights and rebuild it in tf_keras",
        ) from None
    return ensure_supported(load_keras3(path), path)


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else ""
