"""The kit's words for runtimes, artifact formats and delegates, in one place.

An artifact's format is a precision (how its weights and activations are
stored) and an encoding (how its constant tensors are laid out). Its name
joins the two: `int8` is int8 + dense, `int8-sparse` is int8 + TFLite's
sparse tensor encoding. Recipes, manifests, device profiles and farm files
all spell formats this way.
"""
from __future__ import annotations

from kit.core.errors import KitError

#: runtimes an artifact can be checked on, in order of preference: LiteRT's Interpreter API with its default
#: delegate (XNNPACK), LiteRT's built-in kernels only, TensorFlow Lite Micro's Python runtime, and LiteRT's
#: CompiledModel API on its CPU accelerator (XNNPACK behind the newer API; on LiteRT wheels that ship it), and
#: aarch64 LiteRT with its default delegate on the emulated aarch64 board (the NEON/fp16 kernels phones run)
RUNTIMES = ("litert", "litert-builtin", "tflm", "litert-compiled", "litert-aarch64")
#: the runtimes `kit compress` checks every artifact on; a recipe's [convert] targets add the others
DEFAULT_CHECK_RUNTIMES = ("litert", "litert-builtin", "tflm")

#: float32, float16 (weights), dynamic (int8 weights, float activations), int8 (full integer)
PRECISIONS = ("float32", "float16", "dynamic", "int8")
#: dense tensors, or TFLite's sparse tensor encoding of the constant ones
ENCODINGS = ("dense", "sparse")
#: formats of models already compiled for one device's runtime (an Edge TPU model, a TFLite Micro build):
#: named by that runtime, with no sparse variant
COMPILED = ("edgetpu", "tflm")

#: delegate names a target run accepts: "default" = the runtime's default (XNNPACK on LiteRT CPU),
#: "none" = built-in kernels only
DELEGATES = ("default", "none", "xnnpack", "gpu", "nnapi", "edgetpu")
#: the target delegate that runs a model the way a pipeline runtime checked it (TFLM is not profiled by a target;
#: the CompiledModel's CPU accelerator runs XNNPACK, the default delegate's kernels)
DELEGATE_OF_RUNTIME = {"litert": "default", "litert-builtin": "none", "litert-compiled": "default",
                       "litert-aarch64": "default"}

#: recipe `quantize.mode` values, and the precision of the artifacts each one makes
QUANTIZE_MODES = ("none", "dynamic", "float16", "int8", "qat")
MODE_PRECISION = {"none": "float32", "float16": "float16", "dynamic": "dynamic", "int8": "int8", "qat": "int8"}

#: lowest top-1 agreement with the converted Keras model for an artifact of each precision to ship
MIN_AGREEMENT = {"float32": 0.99, "float16": 0.99, "dynamic": 0.97, "int8": 0.97}

_SPARSE_SUFFIX = "-sparse"


def check_runtimes(targets: tuple[str, ...] | list[str] = ()) -> tuple[str, ...]:
    """The runtimes to check an artifact on: the default ones plus any target runtime outside them, in the
    vocabulary's order of preference."""
    chosen = set(DEFAULT_CHECK_RUNTIMES) | set(targets)
    return tuple(r for r in RUNTIMES if r in chosen)


def format_name(precision: str, encoding: str = "dense") -> str:
    """`int8`, `int8-sparse`: the precision, plus `-sparse` for the sparse encoding."""
    if precision not in PRECISIONS + COMPILED:
        raise KitError(f"unknown artifact precision {precision!r}", f"use one of {', '.join(PRECISIONS)}")
    if encoding not in ENCODINGS or (precision in COMPILED and encoding != "dense"):
        raise KitError(f"unknown artifact encoding {encoding!r} for {precision}",
                       f"use one of {', '.join(ENCODINGS)} (dense only for {', '.join(COMPILED)})")
    return precision + (_SPARSE_SUFFIX if encoding == "sparse" else "")


def parse_format_name(name: str) -> tuple[str, str]:
    """(precision, encoding) of a format name; the inverse of `format_name`."""
    precision, encoding = name, "dense"
    if name.endswith(_SPARSE_SUFFIX):
        precision, encoding = name[:-len(_SPARSE_SUFFIX)], "sparse"
    if precision not in PRECISIONS and not (precision in COMPILED and encoding == "dense"):
        raise KitError(f"unknown artifact format {name!r}", f"use one of {', '.join(FORMAT_NAMES + COMPILED)}")
    return precision, encoding


#: every format name the converter makes, dense before sparse within a precision
FORMAT_NAMES = tuple(format_name(p, e) for p in PRECISIONS for e in ENCODINGS)
