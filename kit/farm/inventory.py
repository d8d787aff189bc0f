"""The device farm: `farm.toml` lists devices, their target URIs, profiles, classes and tags.

One orchestrator reaches every device through its standard remote protocol —
an adb server on another host (`adb://SERIAL@host:5037`), SSH, an RFC 2217
serial server such as ser2net (`rfc2217://host:port`), a TCP serial bridge
(`socket://`) — so no agent of our own runs on the farm's hosts.

    [farm]
    name = "lab"

    [profiles.m4-board]              # a device profile defined here (same keys as targets/profiles/*.toml)
    kind = "mcu"
    formats = ["int8"]

    [[device]]
    name = "pixel-1"
    uri = "adb://35211FDH2000XY@hub-1:5037"
    profile = "pixel-8"              # built-in name, a TOML path, or a [profiles.NAME] above
    class = "phone-mid"              # device class: constraints and winners are per class (default: the profile)
    tags = ["android", "usb-hub-1"]
    options = { benchmark_binary = "tools/benchmark_model" }
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.core.errors import KitError
from kit.core.paths import component_problem, find_collision
from kit.core.toml import FarmError, TomlFile
from targets.profiles import DeviceProfile, list_profiles, load_profile, profile_from_table
from targets.registry import TARGETS
from targets.uri import parse_target_uri

_DEVICE_KEYS = {"name", "uri", "profile", "class", "tags", "chipset", "concurrency", "options", "enabled"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: target options that name local files: relative paths are taken from farm.toml's folder
_PATH_OPTIONS = ("identity", "known_hosts", "ssh_config", "benchmark_binary")


@dataclass
class Device:
    name: str
    uri: str
    profile: DeviceProfile
    device_class: str
    tags: list[str] = field(default_factory=list)
    chipset: str | None = None
    concurrency: int = 1
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def scheme(self) -> str:
        return parse_target_uri(self.uri).scheme

    def labels(self) -> set[str]:
        """Everything a selection pattern may match: name, class, profile, chipset, tags."""
        out = {self.name, self.device_class, self.profile.name, *self.tags}
        return out | ({self.chipset} if self.chipset else set())

    def connect(self):
        """A new `Target` for this device (not yet connected; targets connect lazily)."""
        from targets.registry import get_target

        return get_target(self.uri, self.profile, **self.options)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "uri": self.uri, "profile": self.profile.name, "kind": self.profile.kind,
                "formats": list(self.profile.formats), "class": self.device_class, "tags": list(self.tags),
                "chipset": self.chipset, "concurrency": self.concurrency}


@dataclass
class Farm:
    name: str
    devices: list[Device]
    path: str = ""

    def select(self, patterns: list[str] | None) -> list[Device]:
        """Devices any pattern matches (name, class, profile, chipset or tag; `*` wildcards); all when empty."""
        if not patterns:
            return list(self.devices)
        chosen, unmatched = [], []
        for pattern in patterns:
            hits = [d for d in self.devices if any(fnmatch.fnmatchcase(label, pattern) for label in d.labels())]
            if not hits:
                unmatched.append(pattern)
            chosen += [d for d in hits if d not in chosen]
        if unmatched:
            known = sorted(set().union(*(d.labels() for d in self.devices)))
            raise FarmError(f"no device in {self.path or 'the farm'} matches {', '.join(map(repr, unmatched))}",
                            f"devices are selected by name, class, profile, chipset or tag: {', '.join(known)}")
        return chosen


def load_farm(path: str | Path) -> Farm:
    return parse_farm(TomlFile.load(path, "farm file"), Path(path).resolve().parent)


def parse_farm_text(text: str, where: str = "farm.toml", base: Path | None = None) -> Farm:
    return parse_farm(TomlFile(text, where, "farm file"), base or Path.cwd())


def parse_farm(doc: TomlFile, base: Path) -> Farm:
    top = doc.table(doc.data, (), {"farm", "profiles", "device"})
    meta = doc.table(top.get("farm", {}), ("farm",), {"name", "description"})
    name = doc.get(meta, ("farm",), "name", str, Path(doc.where).stem)
    profiles = {pname: _inline_profile(doc, pname, spec)
                for pname, spec in doc.table(top.get("profiles", {}), ("profiles",), None).items()}
    if "device" not in top:
        doc.fail(("device",), "is missing: the farm lists no devices",
                 'add one [[device]] table per device with name, uri and profile, e.g. uri = "local"')
    devices: list[Device] = []
    seen_uris: dict[str, str] = {}
    for i, t in enumerate(doc.tables(top["device"], ("device",))):
        p = ("device", i)
        doc.table(t, p, _DEVICE_KEYS)
        if not doc.get(t, p, "enabled", bool, True):
            continue
        device = _device(doc, p, t, profiles, base)
        problem = component_problem(device.device_class)
        if problem is not None:  # the class names the export file or firmware folder
            doc.fail((*p, "class") if "class" in t else (*p, "profile"),
                     f"gives the device class {device.device_class!r}, which {problem}",
                     "a class becomes a file name on export: use letters, digits, '-', '_' and '.'")
        clash = find_collision(sorted({d.device_class for d in devices} | {device.device_class}))
        if clash is not None:
            doc.fail((*p, "class"), f"gives the device class {clash[1]!r}, which shares its export file with "
                     f"{clash[0]!r} (names differing only in case)", "spell the class the same way on every device")
        if any(d.name == device.name for d in devices):
            doc.fail((*p, "name"), f"repeats the device name {device.name!r}", "every device needs its own name")
        endpoint = _endpoint(device.uri)
        if endpoint is not None and endpoint in seen_uris:
            doc.fail((*p, "uri"), f"names the same device as {seen_uris[endpoint]!r} ({device.uri})",
                     "list each physical device once; raise `concurrency` if it really runs jobs in parallel")
        seen_uris[endpoint] = device.name
        devices.append(device)
    if not devices:
        doc.fail(("device",), "lists no enabled device")
    return Farm(name=name, devices=devices, path=doc.where)


def _device(doc: TomlFile, p: tuple, t: dict, profiles: dict[str, DeviceProfile], base: Path) -> Device:
    name = doc.get(t, p, "name", str, required=True, allowed="a name such as \"pixel-1\"")
    if not _NAME.match(name):
        doc.fail((*p, "name"), f"is {name!r}: use letters, digits, '.', '_' and '-' (at most 64)")
    uri = doc.get(t, p, "uri", str, required=True, allowed="a target URI such as \"local\" or \"ssh://pi@board\"")
    try:
        parsed = parse_target_uri(uri)
    except KitError as e:  # re-point the URI parser's error at the line
        doc.fail((*p, "uri"), f"is not a target URI: {e.message}",
                 "e.g. local, ssh://pi@board, adb://SERIAL@host:5037, serial:///dev/ttyACM0, rfc2217://host:2217")
    if parsed.scheme not in TARGETS:
        doc.fail((*p, "uri"), f"uses the unknown scheme {parsed.scheme!r}", f"known: {', '.join(sorted(TARGETS))}")
    profile_name = doc.get(t, p, "profile", str, required=True,
                           allowed=f"a device profile: {', '.join([*profiles, *list_profiles()])}")
    profile = profiles.get(profile_name) or _file_profile(doc, (*p, "profile"), profile_name, base)
    tags = doc.strings(t, p, "tags")
    for tag in tags:
        if not tag.strip():
            doc.fail((*p, "tags"), "holds an empty tag")
    options = doc.table(t.get("options", {}), (*p, "options"), None)
    for key, value in options.items():
        if not isinstance(value, (str, int, float, bool)):
            doc.fail((*p, "options", key), f"must be a string, number or boolean, got {value!r}")
    options = {k.replace("-", "_"): v for k, v in options.items()}
    for key in _PATH_OPTIONS:
        if isinstance(options.get(key), str):
            path = Path(options[key]).expanduser()
            options[key] = str(path if path.is_absolute() else base / path)
    return Device(
        name=name, uri=uri, profile=profile,
        device_class=doc.get(t, p, "class", str, profile.name),
        tags=tags,
        chipset=doc.get(t, p, "chipset", str, None),
        concurrency=doc.get(t, p, "concurrency", int, 1, lambda n: 1 <= n <= 64, "1 to 64 jobs at a time"),
        options=options,
    )


def _file_profile(doc: TomlFile, p: tuple, name: str, base: Path) -> DeviceProfile:
    candidate = Path(name)
    if candidate.suffix and not candidate.is_absolute():
        candidate = base / candidate
    try:
        return load_profile(candidate if candidate.suffix else name)
    except KitError as e:
        doc.fail(p, f"names no usable device profile: {e.message}", e.hint or "define it under [profiles.NAME]")


def _inline_profile(doc: TomlFile, name: str, spec: Any) -> DeviceProfile:
    """A `[profiles.NAME]` table, checked exactly like a profile file."""
    return profile_from_table(doc, ("profiles", name), spec, name)


def _endpoint(uri: str) -> str | None:
    """What identifies the physical device behind a URI (the query string is settings, not identity).

    None for `local`: the host may serve several runner slots (one per `local` entry).
    """
    parsed = parse_target_uri(uri)
    if parsed.scheme in ("local", "edgetpu+local"):
        return None
    return f"{parsed.scheme}://{parsed.user or ''}@{parsed.host or ''}:{parsed.port or ''}{parsed.path}"
