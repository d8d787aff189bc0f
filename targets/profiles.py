"""Device profiles: what a device's runtime can load and how to measure it there.

Profiles are TOML files in `targets/profiles/` (or any path the user gives),
or `[profiles.NAME]` tables in a farm.toml. Both are checked by
`profile_from_table`, so a mistake is refused the same way, with the file,
the line and the key, wherever the profile is written.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.core.toml import KeyPath, TomlFile, check_keys, load_named, named_files

PROFILE_DIR = Path(__file__).parent / "profiles"

#: artifact formats a runtime may accept; see kit.convert.converter for how each is made
FORMATS = ("float32", "float16", "dynamic", "int8", "float32-sparse", "float16-sparse", "int8-sparse", "tflm", "edgetpu")
#: what kind of device a profile describes
KINDS = ("linux", "android", "edgetpu", "mcu")
_DEFAULT_FORMATS = ["float32", "float16", "dynamic", "int8"]


@dataclass
class DeviceProfile:
    name: str
    description: str = ""
    kind: str = "linux"  # linux | android | edgetpu | mcu
    formats: list[str] = field(default_factory=lambda: list(_DEFAULT_FORMATS))
    threads: list[int] = field(default_factory=lambda: [1])
    core_masks: dict[str, str] = field(default_factory=dict)
    energy: dict[str, Any] = field(default_factory=lambda: {"method": "none"})
    benchmark_binary: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def accepts(self, fmt: str) -> bool:
        return fmt in self.formats


def list_profiles() -> list[str]:
    return named_files(PROFILE_DIR)


def load_profile(name_or_path: str | Path) -> DeviceProfile:
    """A built-in profile by name, or a profile file by path."""
    doc = load_named(name_or_path, PROFILE_DIR, "device profile")
    return profile_from_table(doc, (), doc.data, Path(doc.where).stem, named_in_file=True)


def profile_from_table(doc: TomlFile, path: KeyPath, spec: Any, name: str,
                       named_in_file: bool = False) -> DeviceProfile:
    """The profile in table `spec` at `path` of `doc`; every mistake fails at its line.

    `named_in_file`: a profile file may give its own `name` (default `name`); a farm's
    `[profiles.NAME]` is named by its table.
    """
    known = set(DeviceProfile.__dataclass_fields__) - ({"name"} if not named_in_file else set())
    t = doc.table(spec, path, None)
    check_keys(doc, t, path, known, "device profile")
    if named_in_file:
        name = doc.get(t, path, "name", str, name)
    kind = doc.choice(t, path, "kind", KINDS, "linux")
    formats = doc.strings(t, path, "formats", _DEFAULT_FORMATS)
    for f in formats:
        if f not in FORMATS:
            doc.fail((*path, "formats"), f"holds the unknown format {f!r}", f"formats: {', '.join(FORMATS)}")
    threads = t.get("threads", [1])
    if not isinstance(threads, list) or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 1
                                                for x in threads):
        doc.fail((*path, "threads"), f"must be a list of thread counts >= 1, got {threads!r}")
    for key in ("core_masks", "energy", "extra"):
        if key in t:
            doc.table(t[key], (*path, key), None)
    return DeviceProfile(name=name, description=doc.get(t, path, "description", str, ""), kind=kind,
                         formats=formats, threads=threads, core_masks=dict(t.get("core_masks", {})),
                         energy=dict(t.get("energy", {"method": "none"})),
                         benchmark_binary=doc.get(t, path, "benchmark_binary", str, None),
                         extra=dict(t.get("extra", {})))
