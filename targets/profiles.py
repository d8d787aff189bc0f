"""Device profiles: what a device's runtime can load and how to measure it there.

Profiles are TOML files in `targets/profiles/` (or any path the user gives).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.core.errors import KitError
from kit.core.named_toml import names, read_named_toml

PROFILE_DIR = Path(__file__).parent / "profiles"

#: artifact formats a runtime may accept; see kit.pipeline.convert for how each is made
FORMATS = ("float32", "float16", "dynamic", "int8", "float32-sparse", "float16-sparse", "int8-sparse", "tflm", "edgetpu")


@dataclass
class DeviceProfile:
    name: str
    description: str = ""
    kind: str = "linux"  # linux | android | edgetpu | mcu
    formats: list[str] = field(default_factory=lambda: ["float32", "float16", "dynamic", "int8"])
    threads: list[int] = field(default_factory=lambda: [1])
    core_masks: dict[str, str] = field(default_factory=dict)
    energy: dict[str, Any] = field(default_factory=lambda: {"method": "none"})
    benchmark_binary: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def accepts(self, fmt: str) -> bool:
        return fmt in self.formats


def list_profiles() -> list[str]:
    return names(PROFILE_DIR)


def load_profile(name_or_path: str | Path) -> DeviceProfile:
    path, data = read_named_toml(name_or_path, PROFILE_DIR, "device profile", set(DeviceProfile.__dataclass_fields__))
    bad = [f for f in data.get("formats", []) if f not in FORMATS]
    if bad:
        raise KitError(f"device profile {path}: unknown format(s) {', '.join(bad)}", f"formats: {', '.join(FORMATS)}")
    data.setdefault("name", path.stem)
    return DeviceProfile(**data)
