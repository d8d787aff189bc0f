"""Coral Edge TPU requirements: which ops of a .tflite model the Edge TPU compiler can map, and why not.

The check reads the model with `kit.core.tflite_file.read_tflite` (untrusted
input) and applies the Edge TPU's documented rules: every tensor an op reads
or writes is int8/uint8 with quantization parameters (constant int32 bias and
shape operands are allowed), shapes are fixed, at most the 3 innermost
dimensions of an activation are larger than 1, and the op is in the Edge
TPU's supported-op table (`SUPPORTED_OPS`, with its documented limits). The
compiler maps one contiguous run of ops: from the first op that can map up to
the next one that cannot; everything after that runs on the CPU even when
supported. Limits that need operator options or constant values (dilations,
fused activations, reduction axes, strides) are listed as "not checked" for
the ops that have them; the compiler has the final word.

Tested here on real MLPerf Tiny and TFLite Micro models (int8 and float).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kit.core.errors import ModelError
from kit.core.tables import format_table
from kit.core.tflite_file import TFLiteInfo, read_tflite

COMPILED_OP = "edgetpu-custom-op"
_INT8 = ("int8", "uint8")
_PARAMETER_DTYPES = ("int32", "int64")  # bias, shape and axis operands
_SOFTMAX_MAX = 16000

#: TFLite builtin op -> the Edge TPU's documented limit ("" = none)
SUPPORTED_OPS: dict[str, str] = {
    "ADD": "",
    "AVERAGE_POOL_2D": "no fused activation function",
    "CONCATENATION": "no fused activation function; a constant input must be all zeros and one of exactly 2 inputs",
    "CONV_2D": "same dilation in x and y",
    "DEPTHWISE_CONV_2D": "same dilation in x and y",
    "EXPAND_DIMS": "",
    "FULLY_CONNECTED": "default weights format only; the output is one-dimensional",
    "L2_NORMALIZATION": "",
    "LOGISTIC": "",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "unidirectional LSTM only",
    "MAXIMUM": "",
    "MAX_POOL_2D": "no fused activation function",
    "MEAN": "no reduction over the batch dimension; a reduction over depth needs a depth that is a multiple of 4",
    "MINIMUM": "",
    "MUL": "",
    "PACK": "not along the batch dimension",
    "PAD": "no padding of the batch dimension",
    "PRELU": "alpha has at most its innermost dimension larger than 1",
    "QUANTIZE": "",
    "REDUCE_MAX": "not over the batch dimension",
    "REDUCE_MIN": "not over the batch dimension",
    "RELU": "",
    "RELU6": "",
    "RELU_N1_TO_1": "",
    "RESHAPE": "some reshapes of large tensors do not map",
    "RESIZE_BILINEAR": "3-D input/output; some sizes stay on the CPU to keep precision",
    "RESIZE_NEAREST_NEIGHBOR": "3-D input/output; some sizes stay on the CPU to keep precision",
    "RSQRT": "",
    "SLICE": "",
    "SOFTMAX": f"1-D input of at most {_SOFTMAX_MAX:,} elements",
    "SPACE_TO_DEPTH": "",
    "SPLIT": "not along the batch dimension",
    "SQUARED_DIFFERENCE": "",
    "SQUEEZE": "",
    "STRIDED_SLICE": "all strides 1, no ellipsis or new-axis mask",
    "SUB": "",
    "SUM": "not over the batch dimension",
    "TANH": "",
    "TRANSPOSE": "",
    "TRANSPOSE_CONV": "",
}

#: limits this check verifies from shapes and constants; the others are reported as not checked
_CHECKED_LIMITS = ("CONCATENATION", "FULLY_CONNECTED", "PRELU", "SOFTMAX", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR")

#: ops whose output size is set by an operand: a non-constant operand makes the output size dynamic
_SIZE_OPERANDS: dict[str, tuple[int, ...]] = {
    "RESHAPE": (1,), "RESIZE_BILINEAR": (1,), "RESIZE_NEAREST_NEIGHBOR": (1,), "PAD": (1,), "PADV2": (1,),
    "MIRROR_PAD": (1,), "TILE": (1,), "BROADCAST_TO": (1,), "SLICE": (1, 2), "STRIDED_SLICE": (1, 2, 3),
    "EXPAND_DIMS": (1,), "TRANSPOSE": (1,), "MEAN": (1,), "SUM": (1,), "REDUCE_MAX": (1,), "REDUCE_MIN": (1,),
    "SPLIT": (0,), "FILL": (0,),
}


@dataclass
class OpVerdict:
    index: int
    op: str
    on_tpu: bool
    reasons: list[str] = field(default_factory=list)  # why it runs on the CPU
    unchecked: str = ""  # documented limits this check cannot see


@dataclass
class EdgeTPUReport:
    path: str
    compiled: bool
    ops: list[OpVerdict]
    model_issues: list[str] = field(default_factory=list)  # problems that stop compilation altogether
    notes: list[str] = field(default_factory=list)

    @property
    def tpu_ops(self) -> list[OpVerdict]:
        return [o for o in self.ops if o.on_tpu]

    @property
    def cpu_ops(self) -> list[OpVerdict]:
        return [o for o in self.ops if not o.on_tpu]

    def summary(self) -> str:
        name = Path(self.path).name
        if self.compiled:
            head = (f"{name} is already compiled for the Edge TPU: {len(self.tpu_ops)} {COMPILED_OP}, "
                    f"{len(self.cpu_ops)} op(s) on the CPU")
        else:
            head = (f"{name}: {len(self.tpu_ops)} of {len(self.ops)} ops can map to the Edge TPU, "
                    f"{len(self.cpu_ops)} will run on the CPU")
        lines = [head]
        lines += [f"  will not compile: {issue}" for issue in self.model_issues]
        rows = [[o.index, o.op, "Edge TPU" if o.on_tpu else "CPU", "; ".join(o.reasons) or
                 (f"limits not checked: {o.unchecked}" if o.unchecked else "")] for o in self.ops]
        lines.append(format_table(["#", "op", "runs on", "why / notes"], rows))
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def check_edgetpu_requirements(path: str | Path) -> EdgeTPUReport:
    """Which ops of the model the Edge TPU compiler can map, and why the others fall back to the CPU."""
    info = read_tflite(path)
    signatures = _shape_signatures(path)
    ops = [OpVerdict(o.index, o.op, False) for o in info.ops]
    if any(o.op == COMPILED_OP for o in info.ops):
        for v in ops:
            v.on_tpu = v.op == COMPILED_OP
            if not v.on_tpu:
                v.reasons.append(f"outside the compiled {COMPILED_OP}")
        return EdgeTPUReport(str(path), True, ops)
    report = EdgeTPUReport(str(path), False, ops)
    if info.subgraphs > 1:
        report.model_issues.append(f"the model has {info.subgraphs} subgraphs (control flow); "
                                   "the Edge TPU compiles only single-subgraph models")
    if any(sig and sig[0] < 0 for sig in signatures):
        report.notes.append("the batch dimension is -1 in the shape signature; the compiler uses the stored "
                            "batch size of 1")
    for op, verdict in zip(info.ops, ops):
        verdict.reasons = _op_problems(info, op, signatures, report)
        if op.op in SUPPORTED_OPS and SUPPORTED_OPS[op.op] and op.op not in _CHECKED_LIMITS:
            verdict.unchecked = SUPPORTED_OPS[op.op]
    _partition(ops)
    return report


def _shape_signatures(path: str | Path) -> list[list[int]]:
    """Per-tensor shape signatures (-1 = dynamic); read_tflite exposes only the stored shapes."""
    from ai_edge_litert import schema_py_generated as schema

    try:
        sg = schema.Model.GetRootAs(Path(path).read_bytes(), 0).Subgraphs(0)
        return [[] if sg.Tensors(i).ShapeSignatureIsNone() else [int(d) for d in sg.Tensors(i).ShapeSignatureAsNumpy()]
                for i in range(sg.TensorsLength())]
    except Exception as e:  # malformed offsets surface as struct/index errors
        raise ModelError(f"{path}: cannot read tensor shape signatures ({type(e).__name__}: {e})") from None


def _non_unit(shape: list[int]) -> int:
    return sum(1 for d in shape if d != 1)


def _op_problems(info: TFLiteInfo, op, signatures: list[list[int]], report: EdgeTPUReport) -> list[str]:
    problems: list[str] = []
    if op.op not in SUPPORTED_OPS:
        problems.append(f"{op.op} is not an Edge TPU operation")
    wrong_type: dict[str, list[str]] = {}  # "float32 tensors" -> names, grouped to keep the reason short
    for ti in [*op.inputs, *op.outputs]:
        if ti < 0:
            continue
        t = info.tensors[ti]
        name = _short(t.name)
        if t.constant:
            if t.dtype in _INT8 and t.quantization is None:
                wrong_type.setdefault(f"{t.dtype} constants without quantization parameters", []).append(name)
            elif t.dtype not in _INT8 and t.dtype not in _PARAMETER_DTYPES:
                wrong_type.setdefault(f"{t.dtype} weights (quantize to int8: full-integer post-training "
                                      "quantization)", []).append(name)
            continue
        if t.dtype not in _INT8:
            wrong_type.setdefault(f"{t.dtype} tensors (the Edge TPU computes only int8/uint8)", []).append(name)
        elif t.quantization is None:
            wrong_type.setdefault(f"{t.dtype} tensors without quantization parameters", []).append(name)
        if any(d <= 0 for d in t.shape):
            problems.append(f"'{name}' has no fixed shape ({t.shape})")
            report.model_issues.append(f"tensor '{name}' has no fixed shape ({t.shape})")
        sig = signatures[ti] if ti < len(signatures) else []
        if any(d < 0 for d in sig[1:]):
            problems.append(f"'{name}' has dynamic dimensions {sig}")
        if _non_unit(t.shape) > 3:
            problems.append(f"'{name}' has shape {t.shape}: {_non_unit(t.shape)} dimensions larger than 1 "
                            "(the Edge TPU handles at most the 3 innermost)")
    problems += [f"{kind}: {_names(names)}" for kind, names in wrong_type.items()]
    for pos in _SIZE_OPERANDS.get(op.op, ()):
        if pos < len(op.inputs) and op.inputs[pos] >= 0 and not info.tensors[op.inputs[pos]].constant:
            name = _short(info.tensors[op.inputs[pos]].name)
            problems.append(f"its output size depends on the runtime value of '{name}'")
            report.model_issues.append(f"op {op.index} ({op.op}) makes a dynamic-sized tensor from '{name}'; "
                                       "the compiler refuses graphs with dynamic-sized tensors")
    problems += _limit_problems(info, op)
    return problems


def _short(name: str) -> str:
    """Converter names join every fused op with ';': the first part names the tensor well enough."""
    first = name.split(";", 1)[0]
    return first if len(first) <= 48 else first[:45] + "..."


def _names(names: list[str]) -> str:
    unique = list(dict.fromkeys(names))
    more = f" and {len(unique) - 3} more" if len(unique) > 3 else ""
    return ", ".join(unique[:3]) + more


def _limit_problems(info: TFLiteInfo, op) -> list[str]:
    """The documented per-op limits that shapes and constant data reveal."""
    ins = [info.tensors[i] for i in op.inputs if i >= 0]
    outs = [info.tensors[i] for i in op.outputs if i >= 0]
    if op.op == "SOFTMAX" and ins:
        t = ins[0]
        if _non_unit(t.shape) > 1 or t.elements > _SOFTMAX_MAX:
            return [f"SOFTMAX input {t.shape}: the Edge TPU needs a 1-D input of at most {_SOFTMAX_MAX:,} elements"]
    if op.op == "FULLY_CONNECTED" and outs and _non_unit(outs[0].shape) > 1:
        return [f"FULLY_CONNECTED output {outs[0].shape} is not one-dimensional"]
    if op.op == "CONCATENATION":
        constants = [t for t in ins if t.constant]
        if constants and (len(ins) != 2 or len(constants) != 1 or (constants[0].zero_fraction or 0) < 1.0):
            return ["CONCATENATION with a constant input maps only as zero padding: exactly 2 inputs, "
                    "the constant one all zeros"]
    if op.op == "PRELU" and len(ins) > 1:
        alpha = ins[1].shape
        if _non_unit(alpha) > 1 or (alpha and _non_unit(alpha[:-1]) > 0):
            return [f"PRELU alpha {alpha}: only its innermost dimension may be larger than 1"]
    if op.op in ("RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR") and ins and _non_unit(ins[0].shape) > 3:
        return [f"{op.op} input {ins[0].shape} is not 3-dimensional"]
    return []


def _partition(ops: list[OpVerdict]) -> None:
    """One contiguous Edge TPU part: from the first op that can map to the next one that cannot."""
    start = next((i for i, o in enumerate(ops) if not o.reasons), None)
    if start is None:
        return
    stop = next((i for i in range(start, len(ops)) if ops[i].reasons), len(ops))
    for i in range(start, stop):
        ops[i].on_tpu = True
    for o in ops[stop:]:
        if not o.reasons:
            o.reasons.append(f"after op {stop} ({ops[stop].op}), which cannot map: the compiler maps one "
                             "contiguous part of the graph and leaves the rest on the CPU")
