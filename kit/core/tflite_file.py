"""Read a .tflite flatbuffer as untrusted input: ops, tensors, quantization, sparsity, sizes.

Parsing uses the flatbuffer schema that ships with ai-edge-litert; every
failure on malformed bytes becomes a `ModelError` that says what was wrong.
"""
from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kit.core.errors import ModelError

_IDENTIFIER = b"TFL3"
_MAX_BYTES = 2**31  # flatbuffers cannot address more; larger files use external buffers
_MAX_RANK = 8  # TFLite kernels handle at most 6 dimensions; anything far beyond is corruption
_MAX_ELEMENTS = 2**31 - 1  # runtimes count elements in int32
# bytes per element of each numeric type; int4 packs two values per byte
_ITEM_BYTES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 8: 8, 9: 1, 10: 8, 11: 16, 12: 8, 15: 4, 16: 2, 18: 2}

_DTYPES = {
    0: ("float32", np.float32), 1: ("float16", np.float16), 2: ("int32", np.int32), 3: ("uint8", np.uint8),
    4: ("int64", np.int64), 5: ("string", None), 6: ("bool", np.bool_), 7: ("int16", np.int16),
    8: ("complex64", np.complex64), 9: ("int8", np.int8), 10: ("float64", np.float64),
    11: ("complex128", np.complex128), 12: ("uint64", np.uint64), 13: ("resource", None),
    14: ("variant", None), 15: ("uint32", np.uint32), 16: ("uint16", np.uint16), 17: ("int4", None),
    18: ("bfloat16", None),
}


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def _builtin_names() -> dict[int, str]:
    ops = _schema().BuiltinOperator
    return {v: k for k, v in vars(ops).items() if not k.startswith("_") and isinstance(v, int)}


@dataclass
class Quantization:
    scales: int
    zero_points: int
    quantized_dimension: int
    scale: float | None  # the single scale of per-tensor quantization
    zero_point: int | None


@dataclass
class TensorInfo:
    index: int
    name: str
    shape: list[int]
    dtype: str
    buffer_bytes: int
    constant: bool
    quantization: Quantization | None
    storage: str  # "dense" | "sparse CSR" | "sparse block RxC"
    stored_values: int | None  # non-zero values actually stored (sparse), or elements (dense)
    zero_fraction: float | None  # of the dense tensor; None when unknown (non-numeric)
    sparse_index_bytes: int = 0

    @property
    def elements(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1


@dataclass
class OpInfo:
    index: int
    op: str
    version: int
    inputs: list[int]
    outputs: list[int]


@dataclass
class TFLiteInfo:
    size_bytes: int
    gzip_bytes: int
    schema_version: int
    description: str
    opcodes: list[tuple[str, int]]
    ops: list[OpInfo]
    tensors: list[TensorInfo]
    inputs: list[int]
    outputs: list[int]
    subgraphs: int
    metadata: list[str] = field(default_factory=list)

    @property
    def weight_bytes(self) -> int:
        """Constant data, including the index arrays of sparse tensors."""
        return sum(t.buffer_bytes + t.sparse_index_bytes for t in self.tensors if t.constant)

    @property
    def graph_bytes(self) -> int:
        return self.size_bytes - self.weight_bytes

    @property
    def op_names(self) -> list[str]:
        return sorted({o.op for o in self.ops})

    def tensor(self, index: int) -> TensorInfo:
        return self.tensors[index]


def read_tflite(source: bytes | str | Path) -> TFLiteInfo:
    """Parse a model; raise `ModelError` on anything that is not a valid TFLite flatbuffer."""
    where = "model"
    if isinstance(source, (str, Path)):
        where = str(source)
        path = Path(source)
        if not path.is_file():
            raise ModelError(f"{where} does not exist or is not a file")
        data = path.read_bytes()
    else:
        data = bytes(source)
    if len(data) < 8:
        raise ModelError(f"{where} is {len(data)} bytes: too short to be a TFLite model", "re-export the model")
    if data[4:8] != _IDENTIFIER:
        raise ModelError(
            f"{where} is not a TFLite flatbuffer (file identifier {data[4:8]!r}, expected b'TFL3')",
            "pass a .tflite file written by the TFLite converter",
        )
    try:
        return _parse(data)
    except ModelError:
        raise
    except Exception as e:  # any malformed offset surfaces as struct/index/value errors
        raise ModelError(
            f"{where} is corrupt or truncated ({type(e).__name__}: {e})", "re-export or re-download the model"
        ) from None


def _parse(data: bytes) -> TFLiteInfo:
    schema = _schema()
    root = int.from_bytes(data[0:4], "little")
    if root >= len(data):
        raise ModelError("root table offset points past the end of the file: the file is truncated")
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    names = _builtin_names()
    opcodes = []
    for oc in model.operatorCodes or []:
        code = max(oc.builtinCode or 0, oc.deprecatedBuiltinCode or 0)
        name = (oc.customCode or b"").decode("utf-8", "replace") if code == 32 else names.get(code, f"OP_{code}")
        opcodes.append((name, oc.version or 1))
    buffers = model.buffers or []
    if not model.subgraphs:
        raise ModelError("the model has no subgraph")
    sg = model.subgraphs[0]
    for g, graph in enumerate(model.subgraphs):
        for i, t in enumerate(graph.tensors or []):
            _check_tensor(g, i, t, buffers, data)
    tensors = [_tensor_info(i, t, buffers, data) for i, t in enumerate(sg.tensors or [])]
    ops = []
    for i, op in enumerate(sg.operators or []):
        if op.opcodeIndex >= len(opcodes):
            raise ModelError(f"operator {i} refers to op code {op.opcodeIndex}, but the model defines {len(opcodes)}")
        name, version = opcodes[op.opcodeIndex]
        op_inputs, op_outputs = [int(x) for x in _as_list(op.inputs)], [int(x) for x in _as_list(op.outputs)]
        for idx in op_inputs + op_outputs:
            if not -1 <= idx < len(tensors):  # -1 marks an omitted optional input
                raise ModelError(f"operator {i} ({name}) refers to tensor {idx}, but the model has {len(tensors)}",
                                 "the file is corrupt; re-export the model")
        ops.append(OpInfo(i, name, version, op_inputs, op_outputs))
    for idx in [*_as_list(sg.inputs), *_as_list(sg.outputs)]:
        if not 0 <= idx < len(tensors):
            raise ModelError(f"subgraph input/output {idx} is not a tensor of the model")
    return TFLiteInfo(
        size_bytes=len(data),
        gzip_bytes=len(gzip.compress(data, compresslevel=9)),
        schema_version=model.version or 0,
        description=(model.description or b"").decode("utf-8", "replace"),
        opcodes=opcodes,
        ops=ops,
        tensors=tensors,
        inputs=[int(x) for x in _as_list(sg.inputs)],
        outputs=[int(x) for x in _as_list(sg.outputs)],
        subgraphs=len(model.subgraphs),
        metadata=[(m.name or b"").decode("utf-8", "replace") for m in model.metadata or []],
    )


def _as_list(v) -> list:
    return [] if v is None else list(v)


def _buffer_data(buf, data: bytes) -> bytes:
    if buf is None:
        return b""
    if buf.data is not None and len(buf.data):
        return bytes(np.asarray(buf.data, dtype=np.uint8))
    if buf.offset and buf.size and buf.offset > 1:  # external buffer after the flatbuffer
        if buf.offset + buf.size > len(data):
            raise ModelError("a weight buffer lies past the end of the file: the file is truncated")
        return data[buf.offset:buf.offset + buf.size]
    return b""


def _tensor_label(graph: int, index: int, t) -> str:
    name = (t.name or b"").decode("utf-8", "replace")[:80]
    where = f"tensor {index}" if graph == 0 else f"subgraph {graph} tensor {index}"
    return f"{where} ({name!r})" if name else where


def _check_tensor(graph: int, index: int, t, buffers: list, data: bytes) -> None:
    """Refuse a tensor whose shape is impossible or does not fit its buffer, before any runtime reads it.

    A runtime trusts these numbers: a weight claiming more elements than its buffer holds makes TFLite
    Micro read past the model, so a mismatch is corruption, not something to print.
    """
    label = _tensor_label(graph, index, t)
    hint = "the file is corrupt or was not written by a TFLite converter; re-export the model"
    shape = [int(x) for x in _as_list(t.shape)]
    if len(shape) > _MAX_RANK:
        raise ModelError(f"{label} has {len(shape)} dimensions; TFLite tensors have at most {_MAX_RANK}", hint)
    if any(d < 0 for d in shape):
        raise ModelError(f"{label} has a negative dimension in its shape {shape}", hint)
    elements = 1
    for d in shape:
        elements *= d
    if elements > _MAX_ELEMENTS:
        raise ModelError(f"{label} claims {elements:,} elements (shape {shape}), more than a runtime can index", hint)
    if t.buffer >= len(buffers):
        if t.buffer != 0:
            raise ModelError(f"{label} refers to buffer {t.buffer}, but the model has {len(buffers)}", hint)
        return
    raw = _buffer_data(buffers[t.buffer], data)
    item = _ITEM_BYTES.get(t.type)
    if not raw or item is None and t.type != 17:
        return  # activations, or strings/resources whose size is not fixed per element
    if t.sparsity is not None:
        values = _sparse_value_count(label, t.sparsity, shape, hint)
        if t.type == 17:
            allowed = {values, (values + 1) // 2}
        else:
            allowed = {values * item}
        if len(raw) not in allowed:
            raise ModelError(f"{label}: its sparsity metadata describes {values:,} stored values, "
                             f"but its buffer holds {len(raw):,} bytes", hint)
        return
    allowed = {elements, (elements + 1) // 2} if t.type == 17 else {elements * item}
    if len(raw) not in allowed:
        raise ModelError(f"{label} has shape {shape} ({elements:,} elements, {min(allowed):,} bytes) "
                         f"but its buffer holds {len(raw):,} bytes", hint)


def _sparse_value_count(label: str, sp, shape: list[int], hint: str) -> int:
    """Number of values a TFLite sparse tensor stores, walking its dimension metadata in traversal order."""
    order = [int(x) for x in _as_list(sp.traversalOrder)]
    block_map = [int(x) for x in _as_list(sp.blockMap)]
    dims = sp.dimMetadata or []
    n, k = len(shape), len(block_map)
    if sorted(order) != list(range(n + k)) or len(dims) != n + k or any(not 0 <= b < n for b in block_map):
        raise ModelError(f"{label}: its sparsity metadata does not match its {n} dimensions "
                         f"(traversal order {order}, block map {block_map}, {len(dims)} dimension records)", hint)
    sizes: dict[int, int] = {}
    for i, j in enumerate(order):  # block dimensions n..n+k-1 are dense with the block size
        if j >= n:
            sizes[j] = int(dims[i].denseSize)
    for j in range(n):
        size = shape[j]
        if j in block_map:
            block = sizes[n + block_map.index(j)]
            if block <= 0:
                raise ModelError(f"{label}: block size {block} for dimension {j} of shape {shape}", hint)
            size = -(-size // block)  # the last block of a dimension it does not divide is padded
        sizes[j] = size
    count = 1  # nodes at the current level of the traversal tree
    for i, j in enumerate(order):
        d = dims[i]
        if d.format == 0:  # DENSE
            if int(d.denseSize) != sizes[j]:
                raise ModelError(f"{label}: sparsity metadata gives dimension {j} size {d.denseSize}, "
                                 f"the shape {shape} gives {sizes[j]}", hint)
            count *= sizes[j]
        else:
            segments = _vector(d.arraySegments)
            indices = _vector(d.arrayIndices)
            if len(segments) != count + 1 or segments[0] != 0 or np.any(np.diff(segments) < 0):
                raise ModelError(f"{label}: sparse dimension {j} has {len(segments)} row segments for {count} rows, "
                                 "or they are not increasing from 0", hint)
            if len(indices) != segments[-1] or (len(indices) and (indices.min() < 0 or indices.max() >= sizes[j])):
                raise ModelError(f"{label}: sparse dimension {j} has {len(indices)} indices for {segments[-1]} "
                                 f"values, or an index outside 0..{sizes[j] - 1}", hint)
            count = len(indices)
        if count > _MAX_ELEMENTS:
            raise ModelError(f"{label}: its sparsity metadata describes more values than a runtime can index", hint)
    return count


def _vector(vec) -> np.ndarray:
    values = getattr(vec, "values", None) if vec is not None else None
    return np.zeros(0, np.int64) if values is None else np.asarray(values, dtype=np.int64).ravel()


def _tensor_info(index: int, t, buffers: list, data: bytes) -> TensorInfo:
    dtype_name, np_dtype = _DTYPES.get(t.type, (f"type{t.type}", None))
    shape = [int(x) for x in _as_list(t.shape)]
    if t.buffer >= len(buffers) and t.buffer != 0:
        raise ModelError(f"tensor {index} refers to buffer {t.buffer}, but the model has {len(buffers)}")
    raw = _buffer_data(buffers[t.buffer], data) if t.buffer < len(buffers) else b""
    q = t.quantization
    quant = None
    if q is not None and q.scale is not None and len(q.scale):
        scales = np.asarray(q.scale)
        zps = np.asarray(q.zeroPoint) if q.zeroPoint is not None else np.zeros(0)
        quant = Quantization(
            scales=len(scales), zero_points=len(zps), quantized_dimension=int(q.quantizedDimension or 0),
            scale=float(scales[0]) if len(scales) == 1 else None,
            zero_point=int(zps[0]) if len(zps) == 1 else None,
        )
    storage, stored, index_bytes = "dense", None, 0
    zero_fraction = None
    elements = int(np.prod(shape)) if shape else 1
    if t.sparsity is not None:
        storage, index_bytes = _sparse_storage(t.sparsity)
        if np_dtype is not None and raw:
            stored_arr = np.frombuffer(raw, dtype=np_dtype)
            stored = int(np.count_nonzero(stored_arr))
            zero_fraction = 1.0 - stored / elements if elements else 0.0
    elif raw and np_dtype is not None:
        itemsize = np.dtype(np_dtype).itemsize
        if len(raw) % itemsize == 0:
            arr = np.frombuffer(raw, dtype=np_dtype)
            stored = int(arr.size)
            zp = quant.zero_point if quant and quant.zero_point is not None else 0
            zero_fraction = float(np.mean(arr == zp)) if arr.size else None
    return TensorInfo(
        index=index,
        name=(t.name or b"").decode("utf-8", "replace"),
        shape=shape,
        dtype=dtype_name,
        buffer_bytes=len(raw),
        constant=bool(raw),
        quantization=quant,
        storage=storage,
        stored_values=stored,
        zero_fraction=zero_fraction,
        sparse_index_bytes=index_bytes,
    )


def _sparse_storage(sp) -> tuple[str, int]:
    dims = sp.dimMetadata or []
    index_bytes = 0
    for d in dims:
        for vec in (d.arraySegments, d.arrayIndices):
            values = getattr(vec, "values", None) if vec is not None else None
            if values is not None:
                index_bytes += int(np.asarray(values).nbytes)
    block_map = _as_list(sp.blockMap)
    if block_map:
        n = len(_as_list(sp.traversalOrder)) - len(block_map)
        block = [int(dims[n + i].denseSize) for i in range(len(block_map))] if len(dims) >= n + len(block_map) else []
        return "sparse block " + "x".join(str(b) for b in block), index_bytes
    return "sparse CSR", index_bytes
