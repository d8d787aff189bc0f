"""The firmware's C protocol parser, compiled with gcc and driven from Python with real command sequences."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from firmware_tools import protocol

SRC = Path(protocol.__file__).with_name("templates") / "protocol"
FLAGS = ["-Wall", "-Wextra", "-Werror", "-std=c99"]
SANITIZERS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed")
    exe = tmp_path_factory.mktemp("c") / "test_protocol"
    sources = [str(SRC / "th_protocol.c"), str(SRC / "test_protocol_main.c")]
    base = [gcc, *FLAGS, "-pedantic", "-I", str(SRC), *sources, "-o", str(exe)]
    # with sanitizers where the toolchain has them: an out-of-bounds write then fails the test
    if subprocess.run(base[:1] + SANITIZERS + base[1:], capture_output=True).returncode != 0:
        build = subprocess.run(base, capture_output=True, text=True)
        assert build.returncode == 0, build.stderr
    return exe


def talk(exe: Path, commands: list[str] | bytes, *flags: str) -> list[list[str]]:
    """Send commands; return the answers (lines up to each m-ready), the boot banner first."""
    data = commands if isinstance(commands, bytes) else b"".join(protocol.encode(c) for c in commands)
    proc = subprocess.run([str(exe), *flags], input=data, capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr.decode()
    text = proc.stdout.decode("ascii")
    assert all(line.endswith("\r") for line in text.split("\n")[:-1]), "every line must end with \\r\\n"
    answers, current = [], []
    for line in text.splitlines():
        if line == protocol.READY:
            answers.append(current)
            current = []
        else:
            current.append(line)
    assert current == [], f"output after the last m-ready: {current}"
    return answers


def test_boot_name_profile(driver):
    boot, name, prof = talk(driver, ["name", "profile"])
    assert boot == ["m-timestamp-mode-performance", "m-init-done"]
    assert protocol.parse_name(name) == protocol.BoardName("dut", "host-test")
    assert protocol.parse_profile(prof) == protocol.BoardProfile("th_protocol test driver", "fake")


def test_load_and_infer_with_the_host_encoder(driver):
    data = bytes([200, 1, 2, 3, 4, 5, 6, 7])
    cmds = protocol.chunk_commands("db", data, chunk_bytes=3)  # three chunks, the last one short
    answers = talk(driver, [*cmds, "infer 3 1", "results", "timestamp"])[1:]
    assert answers[0] == ["m-[Expecting 8 bytes]"]
    assert answers[1:3] == [[], []] and answers[3] == ["m-load-done"]
    reply = protocol.parse_infer(answers[4], iterations=3, warmup=1)
    # the fake clock starts below 2**32 and wraps during the batch
    assert reply.laps_us[1] < reply.laps_us[0] and reply.per_inference_us == 1500.0
    # 1 warmup + 3 timed + 1 untimed inference for the results on a fresh copy of the input
    assert list(reply.results) == [sum(data), 50.0, -0.5, 0.333333, 5.0]
    assert protocol.parse_results(answers[5][0]) == list(reply.results)
    assert protocol.parse_lap(answers[6][0]) == (4294963000 + 5 * 1500) % 2**32


@pytest.mark.parametrize("commands, error", [
    (["db load 8", "db 0102030"], "Odd number of hex digits"),
    (["db load 8", "db 01zz"], "Invalid hex digit in 01zz"),
    (["db load 2", "db 010203"], "Data overflows the 2 bytes"),
    (["db load 17"], "17 bytes exceed the 16-byte buffer"),
    (["db load 0"], "requires a number of bytes > 0"),
    (["db load 12x"], "requires a number of bytes > 0"),
    (["db 0102"], "Buffer not allocated"),
    (["db"], "requires a subcommand"),
    (["infer 1 1"], "No input loaded"),
    (["db load 4", "db 01020304", "infer 1 0"], "Input rejected: the model takes 8 bytes"),
    (["db load 8", "db 01020304", "infer 1 0"], "No input loaded"),  # incomplete input
    (["infer 0"], "Inference iterations must be >0"),
    (["infer 2 x"], "Inference warmup must be >=0"),
    (["results"], "No results: run infer first"),
    (["a b c d e"], "Too many arguments to a"),
    (["model load 65"], "65 bytes exceed the 64-byte buffer"),
])
def test_malformed_input_gets_an_error_and_the_parser_keeps_working(driver, commands, error):
    answers = talk(driver, [*commands, "name"])
    errors = [protocol.error_text(ln) for a in answers for ln in a if protocol.error_text(ln) is not None]
    assert len(errors) == 1 and error in errors[0]
    assert answers[-1] == ["m-name-dut-[host-test]"]


def test_overlong_and_garbage_commands(driver):
    answers = talk(driver, b"x" * 200 + b"%\xff\x01bad[]%%name%")
    assert answers[1] == ["e-[Command too long: the limit is 79 characters]"]
    assert answers[2] == ["e-[Unknown command: ??bad??]"]  # sanitized, still one parseable line
    assert protocol.is_unknown_command(answers[2][0])
    assert answers[3] == []  # an empty command is a no-op
    assert answers[4] == ["m-name-dut-[host-test]"]


def test_line_breaks_from_a_terminal_are_ignored(driver):
    answers = talk(driver, b"name%\r\nprofile%\n")
    assert answers[1] == ["m-name-dut-[host-test]"] and answers[2][0].startswith("m-profile-")


def test_model_load_extension(driver):
    model = bytes(4) + b"TFL3" + bytes(4)
    answers = talk(driver, [*protocol.chunk_commands("model", model, 5), "profile", "arena", "input-format"])[1:]
    assert answers[-4] == ["m-model-load-done", "m-profile-[th_protocol test driver]", "m-model-[loaded-12]"]
    assert protocol.parse_profile(answers[-3]).model == "loaded-12"
    assert protocol.parse_arena(answers[-2]) == (1234, 4096)
    assert protocol.parse_input_format(answers[-1]) == {"dtype": "int8", "shape": "1x8", "bytes": "8"}
    rejected = talk(driver, protocol.chunk_commands("model", bytes(12)))[-1]
    assert rejected == ["e-[Model rejected: not a TFLite flatbuffer]"]


def test_reference_firmware_build_answers_extensions_as_unknown(driver):
    answers = talk(driver, ["model load 12", "arena", "input-format", "name"], "--no-extensions")[1:]
    for answer, verb in zip(answers, ["model", "arena", "input-format"]):
        assert answer == [f"e-[Unknown command: {verb}]"] and protocol.is_unknown_command(answer[0])
    assert answers[-1] == ["m-name-dut-[host-test]"]


def test_float_formatting(driver):
    answers = talk(driver, ["db load 8", "db ff00000000000000", "infer 1 0"])
    reply = protocol.parse_infer(answers[-1], 1, 0)
    assert answers[-1][-1] == "m-results-[255.000000,63.750000,-0.500000,0.333333,2.000000]"
    assert reply.results[1] == 63.75
