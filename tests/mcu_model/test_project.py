"""`kit firmware`: the generated PlatformIO project, and clear errors for models an MCU cannot run."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from firmware_tools.project import MANIFEST, TEMPLATES, generate_project
from kit.core.errors import KitError, ModelError
from kit.core.tflite_file import read_tflite


@pytest.fixture(scope="module")
def project(small_models, tmp_path_factory):
    model = tmp_path_factory.mktemp("model") / "digits_int8.tflite"
    model.write_bytes(small_models.int8)
    return generate_project(model, tmp_path_factory.mktemp("fw") / "project")


def test_project_files_agree_with_the_measurements(project):
    out = project.out_dir
    manifest = json.loads((out / MANIFEST).read_text())
    settings = (out / "src/model_settings.h").read_text()
    assert f"kTensorArenaSize = {project.arena_size};" in settings
    assert project.arena_size > project.memory.arena_bytes == manifest["arena_min_bytes"]
    assert f"KIT_DECOMPRESSION_MEMORY_SIZE {project.memory.decompression_memory_bytes}" in settings
    assert "kInputBytes = 64;" in settings and 'kInputFormat[] = "dtype=int8,shape=1x8x8x1,bytes=64"' in settings
    model_c = (out / "src/model_data.cc").read_text()
    assert f"g_model_len = {manifest['flash_bytes']};" in model_c
    assert manifest["flash_bytes"] < manifest["source_bytes"]  # the pruned + clustered model got smaller
    assert "TFLM_DECODE" in manifest["ops"] and "AddDecode()" in (out / "src/op_resolver.cc").read_text()
    assert "default_envs = nucleo_l4r5zi" in (out / "platformio.ini").read_text()
    assert (out / "lib/tflite-micro/library.json").is_file()
    assert manifest["estimate"]["note"].startswith("estimate")


def test_main_uses_the_protocol_as_its_header_declares(project):
    out = project.out_dir
    if project.protocol_missing:
        pytest.skip(f"protocol sources {project.protocol_missing} not available")
    header = (out / "src/th_protocol.h").read_text()
    main = (out / "src/main.cpp").read_text()
    for fn in ("th_protocol_init", "th_protocol_boot", "th_protocol_feed"):
        assert fn in header and f"{fn}(&g_protocol" in main
    fields = re.search(r"typedef struct th_board_ops \{(.*?)\} th_board_ops;", header, re.S).group(1)
    callbacks = re.findall(r"\(\*(\w+)\)", fields)
    ops_init = re.search(r"const th_board_ops kBoardOps = \{(.*?)\};", main, re.S).group(1)
    entries = [e.strip() for e in re.sub(r"//[^\n]*", "", ops_init).split(",") if e.strip()]
    assert len(entries) == len(callbacks)  # one entry per callback, in order
    assert entries[callbacks.index("load_model")] == "nullptr"  # the model is in flash
    assert "return static_cast<uint32_t>(micros());" in main
    assert "\"m-lap-us" not in main  # the protocol code prints the stamps, not main


def test_protocol_c_compiles_with_gcc(project, tmp_path):
    if project.protocol_missing:
        pytest.skip(f"protocol sources {project.protocol_missing} not available")
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Werror", "-c", str(project.out_dir / "src/th_protocol.c"),
                    "-o", str(tmp_path / "th_protocol.o")], check=True, timeout=120)


def test_firmware_sources_compile_against_real_tflm_headers(project, compiler, tmp_path):
    """Set KIT_TFLM_INCLUDE (TFLM tree, flatbuffers and gemmlowp include dirs, os.pathsep-separated)."""
    import os

    includes = [p for p in os.environ.get("KIT_TFLM_INCLUDE", "").split(os.pathsep) if p]
    if not includes:
        pytest.skip("KIT_TFLM_INCLUDE is not set: no TFLM headers to compile against")
    (tmp_path / "Arduino.h").write_text(
        "#pragma once\n#include <stddef.h>\n#include <stdint.h>\n"
        "struct SerialPort { void begin(unsigned long); size_t write(const uint8_t*, size_t); int available();"
        " int read(); explicit operator bool() const; };\nextern SerialPort Serial;\n"
        "unsigned long micros();\nunsigned long millis();\n")
    for name in ("main.cpp", "op_resolver.cc", "model_data.cc"):
        subprocess.run([compiler, "-std=c++17", "-fsyntax-only", "-DTF_LITE_STATIC_MEMORY",
                        f"-I{project.out_dir / 'src'}", f"-I{tmp_path}", *[f"-I{p}" for p in includes],
                        str(project.out_dir / "src" / name)], check=True, timeout=300)


def test_regenerating_into_the_same_project_is_allowed(small_models, tmp_path):
    model = tmp_path / "again.tflite"
    model.write_bytes(small_models.int8)
    first = generate_project(model, tmp_path / "fw", methods=("prune",))
    again = generate_project(model, tmp_path / "fw", methods=())
    assert first.memory.flash_bytes < len(small_models.int8)
    assert again.compression is None and again.memory.flash_bytes == len(small_models.int8)
    assert f"g_model_len = {len(small_models.int8)};" in (tmp_path / "fw/src/model_data.cc").read_text()


@pytest.mark.parametrize("kind, words", [
    ("float32", ["floating point", "full integer"]),
    ("hybrid", ["hybrid", "full integer"]),
    ("sparse", ["DENSIFY", "prune compression"]),
    ("float_io", ["float32", "inference_input_type=tf.int8"]),
])
def test_models_an_mcu_cannot_run_are_refused_with_advice(kind, words, small_models, tmp_path):
    model = tmp_path / f"{kind}.tflite"
    model.write_bytes(getattr(small_models, kind))
    out = tmp_path / "fw"
    with pytest.raises(ModelError) as e:
        generate_project(model, out)
    text = f"{e.value.message} {e.value.hint}"
    for w in words:
        assert w in text
    assert not out.exists()  # nothing written


def test_sparse_fixture_really_is_sparse(small_models):
    info = read_tflite(small_models.sparse)
    assert "DENSIFY" in info.op_names and any(t.storage != "dense" for t in info.tensors)


def test_a_foreign_directory_is_never_overwritten(small_models, tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(small_models.int8)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(KitError, match="not a `kit firmware` project"):
        generate_project(model, out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    with pytest.raises(KitError, match="unknown board"):
        generate_project(model, tmp_path / "x", board="arduino_uno")


def test_cli_prints_the_figures_and_errors_without_traceback(small_models, tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(small_models.int8)
    ok = subprocess.run([sys.executable, "-m", "kit", "firmware", str(model), "-o", str(tmp_path / "fw"),
                         "--compress", "prune"], capture_output=True, text=True, timeout=600)
    assert ok.returncode == 0, ok.stderr
    assert "flash (model)" in ok.stdout and "ESTIMATE" in ok.stdout and "prune" in ok.stdout
    bad = tmp_path / "hybrid.tflite"
    bad.write_bytes(small_models.hybrid)
    fail = subprocess.run([sys.executable, "-m", "kit", "firmware", str(bad), "-o", str(tmp_path / "fw2")],
                          capture_output=True, text=True, timeout=600)
    assert fail.returncode == 2 and "error:" in fail.stderr and "hint:" in fail.stderr
    assert "Traceback" not in fail.stderr


def test_templates_are_packaged():
    for rel in ("firmware/main.cpp", "firmware/platformio.ini", "firmware/library.json", "firmware/README.md"):
        assert (TEMPLATES / rel).is_file()


_ARDUINO_HOST_H = """#pragma once
#include <stddef.h>
#include <stdint.h>
struct SerialPort { void begin(unsigned long); size_t write(const uint8_t*, size_t); int available(); int read();
                    explicit operator bool() const; };
extern SerialPort Serial;
unsigned long micros();
unsigned long millis();
"""

_ARDUINO_HOST_CC = r"""// Host stand-in for the Arduino core: Serial is stdin/stdout, micros() is the steady clock.
#include "Arduino.h"
#include <chrono>
#include <cstdio>
#include <unistd.h>
SerialPort Serial;
static bool eof = false;
static int pending = -1;
void SerialPort::begin(unsigned long) {}
size_t SerialPort::write(const uint8_t* d, size_t n) { fwrite(d, 1, n, stdout); fflush(stdout); return n; }
int SerialPort::available() {
  if (pending < 0 && !eof) { unsigned char c; if (::read(0, &c, 1) == 1) pending = c; else eof = true; }
  return pending >= 0;
}
int SerialPort::read() { int c = pending; pending = -1; return c; }
SerialPort::operator bool() const { return true; }
static const auto t0 = std::chrono::steady_clock::now();
unsigned long micros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count();
}
unsigned long millis() { return micros() / 1000; }
void setup();
void loop();
int main() { setup(); while (!eof || pending >= 0) loop(); return 0; }
"""


def test_generated_firmware_runs_on_the_host_with_real_tflm(project, small_models, compiler, tmp_path):
    """The whole generated firmware (main.cpp, protocol C code, resolver, model array) linked against a host
    build of TFLM, driven over stdin/stdout with the serial protocol: its m-results-[...] must equal the
    TFLM Python runtime's outputs. Needs KIT_TFLM_INCLUDE (as above) and KIT_TFLM_HOST_LIB, a static
    library of TFLM's reference runtime compiled for the host (tensorflow/lite/micro/*.cc, kernels/*.cc,
    memory_planner, arena_allocator, tflite_bridge, lite/core, lite/kernels/internal, schema utils;
    -std=c++17 -fno-exceptions -DTF_LITE_STATIC_MEMORY)."""
    import os

    import numpy as np

    from firmware_tools.tflm import run_model

    includes = [p for p in os.environ.get("KIT_TFLM_INCLUDE", "").split(os.pathsep) if p]
    lib = os.environ.get("KIT_TFLM_HOST_LIB")
    if not includes or not lib:
        pytest.skip("KIT_TFLM_INCLUDE / KIT_TFLM_HOST_LIB are not set: no host TFLM build")
    if project.protocol_missing:
        pytest.skip(f"protocol sources {project.protocol_missing} not available")
    (tmp_path / "Arduino.h").write_text(_ARDUINO_HOST_H)
    (tmp_path / "arduino_host.cc").write_text(_ARDUINO_HOST_CC)
    src = project.out_dir / "src"
    exe = tmp_path / "firmware"
    subprocess.run([compiler, "-std=c++17", "-O1", "-fno-exceptions", "-DTF_LITE_STATIC_MEMORY", f"-I{src}",
                    f"-I{tmp_path}", *[f"-I{p}" for p in includes], str(src / "main.cpp"), str(src / "op_resolver.cc"),
                    str(src / "model_data.cc"), str(tmp_path / "arduino_host.cc"), "-x", "c", str(src / "th_protocol.c"),
                    "-x", "none", lib, "-o", str(exe)], check=True, timeout=600)
    x = small_models.x_test[3:4]
    data = x.tobytes().hex()
    commands = (f"profile%db load {x.size}%" + "".join(f"db {data[i:i + 64]}%" for i in range(0, len(data), 64))
                + "infer 2 1%")
    out = subprocess.run([str(exe)], input=commands, capture_output=True, text=True, timeout=120).stdout
    model = project.compression.model
    assert "m-model-[digits_int8 sha256:" in out and "m-load-done" in out
    laps = [int(v) for v in re.findall(r"m-lap-us-(\d+)", out)]
    assert len(laps) == 2 and laps[1] >= laps[0]
    board = [float(v) for v in re.search(r"m-results-\[([^\]]*)\]", out).group(1).split(",")]
    expected = run_model(model, [x], project.memory.arena.min_bytes)[0].reshape(-1)
    info = read_tflite(model)
    q = info.tensor(info.outputs[0]).quantization
    np.testing.assert_allclose(board, (expected.astype(float) - q.zero_point) * q.scale, atol=2e-6)
