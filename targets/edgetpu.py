"""Coral Edge TPU: requirement check, `edgetpu_compiler` wrapper, and the `edgetpu+local` / `edgetpu+ssh://…` target.

The requirement check reads the model with `kit.core.tflite_file.read_tflite`
(untrusted input) and applies the Edge TPU's documented rules: every tensor
an op reads or writes is int8/uint8 with quantization parameters (constant
int32 bias and shape operands are allowed), shapes are fixed, at most the 3
innermost dimensions of an activation are larger than 1, and the op is in
the Edge TPU's supported-op table (`SUPPORTED_OPS`, with its documented
limits). The compiler maps one contiguous run of ops: from the first op that
can map up to the next one that cannot; everything after that runs on the
CPU even when supported. Limits that need operator options or constant
values (dilations, fused activations, reduction axes, strides) are listed as
"not checked" for the ops that have them; the compiler has the final word.

`edgetpu_compiler` (x86-64 Linux only) is run when it is on PATH; its stdout
and operation log are parsed (ops on the Edge TPU / on the CPU, on-chip and
off-chip parameter memory, the per-op status table). When it is absent the
kit says so and goes on with the check alone.

The target runs the compiled model with the device runner and the
`libedgetpu.so.1` delegate (`--delegate edgetpu --delegate-library …`), on
this host or through the SSH target.

Tested here: the check on real MLPerf Tiny and TFLite Micro models (int8 and
float), the parsers on real compiler output, the absent-compiler path, and
the target's refusal paths on a machine without libedgetpu (locally and over
a real SSH server). No Edge TPU, Coral Dev Board or USB Accelerator, and no
edgetpu_compiler, were available: compiling and running on the TPU were not
run.
"""
from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.core.errors import ModelError, TargetError
from kit.core.tflite_file import TFLiteInfo, read_tflite
from targets.base import ArtifactRef, Deployment, DeviceInfo, ProfileResult, RunSettings, Target
from targets.profiles import DeviceProfile
from targets.runner import RUNNER, parse_runner_output, runner_args, runner_result
from targets.uri import TargetURI

COMPILED_OP = "edgetpu-custom-op"
DEFAULT_LIBRARY = "libedgetpu.so.1"
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


# -- requirement check --------------------------------------------------------------------------------

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
        from kit.core.tables import format_table

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


# -- edgetpu_compiler ---------------------------------------------------------------------------------

@dataclass
class OpLogRow:
    op: str
    count: int
    status: str

    @property
    def mapped(self) -> bool:
        return self.status.startswith("Mapped to Edge TPU")


@dataclass
class CompileResult:
    compiler_version: str | None = None
    input_model: str | None = None
    output_model: str | None = None
    succeeded: bool = False
    compile_ms: float | None = None
    ops_total: int | None = None
    ops_tpu: int | None = None
    ops_cpu: int | None = None
    subgraphs: int | None = None
    on_chip_bytes: int | None = None
    on_chip_remaining_bytes: int | None = None
    off_chip_bytes: int | None = None
    operation_log: str | None = None
    op_log: list[OpLogRow] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    output_path: str | None = None  # where the compiled model was written (set by compile_for_edgetpu)

    def summary(self) -> str:
        from kit.core.tables import format_table

        lines = [f"edgetpu_compiler {self.compiler_version or '?'}: "
                 f"{'compiled' if self.succeeded else 'FAILED'} {self.input_model or ''} -> {self.output_model or '-'}"]
        lines.append(f"  ops on the Edge TPU: {_num(self.ops_tpu)} of {_num(self.ops_total)}, "
                     f"on the CPU: {_num(self.ops_cpu)}, Edge TPU subgraphs: {_num(self.subgraphs)}")
        lines.append(f"  parameter memory: on-chip {_size(self.on_chip_bytes)} "
                     f"(remaining {_size(self.on_chip_remaining_bytes)}), off-chip streamed {_size(self.off_chip_bytes)}")
        lines += [f"  error: {e}" for e in self.errors]
        if self.op_log:
            lines.append(format_table(["op", "count", "status"], [[r.op, r.count, r.status] for r in self.op_log]))
        return "\n".join(lines)


_SIZE_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
_STDOUT_FIELDS = {
    "Input model": ("input_model", str), "Output model": ("output_model", str),
    "On-chip memory used for caching model parameters": ("on_chip_bytes", "size"),
    "On-chip memory remaining for caching model parameters": ("on_chip_remaining_bytes", "size"),
    "Off-chip memory used for streaming uncached model parameters": ("off_chip_bytes", "size"),
    "Number of Edge TPU subgraphs": ("subgraphs", int), "Total number of operations": ("ops_total", int),
    "Operation log": ("operation_log", str),
    "Number of operations that will run on Edge TPU": ("ops_tpu", int),
    "Number of operations that will run on CPU": ("ops_cpu", int),
}
_OP_ROW = re.compile(r"^([A-Z][A-Z0-9_]*|[a-z][\w-]*)\s+(\d+)\s+(\S.*?)\s*$")


def _parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*([0-9.]+)\s*(B|KiB|MiB|GiB)\s*", text)
    if not m:
        raise ValueError(f"not a size: {text!r}")
    return round(float(m[1]) * _SIZE_UNITS[m[2]])


def parse_operation_log(text: str) -> list[OpLogRow]:
    """The `Operator  Count  Status` table of the operation log (or of stdout with -s)."""
    rows, in_table = [], False
    for line in text.splitlines():
        if re.match(r"^\s*Operator\s+Count\s+Status\s*$", line):
            in_table = True
            continue
        if in_table:
            m = _OP_ROW.match(line.strip())
            if m:
                rows.append(OpLogRow(m[1], int(m[2]), m[3]))
    return rows


def parse_compiler_output(stdout: str) -> CompileResult:
    """`edgetpu_compiler` stdout -> CompileResult (tolerates excerpts: every field is optional)."""
    r = CompileResult()
    for line in stdout.splitlines():
        s = line.strip()
        if s.startswith("Edge TPU Compiler version"):
            r.compiler_version = s.rsplit(" ", 1)[-1]
        elif m := re.match(r"Model compiled successfully in (\d+) ms", s):
            r.compile_ms, r.succeeded = float(m[1]), True
        elif s.startswith(("Compilation succeeded", "Model successfully compiled")):
            r.succeeded = True
        elif s.startswith(("ERROR:", "Compilation failed", "Invalid model", "Model not quantized")):
            r.errors.append(s)
        elif ":" in s:
            key, value = (p.strip() for p in s.split(":", 1))
            if key in _STDOUT_FIELDS and value:
                attr, kind = _STDOUT_FIELDS[key]
                try:
                    setattr(r, attr, _parse_size(value) if kind == "size" else kind(value))
                except ValueError:
                    r.errors.append(f"unreadable {key!r}: {value!r}")
    if r.errors and any(e.startswith("Compilation failed") for e in r.errors):
        r.succeeded = False
    if r.ops_total is not None and r.ops_tpu is None and "not all operations are supported" not in stdout \
            and r.output_model:
        r.ops_tpu, r.ops_cpu = r.ops_total, 0  # a full mapping prints no per-device counts
    r.op_log = parse_operation_log(stdout)
    if r.ops_total is not None and r.ops_tpu is None and r.op_log:
        r.ops_tpu = sum(row.count for row in r.op_log if row.mapped)
        r.ops_cpu = r.ops_total - r.ops_tpu
    return r


def find_compiler(name: str = "edgetpu_compiler") -> str | None:
    return shutil.which(name)


def compiler_missing_message(name: str = "edgetpu_compiler") -> str:
    return (f"{name} is not on PATH: skipped compiling (the requirement check above still applies). "
            "The compiler runs on x86-64 Linux; install the `edgetpu-compiler` package from Coral's apt "
            "repository, then run this again.")


def compile_for_edgetpu(model: str | Path, out_dir: str | Path, compiler: str = "edgetpu_compiler",
                        timeout_s: float = 300.0) -> CompileResult:
    """Run the compiler; raise TargetError when it is missing or fails."""
    exe = find_compiler(compiler)
    if exe is None:
        raise TargetError(compiler_missing_message(compiler))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        proc = subprocess.run([exe, "--show_operations", "--out_dir", str(out_dir), str(model)],
                              capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise TargetError(f"edgetpu_compiler did not finish {model} within {timeout_s:.0f} s") from None
    result = parse_compiler_output(proc.stdout)
    if result.operation_log:
        log_path = out_dir / Path(result.operation_log).name
        if log_path.is_file():
            result.op_log = parse_operation_log(log_path.read_text(errors="replace")) or result.op_log
    compiled = out_dir / (result.output_model or f"{Path(model).stem}_edgetpu.tflite")
    if proc.returncode != 0 or not result.succeeded or not compiled.is_file():
        tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-4:])
        raise TargetError(f"edgetpu_compiler could not compile {model}: {tail}",
                          "run `kit edgetpu MODEL` to see which requirements the model misses")
    result.output_path = str(compiled)
    return result


def _num(v: int | None) -> str:
    return "?" if v is None else str(v)


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("GiB", "MiB", "KiB"):
        if n >= _SIZE_UNITS[unit]:
            return f"{n / _SIZE_UNITS[unit]:.2f} {unit}"
    return f"{n} B"


# -- the target ---------------------------------------------------------------------------------------

class EdgeTPUTarget(Target):
    """`edgetpu+local` (a USB Accelerator on this host) or `edgetpu+ssh://…` (Dev Board, or a board with one).

    Models that are not compiled yet are compiled first when edgetpu_compiler
    is installed; otherwise they are refused, since running an uncompiled
    model through the delegate would time the CPU and label it Edge TPU.
    """

    schemes = ("edgetpu+local", "edgetpu+ssh")

    def __init__(self, uri: TargetURI, profile: DeviceProfile | None = None, delegate_library: str | None = None,
                 compiler: str = "edgetpu_compiler", **options: Any):
        super().__init__(uri, profile)
        delegate_library = delegate_library or (profile.extra.get("delegate_library") if profile else None) \
            or DEFAULT_LIBRARY
        self.delegate_library = delegate_library
        self.compiler = compiler
        if uri.base_scheme == "ssh":
            from targets.ssh import SSHTarget

            self.board = SSHTarget(uri, profile, delegate_library=delegate_library, **options)
        elif uri.base_scheme == "local":
            unknown = sorted(set(options) - {"trust_on_first_use"})
            if unknown:
                raise TargetError(f"unknown option(s) for edgetpu+local: {', '.join(unknown)}",
                                  "options: delegate_library, compiler")
            self.board = None
        else:
            raise TargetError(f"the Edge TPU target runs over local or ssh, not {uri.base_scheme!r}",
                              "use edgetpu+local or edgetpu+ssh://user@host")
        self._runtime_ok = False

    @property
    def where(self) -> str:
        return self.board.where if self.board else "this host"

    def device_info(self) -> DeviceInfo:
        if self.board:
            info = self.board.device_info()
        else:
            proc = subprocess.run([sys.executable, str(RUNNER), "--info"], capture_output=True, text=True, timeout=60)
            d = parse_runner_output(proc.stdout, proc.stderr, where="local")["device"]
            info = DeviceInfo(name=d["name"], cpu=d["cpu"], os=d["os"], runtime=d["runtime"],
                              runtime_version=d["runtime_version"])
        info.extra["edgetpu_runtime"] = f"{self.delegate_library}: {self._runtime_problem() or 'loads'}"
        return info

    def _runtime_problem(self) -> str | None:
        """None when the delegate library loads on the device, else the loader's message."""
        probe = "import ctypes, sys; ctypes.CDLL(sys.argv[1])"
        if self.board:
            res = self.board.execute([self.board.python, "-c", probe, self.delegate_library], 60,
                                     "loading the Edge TPU runtime")
            ok, text = res.rc == 0, res.stderr or res.stdout
        else:
            proc = subprocess.run([sys.executable, "-c", probe, self.delegate_library], capture_output=True,
                                  text=True, timeout=60)
            ok, text = proc.returncode == 0, proc.stderr
        if ok:
            return None
        lines = text.strip().splitlines()
        return lines[-1] if lines else "the library did not load"

    def _require_runtime(self) -> None:
        if self._runtime_ok:
            return
        problem = self._runtime_problem()
        if problem:
            raise TargetError(f"the Edge TPU runtime {self.delegate_library} cannot be loaded on {self.where}: {problem}",
                              "install libedgetpu1-std (Coral's apt repository), plug in the accelerator, or pass "
                              "--option delegate_library=PATH")
        self._runtime_ok = True

    def deploy(self, artifact: Path) -> Deployment:
        if not artifact.is_file():
            raise TargetError(f"model file {artifact} does not exist")
        self._require_runtime()
        report = check_edgetpu_requirements(artifact)
        model, workdir, compiled = artifact, None, None
        if not report.compiled:
            if find_compiler(self.compiler) is None:
                raise TargetError(f"{artifact} is not compiled for the Edge TPU and {self.compiler} is not on PATH",
                                  "compile it on an x86-64 Linux machine with `kit edgetpu MODEL` and profile the "
                                  "*_edgetpu.tflite it writes")
            workdir = tempfile.mkdtemp(prefix="kit-edgetpu-")
            try:
                compiled = compile_for_edgetpu(artifact, workdir, self.compiler)
            except BaseException:
                shutil.rmtree(workdir, ignore_errors=True)
                raise
            model = Path(compiled.output_path)
        if self.board:
            try:
                deployment = self.board.deploy(model)
            except BaseException:
                if workdir:
                    shutil.rmtree(workdir, ignore_errors=True)
                raise
        else:
            deployment = Deployment(artifact=ArtifactRef.of(model), location=str(model))
        deployment.state.update(edgetpu_report=report, edgetpu_compile=compiled, edgetpu_workdir=workdir,
                                source=str(artifact))
        return deployment

    def _settings(self, settings: RunSettings) -> RunSettings:
        if settings.delegate not in ("default", "edgetpu"):
            raise TargetError(f"the Edge TPU target runs the edgetpu delegate, not {settings.delegate!r}",
                              "for a CPU baseline use --target local or ssh://…")
        return dataclasses.replace(settings, delegate="edgetpu")

    def run(self, deployment: Deployment, settings: RunSettings) -> dict[str, Any]:
        settings = self._settings(settings)
        try:
            return self._run(deployment, settings)
        except TargetError as e:
            output = f"{e.message} {e.hint or ''}"
            if "delegate" not in output.lower():
                raise
            raise TargetError(f"the Edge TPU delegate {self.delegate_library} failed on {self.where}: "
                              f"{output.rsplit('|', 1)[-1].strip()}",
                              "check that the accelerator is attached (lsusb: 1a6e:089a or 18d1:9302) and that "
                              "libedgetpu matches the installed LiteRT runtime") from None

    def _run(self, deployment: Deployment, settings: RunSettings) -> dict[str, Any]:
        if self.board:
            return self.board.run(deployment, settings)
        cmd = [sys.executable, str(RUNNER), *runner_args(deployment.location, settings, self.delegate_library)]
        if settings.core_mask:
            cmd = ["taskset", settings.core_mask, *cmd]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=settings.timeout_s)
        except subprocess.TimeoutExpired:
            raise TargetError(f"Edge TPU run took longer than {settings.timeout_s:.0f} s") from None
        return {"result": parse_runner_output(proc.stdout, proc.stderr, where="local Edge TPU"),
                "text": proc.stdout + proc.stderr}

    def collect(self, deployment: Deployment, raw: dict[str, Any], settings: RunSettings) -> ProfileResult:
        settings = self._settings(settings)
        if self.board:
            result = self.board.collect(deployment, raw, settings)
        else:
            result = runner_result(self.uri.raw, deployment.artifact, settings, raw["result"], raw["text"],
                                   memory_method="peak RSS of the runner process (getrusage)")
            energy = self.profile_spec.energy if self.profile_spec else {}
            result.energy_note = energy.get("note") or "no energy meter for the Edge TPU on this host"
        result.target = self.uri.raw
        compiled: CompileResult | None = deployment.state.get("edgetpu_compile")
        if compiled:
            result.notes.append(f"compiled from {deployment.state['source']} by edgetpu_compiler "
                                f"{compiled.compiler_version}: {compiled.ops_tpu} op(s) on the Edge TPU, "
                                f"{compiled.ops_cpu} on the CPU; on-chip parameters {_size(compiled.on_chip_bytes)}, "
                                f"off-chip {_size(compiled.off_chip_bytes)}")
        report: EdgeTPUReport = deployment.state["edgetpu_report"]
        if report.compiled:
            result.notes.append(f"precompiled model: {len(report.cpu_ops)} op(s) outside {COMPILED_OP} run on the CPU")
        return result

    def cleanup(self, deployment: Deployment) -> None:
        if self.board:
            self.board.cleanup(deployment)
        workdir = deployment.state.get("edgetpu_workdir")
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)

    def close(self) -> None:
        if self.board:
            self.board.close()
