"""The `tflite::MicroMutableOpResolver<N>` registration for exactly the ops a model uses.

`ADD_METHODS` maps each op TFLite Micro has a kernel for (builtin names as in
the TFLite schema, custom ops by their custom code) to the resolver method
that registers it, as declared in TFLM's `micro_mutable_op_resolver.h`.
"""
from __future__ import annotations

from kit.core.errors import ModelError
from kit.core.tflite_file import TFLiteInfo

ADD_METHODS: dict[str, str] = {
    "ABS": "AddAbs", "ADD": "AddAdd", "ADD_N": "AddAddN", "ARG_MAX": "AddArgMax", "ARG_MIN": "AddArgMin",
    "ASSIGN_VARIABLE": "AddAssignVariable", "AVERAGE_POOL_2D": "AddAveragePool2D", "BATCH_MATMUL": "AddBatchMatMul",
    "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd", "BROADCAST_ARGS": "AddBroadcastArgs", "BROADCAST_TO": "AddBroadcastTo",
    "CALL_ONCE": "AddCallOnce", "CAST": "AddCast", "CEIL": "AddCeil", "CONCATENATION": "AddConcatenation",
    "CONV_2D": "AddConv2D", "COS": "AddCos", "CUMSUM": "AddCumSum", "DEPTH_TO_SPACE": "AddDepthToSpace",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D", "DEQUANTIZE": "AddDequantize", "DIV": "AddDiv",
    "DYNAMIC_UPDATE_SLICE": "AddDynamicUpdateSlice", "EMBEDDING_LOOKUP": "AddEmbeddingLookup", "ELU": "AddElu",
    "EQUAL": "AddEqual", "EXP": "AddExp", "EXPAND_DIMS": "AddExpandDims", "FILL": "AddFill", "FLOOR": "AddFloor",
    "FLOOR_DIV": "AddFloorDiv", "FLOOR_MOD": "AddFloorMod", "FULLY_CONNECTED": "AddFullyConnected",
    "GATHER": "AddGather", "GATHER_ND": "AddGatherNd", "GREATER": "AddGreater", "GREATER_EQUAL": "AddGreaterEqual",
    "HARD_SWISH": "AddHardSwish", "IF": "AddIf", "L2_NORMALIZATION": "AddL2Normalization",
    "L2_POOL_2D": "AddL2Pool2D", "LEAKY_RELU": "AddLeakyRelu", "LESS": "AddLess", "LESS_EQUAL": "AddLessEqual",
    "LOG": "AddLog", "LOGICAL_AND": "AddLogicalAnd", "LOGICAL_NOT": "AddLogicalNot", "LOGICAL_OR": "AddLogicalOr",
    "LOGISTIC": "AddLogistic", "LOG_SOFTMAX": "AddLogSoftmax", "MAXIMUM": "AddMaximum",
    "MAX_POOL_2D": "AddMaxPool2D", "MIRROR_PAD": "AddMirrorPad", "MEAN": "AddMean", "MINIMUM": "AddMinimum",
    "MUL": "AddMul", "NEG": "AddNeg", "NOT_EQUAL": "AddNotEqual", "PACK": "AddPack", "PAD": "AddPad",
    "PADV2": "AddPadV2", "PRELU": "AddPrelu", "QUANTIZE": "AddQuantize", "READ_VARIABLE": "AddReadVariable",
    "REDUCE_ALL": "AddReduceAll", "REDUCE_MAX": "AddReduceMax", "REDUCE_MIN": "AddReduceMin", "RELU": "AddRelu",
    "RELU6": "AddRelu6", "RESHAPE": "AddReshape", "RESIZE_BILINEAR": "AddResizeBilinear",
    "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor", "REVERSE_V2": "AddReverseV2", "ROUND": "AddRound",
    "RSQRT": "AddRsqrt", "SELECT_V2": "AddSelectV2", "SHAPE": "AddShape", "SIN": "AddSin", "SLICE": "AddSlice",
    "SOFTMAX": "AddSoftmax", "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd", "SPACE_TO_DEPTH": "AddSpaceToDepth",
    "SPLIT": "AddSplit", "SPLIT_V": "AddSplitV", "SQUEEZE": "AddSqueeze", "SQRT": "AddSqrt", "SQUARE": "AddSquare",
    "SQUARED_DIFFERENCE": "AddSquaredDifference", "STRIDED_SLICE": "AddStridedSlice", "SUB": "AddSub",
    "SUM": "AddSum", "SVDF": "AddSvdf", "TANH": "AddTanh", "TRANSPOSE_CONV": "AddTransposeConv",
    "TRANSPOSE": "AddTranspose", "UNPACK": "AddUnpack",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM", "VAR_HANDLE": "AddVarHandle",
    "WHILE": "AddWhile", "ZEROS_LIKE": "AddZerosLike",
    # custom ops, by custom code
    "TFLM_DECODE": "AddDecode", "CIRCULAR_BUFFER": "AddCircularBuffer",
    "TFLite_Detection_PostProcess": "AddDetectionPostprocess", "ethos-u": "AddEthosU",
    "SignalDelay": "AddDelay", "SignalEnergy": "AddEnergy", "SignalFftAutoScale": "AddFftAutoScale",
    "SignalFilterBank": "AddFilterBank", "SignalFilterBankLog": "AddFilterBankLog",
    "SignalFilterBankSquareRoot": "AddFilterBankSquareRoot",
    "SignalFilterBankSpectralSubtraction": "AddFilterBankSpectralSubtraction", "SignalFramer": "AddFramer",
    "SignalIrfft": "AddIrfft", "SignalOverlapAdd": "AddOverlapAdd", "SignalPCAN": "AddPCAN", "SignalRfft": "AddRfft",
    "SignalStacker": "AddStacker", "SignalWindow": "AddWindow",
}

_DENSIFY_HINT = ("convert without the sparsity optimization; `kit firmware` stores pruned weights with TFLM's "
                 "prune compression instead")
_FLEX_HINT = "the model needs TensorFlow (Flex) ops; rebuild it with TFLite builtin ops only"
_DEFAULT_HINT = "rebuild the model with ops TFLite Micro supports (see its micro_mutable_op_resolver.h)"


def model_ops(info: TFLiteInfo) -> list[str]:
    """The model's op names, in order of first use (the order the resolver registers them)."""
    seen: dict[str, None] = {}
    for op in info.ops:
        seen.setdefault(op.op, None)
    return list(seen)


def resolver_methods(info: TFLiteInfo) -> list[tuple[str, str]]:
    """(op, resolver method) for every op of the model; `ModelError` naming any op TFLM has no kernel for."""
    ops = model_ops(info)
    missing = [op for op in ops if op not in ADD_METHODS]
    if missing:
        hint = (_DENSIFY_HINT if "DENSIFY" in missing
                else _FLEX_HINT if any(m.startswith("Flex") for m in missing) else _DEFAULT_HINT)
        raise ModelError(f"TensorFlow Lite Micro has no kernel for op(s) {', '.join(missing)} used by the model",
                         hint)
    return [(op, ADD_METHODS[op]) for op in ops]


def render_resolver(methods: list[tuple[str, str]], header_name: str = "op_resolver.h") -> tuple[str, str]:
    """(header, source) declaring `ModelOpResolver` and `RegisterModelOps()` for these ops."""
    header = f"""// Op resolver for the model: exactly the ops it uses. Generated by `kit firmware`.
#ifndef KIT_OP_RESOLVER_H_
#define KIT_OP_RESOLVER_H_

#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"

constexpr int kModelOpCount = {len(methods)};
using ModelOpResolver = tflite::MicroMutableOpResolver<kModelOpCount>;

// Registers every op of the model; kTfLiteError if one fails (e.g. the TFLM build lacks its kernel).
TfLiteStatus RegisterModelOps(ModelOpResolver& resolver);

#endif  // KIT_OP_RESOLVER_H_
"""
    lines = "\n".join(f"  if (resolver.{method}() != kTfLiteOk) return kTfLiteError;  // {op}"
                      for op, method in methods)
    source = f"""// Generated by `kit firmware`.
#include "{header_name}"

TfLiteStatus RegisterModelOps(ModelOpResolver& resolver) {{
{lines}
  return kTfLiteOk;
}}
"""
    return header, source
