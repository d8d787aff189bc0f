"""Coral's `edgetpu_compiler`: finding it, running it, and reading its report.

The compiler (x86-64 Linux only) is run when it is on PATH; its stdout and
operation log are parsed (ops on the Edge TPU / on the CPU, on-chip and
off-chip parameter memory, the per-op status table). When it is absent the
caller says so and goes on with the requirement check alone.

Tested here: the parsers on real compiler output and the absent-compiler
path; no edgetpu_compiler was available to run.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from kit.core.errors import TargetError
from kit.core.tables import format_table

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
        lines = [f"edgetpu_compiler {self.compiler_version or '?'}: "
                 f"{'compiled' if self.succeeded else 'FAILED'} {self.input_model or ''} -> {self.output_model or '-'}"]
        lines.append(f"  ops on the Edge TPU: {_num(self.ops_tpu)} of {_num(self.ops_total)}, "
                     f"on the CPU: {_num(self.ops_cpu)}, Edge TPU subgraphs: {_num(self.subgraphs)}")
        lines.append(f"  parameter memory: on-chip {format_size(self.on_chip_bytes)} "
                     f"(remaining {format_size(self.on_chip_remaining_bytes)}), "
                     f"off-chip streamed {format_size(self.off_chip_bytes)}")
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


def format_size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("GiB", "MiB", "KiB"):
        if n >= _SIZE_UNITS[unit]:
            return f"{n / _SIZE_UNITS[unit]:.2f} {unit}"
    return f"{n} B"
