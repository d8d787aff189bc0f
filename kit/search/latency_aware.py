"""Latency-aware pruning: shape the zeros the way a runtime's sparse kernels need them, or say none exist.

Zeros only save time where a kernel skips them. What LiteRT actually runs sparse:

- FullyConnected with sparse-encoded weights, built-in kernels: float32 with 1x4
  blocks and int8 with 1x16 blocks of the runtime's [out, in] weight layout. With
  the default delegate (XNNPACK) a float sparse FullyConnected stays on that
  built-in kernel (XNNPACK does not take sparse weights), which is fast; XNNPACK
  has no int8 sparse kernel and its dense int8 FullyConnected is usually faster
  than the built-in int8 sparse one, so int8 is not shaped for `litert`.
- XNNPACK's sparse inference for float CNNs: the graph starts with a 3x3
  stride-2 convolution on 3 channels with padding 1 on every side, ends in a
  global mean, and its 1x1 convolutions hold >= 2/3 zeros; the weights must be
  sparse-encoded (the converter then adds DENSIFY, which tells XNNPACK to try).
  XNNPACK disables this path on x86 CPUs with AVX (dense is faster there).
- TensorFlow Lite Micro has no sparse kernels at all.

`plan()` applies these rules to a model and returns per-layer recipe overrides
(granularity and block) plus the reason for every layer; `confirm()` converts a
dense and a shaped, pruned model and measures both on a target, so a speed-up is
reported only when it was measured.
"""
from __future__ import annotations

import platform
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from kit.core.errors import KitError
from kit.core.vocab import DELEGATE_OF_RUNTIME, RUNTIMES
from kit.recipe import LayerOverride

FORMATS = ("float32", "int8")
#: XNNPACK's threshold for running a 1x1 convolution sparse
XNNPACK_MIN_ZEROS = 2.0 / 3.0
NO_SPARSE_KERNELS = "no sparse kernels"


@dataclass
class LayerShape:
    layer: str
    kind: str
    sparse_kernel: bool
    granularity: str | None = None  # "block" | "unstructured" when sparse_kernel
    block: tuple[int, int] | None = None  # rows x cols of the runtime's [out, in] layout
    min_sparsity: float = 0.0  # below this the kernel gains nothing or does not engage
    reason: str = ""


@dataclass
class LatencyPlan:
    runtime: str
    fmt: str
    arch: str
    layers: list[LayerShape]
    notes: list[str] = field(default_factory=list)

    @property
    def any_sparse(self) -> bool:
        return any(s.sparse_kernel for s in self.layers)

    def shaped(self) -> list[str]:
        return [s.layer for s in self.layers if s.sparse_kernel]

    def overrides(self) -> dict[str, LayerOverride]:
        """Recipe overrides (granularity, block) for the layers a sparse kernel will run."""
        return {s.layer: LayerOverride(granularity=s.granularity, block=s.block if s.granularity == "block" else None)
                for s in self.layers if s.sparse_kernel}

    def summary(self) -> str:
        if not self.any_sparse:
            return (f"{NO_SPARSE_KERNELS} for {self.fmt} on {self.runtime} ({self.arch}): pruning shrinks the file "
                    "but will not make inference faster")
        return (f"{len(self.shaped())} of {len(self.layers)} layers run on sparse kernels for {self.fmt} on "
                f"{self.runtime} ({self.arch}): " + ", ".join(
                    f"{s.layer} ({_shape(s)})" for s in self.layers if s.sparse_kernel))

    def table(self, markdown: bool = False) -> str:
        from kit.core.tables import format_table

        rows = [[s.layer, s.kind, "yes" if s.sparse_kernel else "no", _shape(s) if s.sparse_kernel else "-",
                 f">= {s.min_sparsity:.0%}" if s.sparse_kernel and s.min_sparsity else "-", s.reason]
                for s in self.layers]
        return format_table(["layer", "type", "sparse kernel", "prune as", "zeros", "why"], rows, markdown)

    def to_dict(self) -> dict:
        return asdict(self)


def plan(model, runtime: str = "litert", fmt: str = "float32", arch: str | None = None) -> LatencyPlan:
    """Which layers of `model` a sparse kernel runs on `runtime` in format `fmt`, and how to prune them.

    arch: "arm", "x86-avx", "x86" (no AVX) or None (unknown); only XNNPACK's CNN path depends on it.
    """
    if runtime not in RUNTIMES:
        raise KitError(f"unknown runtime {runtime!r}", f"use one of {', '.join(RUNTIMES)}")
    if fmt not in FORMATS:
        raise KitError(f"latency-aware pruning knows the sparse kernels of {', '.join(FORMATS)}, not {fmt!r}",
                       "float16 and dynamic-range models run no sparse kernel the kit knows of")
    arch = arch or "unknown"
    layers = _weighted_layers(model)
    out = LatencyPlan(runtime, fmt, arch, [])
    cnn = _xnnpack_cnn(model) if runtime == "litert" and fmt == "float32" else None
    for layer in layers:
        out.layers.append(_rule(layer, runtime, fmt, arch, cnn))
    if cnn is not None and any(type(layer).__name__ == "Conv2D" for layer in layers):
        out.notes.append("XNNPACK sparse CNN structure: " + ("met" if cnn.ok else f"not met ({cnn.why})"))
    if runtime == "tflm":
        out.notes.append("sparse-encoded .tflite files load on TFLM but compute wrong results there: "
                         "never convert with sparse encoding for microcontrollers")
    if not out.any_sparse:
        out.notes.append(out.summary())
    return out


def host_arch() -> str:
    """Architecture class of this machine, as `plan()` takes it."""
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64", "i386", "i686"):
        try:
            flags = Path("/proc/cpuinfo").read_text()
        except OSError:
            return "x86-avx"  # every x86-64 CPU sold since 2011 has AVX
        return "x86-avx" if " avx" in flags else "x86"
    if machine.startswith(("arm", "aarch64")):
        return "arm"
    return machine or "unknown"


def target_arch(target) -> str:
    """Architecture class of a target's CPU: the host for `local`, else from the CPU name the device reports."""
    if getattr(target.uri, "scheme", "") == "local":
        return host_arch()
    cpu = (target.device_info().cpu or "").lower()
    if any(k in cpu for k in ("cortex", "arm", "aarch64", "apple", "bcm", "snapdragon", "tensor", "kryo", "neoverse")):
        return "arm"
    if any(k in cpu for k in ("intel", "amd", "xeon", "x86", "ryzen", "epyc")):
        return "x86-avx"
    return "unknown"


@dataclass
class Confirmation:
    target: str
    runtime: str
    fmt: str
    dense_us: float
    sparse_us: float
    dense_bytes: int
    sparse_bytes: int
    sparsity: dict[str, float]

    @property
    def speedup(self) -> float:
        return self.dense_us / self.sparse_us

    @property
    def faster(self) -> bool:
        """At least 10% faster: less is within the noise of a shared machine."""
        return self.sparse_us < 0.9 * self.dense_us

    def summary(self) -> str:
        verdict = "faster" if self.faster else "not faster"
        return (f"{self.fmt} on {self.runtime} at {self.target}: dense {self.dense_us:.1f} us, shaped sparse "
                f"{self.sparse_us:.1f} us (x{self.speedup:.2f}, {verdict}); {self.dense_bytes:,} -> "
                f"{self.sparse_bytes:,} bytes")

    def to_dict(self) -> dict:
        return {**asdict(self), "speedup": self.speedup, "faster": self.faster}


def confirm(model, latency_plan: LatencyPlan, target, sparsity: float | dict[str, float] = 0.9,
            calibration: np.ndarray | None = None, runs: int = 300) -> Confirmation:
    """Prune the plan's layers one-shot (shaped as planned), convert dense and sparse, and time both on `target`.

    Only the timing matters here (no accuracy): the pruned variant is the original with its smallest weights or
    blocks zeroed at `sparsity` (one value, or per layer).
    """
    from kit.techniques import prune as pruning
    from kit.convert.converter import ArtifactSpec, convert
    from kit.search.sensitivity import layers_by_name, prunable_weights, magnitude_mask
    from targets.base import RunSettings
    from targets.registry import get_target

    if not latency_plan.any_sparse:
        raise KitError(latency_plan.summary(), "nothing to confirm: no layer runs on a sparse kernel")
    if latency_plan.runtime not in DELEGATE_OF_RUNTIME:
        raise KitError(f"{latency_plan.runtime} latency cannot be measured with a target profile",
                       "confirm on litert or litert-builtin")
    per_layer = sparsity if isinstance(sparsity, dict) else {n: float(sparsity) for n in latency_plan.shaped()}
    pruned = pruning.private_copy(model)
    layers = layers_by_name(pruned)
    for s in latency_plan.layers:
        ratio = max(per_layer.get(s.layer, 0.0), 0.0)
        if not s.sparse_kernel or ratio <= 0:
            continue
        keras_block = (s.block[1], s.block[0]) if s.granularity == "block" else (1, 1)
        for w in prunable_weights(layers[s.layer]):
            v = w.numpy()
            w.assign(v * magnitude_mask(v, ratio, keras_block))
    owned = isinstance(target, str)
    t = get_target(target) if owned else target
    settings = RunSettings(threads=1, warmup=max(10, runs // 10), runs=runs,
                           delegate=DELEGATE_OF_RUNTIME[latency_plan.runtime])
    with tempfile.TemporaryDirectory(prefix="kit-latency-") as tmp:
        try:
            dense = convert(model, ArtifactSpec(latency_plan.fmt, "dense"), calibration)
            sparse = convert(pruned, ArtifactSpec(latency_plan.fmt, "sparse"), calibration)
            medians = []
            for name, data in (("dense", dense), ("sparse", sparse)):
                path = Path(tmp) / f"{name}.tflite"
                path.write_bytes(data)
                r = t.profile(path, settings)
                if r.latency is None or r.latency.median_us is None:
                    raise KitError(f"{t.uri} reported no median latency")
                medians.append(float(r.latency.median_us))
        finally:
            if owned:
                t.close()
    return Confirmation(str(t.uri), latency_plan.runtime, latency_plan.fmt, medians[0], medians[1], len(dense),
                        len(sparse), {k: v for k, v in per_layer.items() if v > 0})


@dataclass
class _CNNCheck:
    ok: bool
    why: str


def _rule(layer, runtime: str, fmt: str, arch: str, cnn: _CNNCheck | None) -> LayerShape:
    kind = type(layer).__name__
    shape = LayerShape(layer.name, kind, False)
    if runtime == "tflm":
        shape.reason = f"{NO_SPARSE_KERNELS}: TensorFlow Lite Micro runs every layer dense"
        return shape
    if kind == "Dense":
        if fmt == "float32":
            shape.sparse_kernel, shape.granularity, shape.block = True, "block", (1, 4)
            shape.min_sparsity = 0.3  # below this the converter keeps the weights dense
            shape.reason = "LiteRT's built-in sparse FullyConnected runs float 1x4 blocks" + (
                " (XNNPACK leaves sparse FullyConnected to it)" if runtime == "litert" else "")
        elif runtime == "litert-builtin":
            shape.sparse_kernel, shape.granularity, shape.block = True, "block", (1, 16)
            shape.min_sparsity = 0.3
            shape.reason = "LiteRT's built-in sparse FullyConnected runs int8 1x16 blocks"
        else:
            shape.reason = (f"{NO_SPARSE_KERNELS} in XNNPACK for int8; a sparse int8 FullyConnected would leave "
                            "XNNPACK for the built-in 1x16 kernel, usually slower than XNNPACK's dense int8")
        return shape
    if kind == "Conv2D" and fmt == "float32" and runtime == "litert":
        one_by_one = tuple(layer.kernel_size) == (1, 1) and tuple(layer.strides) == (1, 1) and layer.groups == 1
        if not one_by_one:
            shape.reason = "XNNPACK's sparse path runs only 1x1 convolutions sparse"
        elif cnn is None or not cnn.ok:
            shape.reason = f"{NO_SPARSE_KERNELS} here: the model does not fit XNNPACK's sparse CNN path ({cnn.why})"
        elif arch == "x86-avx":
            shape.reason = f"{NO_SPARSE_KERNELS} on this CPU: XNNPACK disables sparse inference on x86 with AVX"
        else:
            shape.sparse_kernel, shape.granularity, shape.min_sparsity = True, "unstructured", XNNPACK_MIN_ZEROS
            shape.reason = "XNNPACK sparse inference (CHW layout) runs 1x1 convolutions with >= 2/3 zeros" + (
                "" if arch == "arm" else f"; CPU class {arch}: confirm by measurement")
        return shape
    if fmt == "int8":
        shape.reason = f"{NO_SPARSE_KERNELS} for int8 {kind}"
    else:
        shape.reason = f"{NO_SPARSE_KERNELS} for {kind} on {runtime}: sparse weights are densified at load"
    return shape


def _weighted_layers(model) -> list:
    from kit.search.sensitivity import layers_by_name, prunable_weights

    out = []
    for layer in layers_by_name(model).values():
        try:
            if layer.weights and prunable_weights(layer):
                out.append(layer)
        except (KeyError, AttributeError, ValueError):
            continue  # not a layer TF-MOT can prune
    return out


def _xnnpack_cnn(model) -> _CNNCheck:
    """XNNPACK's conditions for sparse CNN inference, checked on the Keras graph (float models only)."""
    from kit.search.sensitivity import layers_by_name

    layers = [layer for layer in layers_by_name(model).values() if type(layer).__name__ != "InputLayer"]
    if not layers:
        return _CNNCheck(False, "no layers")
    first, padded = layers[0], False
    if type(first).__name__ == "ZeroPadding2D":
        padded = tuple(map(tuple, first.padding)) == ((1, 1), (1, 1))
        first = layers[1] if len(layers) > 1 else first
    if type(first).__name__ != "Conv2D":
        return _CNNCheck(False, f"it starts with {type(first).__name__}, not a 3x3 stride-2 convolution")
    channels = first.input_shape[-1]
    if tuple(first.kernel_size) != (3, 3) or tuple(first.strides) != (2, 2) or channels != 3:
        return _CNNCheck(False, f"the first convolution is {first.kernel_size[0]}x{first.kernel_size[1]} stride "
                                f"{first.strides[0]} on {channels} channels, not 3x3 stride 2 on 3")
    if not padded and not _same_pads_one(first):
        return _CNNCheck(False, "the first convolution is not padded by 1 on every side (SAME padding on an even "
                                "input size pads only bottom/right; use ZeroPadding2D(1) and a valid convolution)")
    kinds = [type(layer).__name__ for layer in layers]
    if "GlobalAveragePooling2D" not in kinds:
        return _CNNCheck(False, "it does not end in a global average pool (mean)")
    tail = kinds[kinds.index("GlobalAveragePooling2D") + 1:]
    if any(k not in ("Dense", "Dropout", "Flatten", "Reshape", "Activation", "Softmax") for k in tail):
        return _CNNCheck(False, "layers other than the classifier follow the global average pool")
    return _CNNCheck(True, "")


def _same_pads_one(conv) -> bool:
    """SAME padding with stride 2 and a 3x3 kernel pads 1 on every side exactly when the input size is odd."""
    if conv.padding != "same":
        return False
    h, w = conv.input_shape[1], conv.input_shape[2]
    return h is not None and w is not None and h % 2 == 1 and w % 2 == 1


def _shape(s: LayerShape) -> str:
    if s.granularity == "block" and s.block:
        return f"{s.block[0]}x{s.block[1]} blocks"
    return s.granularity or "-"
