"""`kit firmware --build`: the image is linked and its flash and RAM are read from the ELF; a device limit the
image breaks fails the command with the numbers."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.firmware_build.conftest import BOARD, need_tools, tflm_tree

pytestmark = pytest.mark.slow


def test_build_reports_the_linked_image_and_refuses_a_limit_it_breaks(lenet_pruned, tmp_path):
    from firmware_tools.image import read_image

    need_tools("make", "arm-none-eabi-g++")
    tflm_tree()
    out = tmp_path / "fw"
    done = subprocess.run([sys.executable, "-m", "kit", "firmware", str(lenet_pruned), "-o", str(out),
                           "--build", BOARD, "--kernels", "cmsis_nn", "--max-flash", "120000", "--json"],
                          capture_output=True, text=True, timeout=1800)
    image = read_image(out / f"build/{BOARD}-cmsis_nn/firmware.elf")
    manifest = json.loads((out / "kit_firmware.json").read_text())
    assert image.model_bytes == manifest["flash_bytes"]  # the compressed model array, as linked
    assert image.arena_bytes == manifest["arena_size"]
    assert image.flash_bytes > image.model_bytes and image.ram_bytes >= image.arena_bytes + image.stack_bytes
    figures = json.loads(done.stdout)  # --json: only strict JSON on stdout, the tables on stderr
    assert figures["images"][BOARD] == image.as_dict() and figures["project"] == manifest
    assert f"{image.flash_bytes:,}" in done.stderr and f"arena {image.arena_bytes:,}" in done.stderr
    assert image.model_bytes < 120000 < image.flash_bytes  # the model fits; model plus TFLM's code does not
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"flash {image.flash_bytes:,} B > max_flash_bytes 120,000 B" in done.stderr
    assert figures["problems"] == [f"{BOARD} image flash {image.flash_bytes:,} B > max_flash_bytes 120,000 B"]
    assert "Traceback" not in done.stderr
