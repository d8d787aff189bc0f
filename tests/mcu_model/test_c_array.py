"""The generated C++ model array compiles with g++, links from another file, is 16-byte aligned and holds
exactly the model's bytes."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from tests.support.shared import shared_file

from firmware_tools.c_array import render_model_array

_MAIN = r"""
#include <cstdint>
#include <cstdio>
#include <cstring>
#include "model_data.h"

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "dump") == 0) {
    std::fwrite(g_model, 1, g_model_len, stdout);
    return 0;
  }
  std::printf("len=%u ident=%.4s aligned=%d\n", g_model_len, reinterpret_cast<const char*>(g_model) + 4,
              static_cast<int>(reinterpret_cast<std::uintptr_t>(g_model) % 16 == 0));
  return 0;
}
"""


def _build(tmp_path: Path, gxx: str, data: bytes) -> Path:
    header, source = render_model_array(data, source_label="test model")
    (tmp_path / "model_data.h").write_text(header)
    (tmp_path / "model_data.cc").write_text(source)
    (tmp_path / "main.cc").write_text(_MAIN)
    exe = tmp_path / "check"
    subprocess.run([gxx, "-std=c++17", "-Wall", "-Werror", "-O0", "-o", str(exe), "main.cc", "model_data.cc"],
                   cwd=tmp_path, check=True, timeout=300)
    return exe


def test_model_array_compiles_and_holds_the_exact_bytes(tmp_path, compiler):
    data = shared_file("models/tflm-examples/hello_world_int8.tflite").read_bytes()
    exe = _build(tmp_path, compiler, data)
    summary = subprocess.run([str(exe)], capture_output=True, text=True, check=True, timeout=30).stdout
    assert summary.strip() == f"len={len(data)} ident=TFL3 aligned=1"
    dumped = subprocess.run([str(exe), "dump"], capture_output=True, check=True, timeout=30).stdout
    assert dumped == data


def test_every_byte_value_survives(tmp_path, compiler):
    data = bytes(range(4)) + b"TFL3" + bytes(range(256)) * 3 + b"\x00"
    exe = _build(tmp_path, compiler, data)
    assert subprocess.run([str(exe), "dump"], capture_output=True, check=True, timeout=30).stdout == data


def test_header_and_source_name_the_size_and_hash():
    header, source = render_model_array(b"\x1c\x00\x00\x00TFL3" + b"\x01" * 20, name="g_model")
    assert "extern const unsigned char g_model[];" in header and "extern const unsigned int g_model_len;" in header
    assert "alignas(16) const unsigned char g_model[] = {" in source
    assert "const unsigned int g_model_len = 28;" in source
    with pytest.raises(ValueError):
        render_model_array(b"x", name="not an identifier")
