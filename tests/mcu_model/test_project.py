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
    main = (out / "src/kit_runner.cc").read_text()
    for fn in ("th_protocol_init", "th_protocol_boot", "th_protocol_feed"):
        assert fn in header and f"{fn}(&g_protocol" in main
    fields = re.search(r"typedef struct th_board_ops \{(.*?)\} th_board_ops;", header, re.S).group(1)
    callbacks = re.findall(r"\(\*(\w+)\)", fields)
    ops_init = re.search(r"const th_board_ops kBoardOps = \{(.*?)\};", main, re.S).group(1)
    entries = [e.strip() for e in re.sub(r"//[^\n]*", "", ops_init).split(",") if e.strip()]
    assert len(entries) == len(callbacks)  # one entry per callback, in order
    assert entries[callbacks.index("load_model")] == "nullptr"  # the model is in flash
    arduino = (out / "src/main.cpp").read_text()
    assert "return static_cast<uint32_t>(micros());" in arduino and "kit_runner_start(" in arduino
    assert "\"m-lap-us" not in main + arduino  # the protocol code prints the stamps, not main


def test_protocol_c_compiles_with_gcc(project, tmp_path):
    if project.protocol_missing:
        pytest.skip(f"protocol sources {project.protocol_missing} not available")
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Werror", "-c", str(project.out_dir / "src/th_protocol.c"),
                    "-o", str(tmp_path / "th_protocol.o")], check=True, timeout=120)


def test_firmware_sources_compile_against_real_tflm_headers(project, compiler, tmp_path):
    """The Arduino entry points, the runner, the resolver and the model array against the real TFLM headers."""
    includes = tflm_includes()
    (tmp_path / "Arduino.h").write_text(
        "#pragma once\n#include <stddef.h>\n#include <stdint.h>\n"
        "struct SerialPort { void begin(unsigned long); size_t write(const uint8_t*, size_t); int available();"
        " int read(); explicit operator bool() const; };\nextern SerialPort Serial;\n"
        "unsigned long micros();\nunsigned long millis();\n")
    for name in ("main.cpp", "kit_runner.cc", "op_resolver.cc", "model_data.cc"):
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
    for rel in ("firmware/main.cpp", "firmware/kit_runner.cc", "firmware/kit_runner.h", "firmware/platformio.ini",
                "firmware/library.json", "firmware/README.md", "bare/startup.c", "bare/platform_cmsdk.c",
                "bare/syscalls.c", "bare/cxx_support.cc", "bare/link.ld", "host/platform_host.cc"):
        assert (TEMPLATES / rel).is_file()


def tflm_includes() -> list[str]:
    """Include folders of the TFLM tree the firmware builds against (the shared pinned one by default)."""
    from firmware_tools.build import default_tree

    tree = default_tree()
    if tree is None:
        pytest.skip("no TFLM tree: ../shared/third_party/tflite-micro is absent and KIT_TFLM_ROOT is not set")
    downloads = tree / "tensorflow/lite/micro/tools/make/downloads"
    return [str(tree), str(downloads / "flatbuffers/include"), str(downloads / "gemmlowp"), str(downloads / "ruy")]


def test_generated_firmware_runs_on_the_host_with_real_tflm(project, small_models, compiler, tmp_path):
    """The project's own Makefile builds the firmware for the host (TFLM's reference kernels, the protocol on
    stdin/stdout); driven with the serial protocol, its m-results-[...] must equal the TFLM Python runtime's."""
    import numpy as np

    from firmware_tools.build import build
    from firmware_tools.tflm import run_model

    tflm_includes()
    if project.protocol_missing:
        pytest.skip(f"protocol sources {project.protocol_missing} not available")
    exe = build(project.out_dir, "host").image
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
