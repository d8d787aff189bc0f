"""`kit firmware` / `kit export` respect a device's flash and RAM: DECODE compression saves flash but decodes
weights into RAM, so under a RAM limit it is dropped, and a model that fits no way is refused with numbers."""
from __future__ import annotations

import pytest

from firmware_tools.arena import with_margin
from firmware_tools.project import Limits, generate_project
from kit.core.errors import KitError


def _ram(project) -> int:
    return project.arena_size + project.memory.decompression_memory_bytes


def test_ram_limit_drops_decode_compression(small_models, tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(small_models.int8)
    free = generate_project(model, tmp_path / "free")
    plain = generate_project(model, tmp_path / "plain", methods=())
    assert free.compression is not None and free.compression.compressed
    assert _ram(free) > _ram(plain), "DECODE'd weights should need RAM of their own"
    fitted = generate_project(model, tmp_path / "fitted", limits=Limits(ram_bytes=_ram(plain)))
    assert _ram(fitted) <= _ram(plain)
    assert fitted.memory.flash_bytes >= free.memory.flash_bytes  # paid for in flash, not silently over RAM


def test_nothing_fits_names_the_numbers(small_models, tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(small_models.int8)
    with pytest.raises(KitError) as e:
        generate_project(model, tmp_path / "out", limits=Limits(flash_bytes=1000, ram_bytes=64))
    assert "max_ram_bytes 64 B" in e.value.message and "max_flash_bytes 1,000 B" in e.value.message
    assert not (tmp_path / "out" / "src").exists()


def test_limits_problems_are_exact():
    assert Limits(100, 50).problems(100, 50, "x") == []
    assert Limits(100, None).problems(101, 10**9, "x") == ["x flash 101 B > max_flash_bytes 100 B"]
    assert with_margin(1000) >= 1000
