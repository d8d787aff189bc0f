"""TFLite Micro compression of a full-int8 model: per tensor LUT, prune or none, whichever is smallest.

Both encodings are decoded by the stock TFLM runtime's DECODE operator (custom
op `TFLM_DECODE`, registered with `MicroMutableOpResolver::AddDecode()`), which
the compressor inserts before each consumer of a compressed tensor:

- LUT (clustered weights): the `tflite_micro` package's own compressor. Each
  value becomes a 1-7 bit index into a value table; per-channel quantized
  tensors get one table per channel along their quantized dimension, because
  the runtime derives the channel count from the tensor's quantization.
- prune (sparse weights): encoded here, since the package's Python side is a
  stub. Format, as the runtime's decoder (`decode_state_prune.cc`) reads it:
  the encoded tensor is a bitmask, one bit per element in row-major order,
  most significant bit first, 1 where the element differs from its zero point;
  the ancillary tensor is the 16-byte DECODE common metadata (byte 0 = 2 for
  prune, byte 1 = 1 metadata version, byte 4 = 1 prune version) followed by
  the kept values, in order, in the tensor's own type. The zero point is the
  per-channel one for per-channel int8 tensors, otherwise the single one
  (which must be 0 for other types).

Only full-integer models are accepted (`check_micro_model`): TFLite Micro has
no hybrid kernels and no DENSIFY.
"""
from __future__ import annotations

import math
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kit.core.errors import ModelError
from kit.core.tflite_file import TFLiteInfo, read_tflite

METHODS = ("lut", "prune")
#: DECODE common metadata: 16 bytes ahead of every value table
DCM_BYTES = 16
_PRUNE_VERSION = 1
_LUT_MAX_BITS = 7
_INTEGER_ACTIVATIONS = ("int8", "uint8", "int16", "int32", "int64", "bool")
#: element types both DECODE decoders write (bool aside, which the model editor cannot read)
_DECODABLE = ("int8", "int16", "int32", "int64", "float32")


@dataclass
class TensorChoice:
    """What happened to one constant tensor."""

    subgraph: int
    index: int
    name: str
    shape: list[int]
    dtype: str
    method: str  # "lut" | "prune" | "none"
    original_bytes: int
    #: payload bytes of each encoding that applies (encoded tensor + ancillary tensor)
    candidates: dict[str, int] = field(default_factory=dict)
    detail: str = ""
    #: model bytes saved by this tensor's encoding alone, DECODE overhead included (measured)
    saved_bytes: int = 0

    @property
    def stored_bytes(self) -> int:
        return self.candidates[self.method] if self.method != "none" else self.original_bytes


@dataclass
class Compression:
    """A compressed model and how each tensor was stored."""

    model: bytes
    input_bytes: int
    choices: list[TensorChoice]
    note: str = ""

    @property
    def output_bytes(self) -> int:
        return len(self.model)

    @property
    def compressed(self) -> list[TensorChoice]:
        return [c for c in self.choices if c.method != "none"]

    @property
    def ratio(self) -> float:
        return self.input_bytes / self.output_bytes


def check_micro_model(info: TFLiteInfo, where: str = "model") -> None:
    """Refuse models TFLite Micro cannot run as a full-integer model, saying how to convert them."""
    if any(o.op == "DENSIFY" for o in info.ops) or any(t.storage != "dense" for t in info.tensors):
        raise ModelError(
            f"{where} stores sparse tensors (TFLite sparsity with a DENSIFY op); TFLite Micro has no DENSIFY kernel",
            "convert without the sparsity optimization; `kit firmware` keeps pruned weights small with "
            "TFLM's own prune compression instead",
        )
    floats = ("float32", "float16")
    for op in info.ops:
        ins = [info.tensor(i) for i in op.inputs if i >= 0]
        if (any(t.dtype in floats and not t.constant for t in ins)
                and any(t.dtype in ("int8", "uint8", "int4") and t.constant for t in ins)):
            raise ModelError(
                f"{where} is a hybrid (dynamic-range quantized) model: {op.op} (op {op.index}) takes float "
                "activations with int8 weights; TFLite Micro has no hybrid kernels",
                "convert with full integer quantization: a representative dataset, "
                "target_spec.supported_ops=[TFLITE_BUILTINS_INT8], "
                "inference_input_type=inference_output_type=tf.int8",
            )
    boundary = set(info.inputs) | set(info.outputs)
    float_acts = [t for t in info.tensors if not t.constant and t.dtype in floats]
    if float_acts and all(t.index in boundary for t in float_acts):
        raise ModelError(
            f"{where} is quantized inside but takes or returns float32 ({float_acts[0].name!r}); "
            "microcontroller artifacts need int8 input and output",
            "convert with inference_input_type=tf.int8 and inference_output_type=tf.int8",
        )
    if float_acts:
        raise ModelError(
            f"{where} computes in floating point (tensor {float_acts[0].name!r} is {float_acts[0].dtype}); "
            "microcontroller artifacts must be full-integer",
            "convert with full integer quantization and int8 input/output (representative dataset, "
            "inference_input_type=inference_output_type=tf.int8)",
        )
    odd = [t for t in info.tensors if not t.constant and t.dtype not in _INTEGER_ACTIVATIONS]
    if odd:
        raise ModelError(f"{where} has {odd[0].dtype} tensor {odd[0].name!r}, which TFLite Micro cannot compute",
                         "convert with full int8 quantization")


def compress_model(model: bytes | str | Path, methods: tuple[str, ...] = METHODS) -> Compression:
    """Compress every constant tensor with whichever of `methods` stores it smallest, or leave it.

    A DECODE insertion costs flatbuffer bytes of its own (tensor tables, a copy
    of the per-channel quantization, the operator), so each candidate is built
    alone once and kept only if the model really shrinks.
    """
    from tflite_micro.tensorflow.lite.micro.compression import constant_inputs, lut, spec

    data = Path(model).read_bytes() if isinstance(model, (str, Path)) else bytes(model)
    info = read_tflite(data)
    check_micro_model(info)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ModelError(f"unknown compression method(s) {', '.join(unknown)}", f"use {', '.join(METHODS)}")
    edited = _read_editable(data)
    sharing = _shared_buffers(edited)
    choices: list[TensorChoice] = []
    results: dict[tuple[int, int], object] = {}
    for sg_index, sg in enumerate(edited.subgraphs):
        consumed = {id(t) for op in sg.operators for t in op.inputs if t is not None}
        for t_index, tensor in enumerate(sg.tensors):
            if tensor.buffer is None or not tensor.buffer.data or id(tensor) not in consumed:
                continue
            choice = _choose(tensor, sg_index, t_index, methods, constant_inputs.find_uses(sg, tensor),
                             id(tensor.buffer) in sharing)
            choices.append(choice)
            if choice.method == "lut":
                axis = _channel_axis(tensor)
                mode = spec.PerTensor() if axis is None else spec.PerChannel(axis=axis)
                results[(sg_index, t_index)] = lut.LutCompressor().compress(
                    tensor, spec.LookUpTableCompression(index_bitwidth=_lut_bits(tensor.array, axis), mode=mode))
            elif choice.method == "prune":
                results[(sg_index, t_index)] = PruneCompressor().compress(tensor, spec.PruningCompression())
    if not results:
        return Compression(data, len(data), choices, note="no tensor gets smaller: the model is left as it is")
    base = len(_build(data, {}))
    by_key = {(c.subgraph, c.index): c for c in choices}
    for key in list(results):
        choice = by_key[key]
        choice.saved_bytes = base - len(_build(data, {key: results[key]}))
        if choice.saved_bytes <= 0:
            choice.detail += f"; {choice.method} would add {-choice.saved_bytes} B with its DECODE overhead"
            choice.method = "none"
            del results[key]
    if not results:
        return Compression(data, len(data), choices,
                           note="no tensor gets smaller once DECODE overhead is counted: the model is left as it is")
    out = _build(data, results)
    if len(out) >= len(data):
        for c in choices:
            c.method = "none"
        return Compression(data, len(data), choices,
                           note=f"compression would not shrink the model ({len(data)} -> {len(out)} bytes)")
    return Compression(out, len(data), choices)


def _build(data: bytes, results: dict) -> bytes:
    """The model with `results` installed behind DECODE operators, aligned as TFLM needs."""
    from tflite_micro.tensorflow.lite.micro.compression import decode_insert

    edited = _read_editable(data)
    if results:
        decode_insert.insert_decode_operators(edited, results)
    return serialize(edited)


def serialize(edited) -> bytes:
    """The flatbuffer of a `tflite_micro` model-editor model, with the 16-byte alignment TFLM needs."""
    with _numpy_buffer_packing():
        packed = bytes(edited.build())
    return _aligned(packed)


@contextmanager
def _numpy_buffer_packing():
    """Pack buffer data as numpy arrays while the model editor builds.

    The editor hands buffers to the generated flatbuffer code as lists of ints,
    which that code writes one byte per Python call (minutes for a few hundred
    KB); given a numpy array it takes its vector fast path. The output is the same.
    """
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    original = schema.BufferT.Pack

    def pack(self, builder):
        if isinstance(self.data, list):
            self.data = np.asarray(self.data, dtype=np.uint8)
        return original(self, builder)

    schema.BufferT.Pack = pack
    try:
        yield
    finally:
        schema.BufferT.Pack = original


class PruneCompressor:
    """TFLM prune encoding, following the `tflite_micro` compressor plugin protocol (`compress(tensor, method)`)."""

    def compress(self, tensor, method=None):
        from tflite_micro.tensorflow.lite.micro.compression import compressor

        values = tensor.array
        if values is None:
            raise compressor.CompressionError("tensor has no data to compress")
        reason = _prune_unsupported(tensor)
        if reason:
            raise compressor.CompressionError(reason)
        mask, ancillary = encode_prune(values, _zero_points(tensor))
        return compressor.CompressionResult(encoded_data=mask, ancillary_data=ancillary)


def encode_prune(values: np.ndarray, zero_points: np.ndarray) -> tuple[bytes, bytes]:
    """(bitmask, ancillary data) of the TFLM prune format; `zero_points` broadcasts against `values`."""
    keep = _differs(values, np.broadcast_to(zero_points.astype(values.dtype), values.shape))
    mask = np.packbits(keep.reshape(-1), bitorder="big").tobytes()
    little = values.dtype.newbyteorder("<")
    table = values.reshape(-1)[keep.reshape(-1)].astype(little).tobytes()
    return mask, _dcm(2, bytes([_PRUNE_VERSION])) + table


def decode_prune(mask: bytes, ancillary: bytes, shape: tuple[int, ...], dtype: np.dtype,
                 zero_points: np.ndarray) -> np.ndarray:
    """Inverse of `encode_prune`, element by element as the runtime does it (for round-trip checks)."""
    if ancillary[0] != 2 or ancillary[1] != 1 or ancillary[4] != _PRUNE_VERSION:
        raise ValueError("not prune ancillary data (type 2, DCM version 1, prune version 1)")
    dtype = np.dtype(dtype).newbyteorder("<")
    n = int(np.prod(shape)) if shape else 1
    bits = np.unpackbits(np.frombuffer(mask, np.uint8), bitorder="big")[:n].astype(bool)
    table = np.frombuffer(ancillary[DCM_BYTES:], dtype)
    if len(table) != int(bits.sum()):
        raise ValueError(f"value table holds {len(table)} values but the mask keeps {int(bits.sum())}")
    out = np.array(np.broadcast_to(zero_points.astype(dtype), shape)).reshape(-1)
    out[bits] = table
    return out.reshape(shape)


def _dcm(decode_type: int, user: bytes) -> bytes:
    header = bytearray(DCM_BYTES)
    header[0], header[1] = decode_type, 1
    header[4:4 + len(user)] = user
    return bytes(header)


def _differs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise inequality of the stored bits (so -0.0 is kept, as the decoder would not restore it)."""
    if a.dtype.kind == "f":
        view = {2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize]
        return a.view(view) != np.ascontiguousarray(b).view(view)
    return a != b


def _quant(tensor) -> tuple[list[float], list[int], int]:
    q = tensor.quantization
    if q is None:
        return [], [0], 0
    scales = [q.scales] if isinstance(q.scales, (int, float)) else list(q.scales)
    zps = [q.zero_points] if isinstance(q.zero_points, int) else list(q.zero_points)
    return scales, zps or [0], int(q.axis or 0)


def _channel_axis(tensor) -> int | None:
    """The axis the decoders treat as channels: the quantized dimension of a per-channel tensor, else none."""
    scales, _, axis = _quant(tensor)
    return axis if len(scales) > 1 else None


def _layout_problem(tensor) -> str | None:
    """Why the runtime's decoders would reject this tensor's quantization layout, or None."""
    scales, zps, axis = _quant(tensor)
    rank = len(tensor.shape)
    if len(scales) > 1:
        if axis not in (0, rank - 1):
            return f"channel axis {axis} (the decoders handle the first or last axis only)"
        if tensor.shape[axis] != len(scales):
            return f"{len(scales)} scales for {tensor.shape[axis]} channels"
    elif axis != 0:
        return f"quantized dimension {axis} with a single scale (the decoders reject it)"
    return None


def _zero_points(tensor) -> np.ndarray:
    """Zero points shaped to broadcast against the tensor, as the prune decoder applies them."""
    _, zps, axis = _quant(tensor)
    dtype = tensor.array.dtype
    if len(zps) > 1 and dtype == np.int8:
        shape = [1] * len(tensor.shape)
        shape[axis] = len(zps)
        return np.asarray(zps, dtype=np.int64).astype(dtype).reshape(shape)
    return np.asarray(zps[0], dtype=np.int64).astype(dtype)


def _prune_unsupported(tensor) -> str | None:
    problem = _layout_problem(tensor)
    if problem:
        return problem
    dtype = tensor.array.dtype
    if dtype.name not in _DECODABLE:
        return f"{dtype} tensors are not supported by the prune decoder"
    _, zps, _ = _quant(tensor)
    if dtype != np.int8 and any(z != 0 for z in zps):
        return "the prune decoder needs zero point 0 for non-int8 tensors"
    return None


def _read_editable(data: bytes):
    """The package's model editor, with operator codes normalized.

    Models written before schema 3a keep the op in `deprecated_builtin_code`
    only; the editor keys ops by `builtin_code`, which would map every op of
    such a model to the first op code. TFLM itself reads the larger of the two.
    """
    from tflite_micro.tensorflow.lite.micro.compression import model_editor

    edited = model_editor.read(data)
    for oc in edited.operator_codes:
        oc.builtin_code = max(oc._fb.builtinCode or 0, oc._fb.deprecatedBuiltinCode or 0)
    for sg in edited.subgraphs:
        for op in sg.operators:
            op.opcode = edited.operator_codes[op.opcode_index].builtin_code
    return edited


def _shared_buffers(edited) -> set[int]:
    """Buffers read by more than one tensor: compressing one alias would leave the data in the model anyway."""
    from tflite_micro.tensorflow.lite.micro.compression import model_editor

    seen: dict[int, int] = {}
    for t in model_editor.iter_tensors(edited):
        if t.buffer is not None and t.buffer.data:
            seen[id(t.buffer)] = seen.get(id(t.buffer), 0) + 1
    return {b for b, n in seen.items() if n > 1}


def _lut_bits(values: np.ndarray, axis: int | None) -> int:
    stride = _lut_stride(values, axis)
    return max(1, (stride - 1).bit_length())


def _lut_stride(values: np.ndarray, axis: int | None) -> int:
    """Entries per value table: the most distinct values of any channel (or of the tensor)."""
    if axis is None:
        return len(np.unique(values))
    moved = np.moveaxis(values, axis, 0).reshape(values.shape[axis], -1)
    sorted_rows = np.sort(moved, axis=1)
    return int(((np.diff(sorted_rows, axis=1) != 0).sum(axis=1) + 1).max())


def _choose(tensor, subgraph: int, index: int, methods: tuple[str, ...], constant_uses: list,
            shared: bool) -> TensorChoice:
    """The smallest encoding by payload (encoded + ancillary bytes); DECODE overhead is measured later."""
    values = tensor.array if _has_numpy_dtype(tensor) else None
    name = tensor.name or f"tensor {index}"
    dtype = str(values.dtype) if values is not None else "other"
    original = len(tensor.buffer.data)
    choice = TensorChoice(subgraph, index, name, [int(d) for d in tensor.shape], dtype, "none", original)
    if values is None or values.dtype.name not in _DECODABLE or values.size == 0:
        choice.detail = "type not decodable"
        return choice
    if shared:
        choice.detail = "shares its buffer with another tensor"
        return choice
    if constant_uses:
        choice.detail = "must stay constant: " + "; ".join(u.describe() for u in constant_uses)
        return choice
    problem = _layout_problem(tensor)
    if problem:
        choice.detail = problem
        return choice
    n = values.size
    axis = _channel_axis(tensor)
    if "lut" in methods:
        stride = _lut_stride(values, axis)
        if stride <= 2 ** _LUT_MAX_BITS:
            bits = max(1, (stride - 1).bit_length())
            tables = values.shape[axis] if axis is not None else 1
            choice.candidates["lut"] = math.ceil(n * bits / 8) + DCM_BYTES + tables * stride * values.itemsize
    if "prune" in methods and _prune_unsupported(tensor) is None:
        keep = int(_differs(values, np.broadcast_to(_zero_points(tensor), values.shape)).sum())
        choice.candidates["prune"] = math.ceil(n / 8) + DCM_BYTES + keep * values.itemsize
    best = min(choice.candidates, key=choice.candidates.get, default=None)
    if best is not None and choice.candidates[best] < original:
        choice.method = best
    choice.detail = _describe(choice, values, axis)
    return choice


def _describe(choice: TensorChoice, values: np.ndarray, axis: int | None) -> str:
    parts = []
    if "lut" in choice.candidates:
        stride = _lut_stride(values, axis)
        tables = values.shape[axis] if axis is not None else 1
        parts.append(f"lut {max(1, (stride - 1).bit_length())}-bit, {tables} table(s) of {stride}")
    if "prune" in choice.candidates:
        kept = (choice.candidates["prune"] - math.ceil(values.size / 8) - DCM_BYTES) // values.itemsize
        parts.append(f"prune keeps {kept}/{values.size}")
    return "; ".join(parts) or "no encoding applies"


def _has_numpy_dtype(tensor) -> bool:
    try:
        tensor.numpy_dtype
    except ValueError:
        return False
    return True


def _aligned(model: bytes) -> bytes:
    """Re-pack with the flatbuffer alignment TFLM needs (16-byte buffers), using the package's aligner."""
    from tflite_micro.tensorflow.lite.micro.tools import tflite_flatbuffer_align_wrapper

    with tempfile.TemporaryDirectory(prefix="kit-align-") as tmp:
        src, dst = os.path.join(tmp, "in.tflite"), os.path.join(tmp, "out.tflite")
        Path(src).write_bytes(model)
        tflite_flatbuffer_align_wrapper.align_tflite_model(src, dst)
        return Path(dst).read_bytes()
