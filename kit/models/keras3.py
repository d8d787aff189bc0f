"""Keras 3 `.keras` files, rebuilt as tf_keras (Keras 2) models for TF-MOT and the TFLite converter.

A `.keras` file is a zip of `metadata.json` (the Keras version), `config.json`
(the architecture) and `model.weights.h5` (one `vars` group per layer, named
after the layer class in snake case, de-duplicated with `_1`, `_2`... in layer
order; newer Keras 3 releases also record the layer's name on the group). The
architecture of Sequential and Functional models is translated layer by layer
into the tf_keras equivalent and the weights are copied; this module never
imports Keras 3 and never runs code from the file (Lambda and custom layers are
refused by name).

Subclassed Keras 3 models store no architecture, only Python class names. Two
documented ways out: re-express the model with the Functional API in Keras 3
and save again, or build the same architecture in tf_keras and copy the weights
with `load_keras3_weights(model, path)` (layers matched by name).
"""
from __future__ import annotations

import inspect
import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

from kit.core.errors import ModelError

_MAX_JSON_BYTES = 64 << 20
_MAX_WEIGHTS_BYTES = 4 << 30

SUPPORTED_LAYERS = (
    "InputLayer", "Dense", "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "DepthwiseConv1D",
    "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D", "BatchNormalization", "LayerNormalization",
    "Activation", "ReLU", "LeakyReLU", "ELU", "PReLU", "Softmax", "Dropout", "SpatialDropout1D", "SpatialDropout2D",
    "GaussianNoise", "GaussianDropout", "Flatten", "Reshape", "Permute", "RepeatVector", "MaxPooling1D",
    "MaxPooling2D", "AveragePooling1D", "AveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "ZeroPadding1D", "ZeroPadding2D", "Cropping1D", "Cropping2D",
    "UpSampling1D", "UpSampling2D", "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate",
    "Rescaling", "Embedding", "Identity",
)
_RENAMED = {("LeakyReLU", "negative_slope"): "alpha", ("InputLayer", "batch_shape"): "batch_input_shape"}
_LAYER_KWARGS = {"name", "trainable", "dtype", "input_dim", "input_shape", "batch_input_shape", "batch_size",
                 "weights", "activity_regularizer", "autocast", "dynamic"}
_OBJECT_KINDS = ("initializer", "regularizer", "constraint")


def is_keras3_file(path: str | Path) -> bool:
    """True for a `.keras` zip written by Keras 3 (metadata.json says keras_version 3.x), False otherwise."""
    p = Path(path)
    if not p.exists():
        raise ModelError(f"model {p} does not exist")
    if p.is_dir() or not zipfile.is_zipfile(p):
        return False
    try:
        with zipfile.ZipFile(p) as z:
            meta = _json(z, "metadata.json", p)
    except (zipfile.BadZipFile, OSError, ModelError):
        return False
    major = str(meta.get("keras_version", "")).split(".")[0]
    return major.isdigit() and int(major) >= 3


def load_keras3(path: str | Path):
    """Rebuild a Keras 3 Sequential or Functional `.keras` model in tf_keras, with its weights."""
    p = Path(path)
    if not is_keras3_file(p):
        raise ModelError(f"{p} is not a Keras 3 .keras file", "load tf_keras files with tf_keras.models.load_model")
    with zipfile.ZipFile(p) as z:
        config = _json(z, "config.json", p)
        weights = _weights_bytes(z, p)
    kind = config.get("class_name")
    if kind not in ("Sequential", "Functional"):
        raise ModelError(
            f"{p} holds a subclassed Keras 3 model ({kind!r}): the file stores only its Python class name, not an "
            "architecture that can be rebuilt",
            "re-express it with the Functional API (keras.Input -> layers -> keras.Model) and save again, or build "
            "the same architecture in tf_keras with the same layer names and call "
            "kit.models.keras3.load_keras3_weights(model, path)")
    layer_cfgs = _list(config.get("config", {}).get("layers"), "layers", p)
    for cfg in layer_cfgs:
        _check_supported(cfg, p)
    model = _sequential(config, layer_cfgs, p) if kind == "Sequential" else _functional(config, layer_cfgs, p)
    entries = _weight_entries(weights, p)
    paths = _layer_paths(layer_cfgs, kind)
    for cfg, h5_path in zip(layer_cfgs, paths):
        if cfg["class_name"] == "InputLayer":
            continue
        name = cfg["config"]["name"]
        arrays = entries.get(("name", name), entries.get(("path", h5_path)))
        _assign(model.get_layer(name), arrays, f"{p}: layer {name!r}")
    return model


def load_keras3_weights(model, path: str | Path, mapping: dict[str, str] | None = None):
    """Copy Keras 3 weights (`.keras` or `.weights.h5`) into an existing tf_keras model, matching layers by name.

    A layer matches the weight group that records its name, or whose path ends in its name (for subclassed Keras 3
    models the path is the attribute name: `self.conv1 = ...` -> `conv1`). `mapping` overrides: tf_keras layer name
    -> weight group path. Every layer with weights must match exactly one group of the same shapes, and every group
    must be used; otherwise nothing is guessed and ModelError lists what did not match.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"weights file {p} does not exist")
    if zipfile.is_zipfile(p):
        with zipfile.ZipFile(p) as z:
            raw = _weights_bytes(z, p)
    else:
        raw = p.read_bytes()
    entries = _weight_entries(raw, p)
    groups = {key[1]: arrays for key, arrays in entries.items() if key[0] == "path"}
    names = {key[1]: arrays for key, arrays in entries.items() if key[0] == "name"}
    used: set[int] = set()
    missing = []
    for layer in _weighted_layers(model):
        path_ = (mapping or {}).get(layer.name)
        if path_ is not None:
            if path_ not in groups:
                raise ModelError(f"mapping sends {layer.name!r} to {path_!r}, which is not in {p}",
                                 f"weight groups: {', '.join(sorted(groups))}")
            arrays = groups[path_]
        else:
            arrays = names.get(layer.name)
            if arrays is None:
                tails = [a for g, a in groups.items() if g.rsplit("/", 1)[-1] == layer.name]
                arrays = tails[0] if len(tails) == 1 else None
        if arrays is None:
            missing.append(layer.name)
            continue
        _assign(layer, arrays, f"{p}: layer {layer.name!r}")
        used.add(id(arrays))
    unused = sorted(g for g, a in groups.items() if id(a) not in used)
    if missing or unused:
        raise ModelError(f"weights of {p} do not match the model: layers without weights: {missing or 'none'}; "
                         f"weight groups not used: {unused or 'none'}",
                         "name the tf_keras layers like the Keras 3 layers (or attributes), or pass mapping="
                         "{tf_keras layer name: weight group path}")
    return model


def _json(z: zipfile.ZipFile, member: str, p: Path) -> dict:
    try:
        info = z.getinfo(member)
    except KeyError:
        raise ModelError(f"{p} has no {member}; it is not a complete .keras file") from None
    if info.file_size > _MAX_JSON_BYTES:
        raise ModelError(f"{p}: {member} is {info.file_size} bytes, too large for a model description")
    try:
        data = json.loads(z.read(member))
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelError(f"{p}: {member} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ModelError(f"{p}: {member} is not a JSON object")
    return data


def _weights_bytes(z: zipfile.ZipFile, p: Path) -> bytes:
    names = z.namelist()
    if "model.weights.h5" not in names:
        sharded = [n for n in names if n.endswith(".h5") or n.endswith(".json") and "weights" in n]
        raise ModelError(f"{p} has no model.weights.h5" + (f" (found {', '.join(sharded)})" if sharded else ""),
                         "save the model unsharded with model.save('name.keras')")
    info = z.getinfo("model.weights.h5")
    if info.file_size > _MAX_WEIGHTS_BYTES:
        raise ModelError(f"{p}: model.weights.h5 is {info.file_size} bytes, larger than the kit accepts")
    return z.read("model.weights.h5")


def _list(value: Any, what: str, p: Path) -> list:
    if not isinstance(value, list):
        raise ModelError(f"{p}: config.json has no list of {what}")
    return value


def _check_supported(cfg: Any, p: Path) -> None:
    if not isinstance(cfg, dict) or not isinstance(cfg.get("config"), dict) or "class_name" not in cfg:
        raise ModelError(f"{p}: a layer entry in config.json is malformed")
    cls, name = cfg["class_name"], cfg["config"].get("name", "?")
    module = str(cfg.get("module") or "")
    if cls in ("Functional", "Sequential", "Model"):
        raise ModelError(f"{p}: layer {name!r} is a nested model, which the Keras 3 loader does not rebuild",
                         "flatten the nested model into one Functional model before saving")
    if cls not in SUPPORTED_LAYERS or not module.startswith("keras"):
        raise ModelError(f"{p}: layer {name!r} ({cls}, module {module or 'unknown'}) has no tf_keras equivalent "
                         "the kit can rebuild",
                         f"supported layers: {', '.join(SUPPORTED_LAYERS)}; replace it, or build the model in "
                         "tf_keras and use kit.models.keras3.load_keras3_weights")


def _accepted(cls) -> set[str]:
    import tf_keras as keras

    names = set(_LAYER_KWARGS)
    for klass in cls.__mro__:
        if klass is keras.layers.Layer or klass is object:
            break
        if "__init__" in vars(klass):
            names |= {n for n, prm in inspect.signature(klass.__init__).parameters.items()
                      if prm.kind not in (prm.VAR_KEYWORD, prm.VAR_POSITIONAL) and n != "self"}
    return names


def _layer(cfg: dict, p: Path):
    """A tf_keras layer from a Keras 3 layer entry; ModelError names the option tf_keras lacks."""
    import tf_keras as keras

    cls_name = cfg["class_name"]
    cls = getattr(keras.layers, cls_name)
    accepted = _accepted(cls)
    out: dict[str, Any] = {}
    name = cfg["config"].get("name", "?")
    lora = cfg["config"].get("lora_rank")
    for key, value in cfg["config"].items():
        key = _RENAMED.get((cls_name, key), key)
        if key == "dtype":
            value = _dtype(value, name, p)
        elif key == "activation":
            value = _activation(value, name, p)
        elif any(key.endswith(k) for k in _OBJECT_KINDS):
            value = _object(key, value, name, p)
        if key in accepted:
            out[key] = value
        elif value in (None, False) or (key == "lora_alpha" and not lora):
            continue
        else:
            raise ModelError(f"{p}: layer {name!r} ({cls_name}) sets {key}={value!r}, which tf_keras does not "
                             "support", "remove that option in Keras 3 and save again")
    try:
        return cls.from_config(out)
    except (TypeError, ValueError) as e:
        raise ModelError(f"{p}: layer {name!r} ({cls_name}) cannot be rebuilt in tf_keras: {e}") from None


def _dtype(value: Any, name: str, p: Path) -> str | None:
    if isinstance(value, dict):
        value = (value.get("config") or {}).get("name")
    if value is None or value in ("float32", "float16", "bfloat16", "float64", "mixed_float16", "mixed_bfloat16",
                                  "int32", "int64", "uint8", "bool", "string"):
        return value
    raise ModelError(f"{p}: layer {name!r} uses dtype policy {value!r}, which tf_keras does not support",
                     "save the float model (before Keras 3 quantization)")


def _activation(value: Any, name: str, p: Path):
    import tf_keras as keras

    if isinstance(value, str):
        try:
            keras.activations.get(value)
            return value
        except ValueError:
            pass
    raise ModelError(f"{p}: layer {name!r} uses activation {value!r}, which tf_keras does not have",
                     "use a built-in activation (relu, relu6, sigmoid, tanh, softmax, swish, gelu, ...)")


def _object(key: str, value: Any, name: str, p: Path):
    """Initializers, regularizers and constraints: same class names in both Keras versions."""
    import tf_keras as keras

    if value is None or isinstance(value, str):
        return value
    if not isinstance(value, dict) or "class_name" not in value:
        raise ModelError(f"{p}: layer {name!r} has a malformed {key}")
    kind = next(k for k in _OBJECT_KINDS if key.endswith(k))
    module = {"initializer": keras.initializers, "regularizer": keras.regularizers,
              "constraint": keras.constraints}[kind]
    cls = getattr(module, value["class_name"], None)
    if cls is None or not isinstance(cls, type):
        if kind == "initializer":  # weights are loaded from the file; only retraining from scratch would notice
            return None
        raise ModelError(f"{p}: layer {name!r} uses {kind} {value['class_name']!r}, which tf_keras does not have")
    params = set(inspect.signature(cls.__init__).parameters) - {"self"}
    config = {k: v for k, v in (value.get("config") or {}).items() if k in params}
    return {"class_name": value["class_name"], "config": config}


def _tensor_ref(value: Any) -> tuple[str, int, int] | None:
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        hist = (value.get("config") or {}).get("keras_history")
        if isinstance(hist, list) and len(hist) == 3:
            return str(hist[0]), int(hist[1]), int(hist[2])
    if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str) and all(
            isinstance(v, int) for v in value[1:]):
        return value[0], value[1], value[2]
    return None


def _resolve(value: Any, tensors: dict) -> Any:
    ref = _tensor_ref(value)
    if ref is not None and isinstance(value, dict):
        if ref not in tensors:
            raise KeyError(ref)
        return tensors[ref]
    if isinstance(value, list):
        return [_resolve(v, tensors) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, tensors) for k, v in value.items()}
    return value


def _refs(value: Any) -> list:
    if _tensor_ref(value) is not None and isinstance(value, dict):
        return [_tensor_ref(value)]
    if isinstance(value, list):
        return [r for v in value for r in _refs(v)]
    if isinstance(value, dict):
        return [r for v in value.values() for r in _refs(v)]
    return []


def _functional(config: dict, layer_cfgs: list, p: Path):
    import tensorflow as tf
    import tf_keras as keras

    tensors: dict[tuple[str, int, int], Any] = {}
    layers: dict[str, Any] = {}
    # one entry per call of a layer; a shared layer's later calls may wait for layers listed after it
    pending = [(cfg, None) if cfg["class_name"] == "InputLayer" else (cfg, i)
               for cfg in layer_cfgs for i in range(max(1, len(cfg.get("inbound_nodes") or [])))]
    while pending:
        progress = False
        for entry in list(pending):
            cfg, i = entry
            name = cfg["config"]["name"]
            if i is None:
                c = cfg["config"]
                tensors[(name, 0, 0)] = keras.Input(batch_shape=c.get("batch_shape") or c.get("batch_input_shape"),
                                                    dtype=_dtype(c.get("dtype"), name, p), name=name)
            else:
                nodes = cfg.get("inbound_nodes") or []
                if not nodes:
                    raise ModelError(f"{p}: layer {name!r} is not connected to the graph")
                if not all(r in tensors for r in _refs(nodes[i])):
                    continue
                if name not in layers:
                    layers[name] = _layer(cfg, p)
                args, kwargs = _node_call(nodes[i], tensors, name, p)
                for j, t in enumerate(tf.nest.flatten(layers[name](*args, **kwargs))):
                    tensors[(name, i, j)] = t
            pending.remove(entry)
            progress = True
        if not progress:
            raise ModelError(f"{p}: config.json describes a graph whose layers cannot be connected "
                             f"({', '.join(c['config']['name'] for c, _ in pending)})")
    inner = config["config"]

    def ends(key: str) -> list:
        value = inner.get(key)
        refs = [value] if _tensor_ref(value) is not None else (value or [])
        out = []
        for v in refs:
            ref = _tensor_ref(v)
            if ref is None or ref not in tensors:
                raise ModelError(f"{p}: config.json {key} names an unknown tensor {v!r}")
            out.append(tensors[ref])
        return out

    inputs, outputs = ends("input_layers"), ends("output_layers")
    return keras.Model(inputs if len(inputs) > 1 else inputs[0], outputs if len(outputs) > 1 else outputs[0],
                       name=inner.get("name"))


def _node_call(node: Any, tensors: dict, name: str, p: Path) -> tuple[list, dict]:
    if not isinstance(node, dict):
        raise ModelError(f"{p}: layer {name!r} has a malformed inbound node")
    args, kwargs = node.get("args", []), node.get("kwargs", {}) or {}
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if "mask" in kwargs:
        raise ModelError(f"{p}: layer {name!r} is called with a mask, which the Keras 3 loader does not rebuild")
    return _resolve(args, tensors), _resolve(kwargs, tensors)


def _sequential(config: dict, layer_cfgs: list, p: Path):
    import tf_keras as keras

    inner = config["config"]
    model = keras.Sequential(name=inner.get("name"))
    shape = None
    for cfg in layer_cfgs:
        if cfg["class_name"] == "InputLayer":
            c = cfg["config"]
            shape = c.get("batch_shape") or c.get("batch_input_shape")
            model.add(keras.Input(batch_shape=shape, dtype=_dtype(c.get("dtype"), c.get("name", "?"), p),
                                  name=c.get("name")))
        else:
            model.add(_layer(cfg, p))
    if shape is None:
        shape = inner.get("build_input_shape") or (config.get("build_config") or {}).get("input_shape")
        if shape is None:
            raise ModelError(f"{p}: the Sequential model was saved unbuilt, so its input shape is unknown",
                             "build it (keras.Input or model.build) before saving")
        model.build(tuple(shape))
    return model


def _snake(name: str) -> str:
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _layer_paths(layer_cfgs: list, kind: str) -> list[str]:
    """Where Keras 3 stores each layer's variables: `layers/<class in snake case>[_n]`, n counting repeats."""
    used: dict[str, int] = {}
    paths = []
    for cfg in layer_cfgs:
        if kind == "Sequential" and cfg["class_name"] == "InputLayer":
            paths.append("")
            continue
        base = _snake(cfg["class_name"])
        if base in used:
            used[base] += 1
            base = f"{base}_{used[base]}"
        else:
            used[base] = 0
        paths.append(f"layers/{base}")
    return paths


def _weight_entries(raw: bytes, p: Path) -> dict[tuple[str, str], list]:
    """Every `vars` group: keyed by ("path", parent path) and, when recorded, ("name", layer name)."""
    import h5py
    import numpy as np

    entries: dict[tuple[str, str], list] = {}
    try:
        with h5py.File(io.BytesIO(raw), "r") as f:
            found = []

            def visit(path: str, obj) -> None:
                if isinstance(obj, h5py.Group) and path.rsplit("/", 1)[-1] == "vars":
                    found.append((path, obj))

            f.visititems(visit)
            for path, group in found:
                keys = sorted((k for k in group.keys() if k.isdigit()), key=int)
                arrays = [np.array(group[k]) for k in keys]
                parent = path[: -len("/vars")] if "/" in path else ""
                if not arrays or not parent:
                    continue
                entries[("path", parent)] = arrays
                name = group.attrs.get("name")
                if isinstance(name, bytes):
                    name = name.decode("utf-8", "replace")
                if isinstance(name, str):
                    entries[("name", name)] = arrays
    except (OSError, ValueError, KeyError) as e:
        raise ModelError(f"{p}: the weights are not a readable HDF5 file ({e})") from None
    return entries


def _weighted_layers(model) -> list:
    out = []
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.weights:
            out.extend(_weighted_layers(layer))
        elif layer.weights:
            out.append(layer)
    return out


def _assign(layer, arrays: list | None, where: str) -> None:
    expected = [tuple(w.shape) for w in layer.get_weights()]
    if not expected:
        if arrays:
            raise ModelError(f"{where} has weights in the file but none in tf_keras")
        return
    got = [tuple(a.shape) for a in arrays or []]
    if got != expected:
        raise ModelError(f"{where}: the file holds weights of shapes {got or 'none'}, tf_keras expects {expected}")
    layer.set_weights(arrays)
