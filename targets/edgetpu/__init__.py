"""Coral Edge TPU: the requirement check, the `edgetpu_compiler` driver, and the target that runs compiled models."""
from targets.edgetpu.check import COMPILED_OP, SUPPORTED_OPS, EdgeTPUReport, OpVerdict, check_edgetpu_requirements
from targets.edgetpu.compiler import (CompileResult, OpLogRow, compile_for_edgetpu, compiler_missing_message,
                                      find_compiler, parse_compiler_output, parse_operation_log)
from targets.edgetpu.target import DEFAULT_LIBRARY, EdgeTPUOptions, EdgeTPUTarget

__all__ = ["COMPILED_OP", "DEFAULT_LIBRARY", "SUPPORTED_OPS", "CompileResult", "EdgeTPUOptions", "EdgeTPUReport",
           "EdgeTPUTarget", "OpLogRow", "OpVerdict", "check_edgetpu_requirements", "compile_for_edgetpu",
           "compiler_missing_message", "find_compiler", "parse_compiler_output", "parse_operation_log"]
