"""One registry from URI scheme to target class; adding a target is one module and one line here."""
from __future__ import annotations

import importlib

from kit.core.errors import KitError
from targets.base import Target
from targets.profiles import DeviceProfile, load_profile
from targets.uri import TargetURI, parse_target_uri

#: scheme -> "module:Class"; imported lazily so that a missing optional library
#: only matters to the target that needs it
TARGETS: dict[str, str] = {
    "local": "targets.local:LocalTarget",
    "ssh": "targets.ssh:SSHTarget",
    "adb": "targets.adb:ADBTarget",
    "edgetpu+local": "targets.edgetpu:EdgeTPUTarget",
    "edgetpu+ssh": "targets.edgetpu:EdgeTPUTarget",
    "serial": "targets.serial:SerialTarget",
    "rfc2217": "targets.serial:SerialTarget",
    "socket": "targets.serial:SerialTarget",
    "loop": "targets.serial:SerialTarget",
    "qemu": "targets.qemu:QemuTarget",
}


def target_class(scheme: str) -> type[Target]:
    try:
        spec = TARGETS[scheme]
    except KeyError:
        raise KitError(
            f"unknown target scheme {scheme!r}", f"known targets: {', '.join(sorted(TARGETS))}"
        ) from None
    module_name, class_name = spec.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def get_target(uri: str | TargetURI, profile: str | DeviceProfile | None = None, **options) -> Target:
    """`get_target("ssh://pi@board", profile="raspberry-pi-5", trust_on_first_use=False)`."""
    parsed = uri if isinstance(uri, TargetURI) else parse_target_uri(uri)
    spec = load_profile(profile) if isinstance(profile, str) else profile
    cls = target_class(parsed.scheme)
    if parsed.query and not getattr(cls, "uri_query", False):  # it would be ignored, not applied
        raise KitError(f"target {parsed.raw!r} gives ?{', '.join(sorted(parsed.query))}, but {parsed.scheme} "
                       "targets read no options from the URI", "give options with --option KEY=VALUE")
    return cls(parsed, spec, **options)
