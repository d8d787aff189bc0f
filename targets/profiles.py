"""Device profiles: what a device's runtime can load and how to measure it there.

Profiles are TOML files in `targets/profiles/` (or any path the user gives).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from kit.errors import KitError

PROFILE_DIR = Path(__file__).parent / "profiles"

#: artifact formats a runtime may accept; see kit.convert for how each is made
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
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def load_profile(name_or_path: str | Path) -> DeviceProfile:
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILE_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise KitError(f"no device profile {str(name_or_path)!r}", f"known profiles: {', '.join(list_profiles())}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise KitError(f"device profile {path} is not valid TOML: {e}") from None
    known = set(DeviceProfile.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise KitError(f"device profile {path}: unknown key(s) {', '.join(unknown)}", f"known keys: {', '.join(sorted(known))}")
    bad = [f for f in data.get("formats", []) if f not in FORMATS]
    if bad:
        raise KitError(f"device profile {path}: unknown format(s) {', '.join(bad)}", f"formats: {', '.join(FORMATS)}")
    data.setdefault("name", path.stem)
    return DeviceProfile(**data)
