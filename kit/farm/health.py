"""`kit farm check`: connect to every device at once and report its health.

Per device: reachable (or the error), runtime and version, battery level and
whether it charges, free storage where the kit deploys models. Each target
reports what its device can tell through `Target.health()`; the rest is shown
as unknown, never guessed: a serial board has no battery or file system the
protocol can read.

What the orchestrator can check itself is checked too: a phone profiles
with a `benchmark_model` binary from this machine, so a missing, unreadable
or non-ELF `benchmark_binary` makes the device not ready even when it answers.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.farm.inventory import Device
from kit.farm.scheduler import describe


@dataclass
class Health:
    device: Device
    reachable: bool
    error: str | None = None
    runtime: str | None = None
    runtime_version: str | None = None
    battery_level: int | None = None
    charging: bool | None = None
    free_storage_bytes: int | None = None
    #: what keeps a device from running jobs though it may answer (e.g. a missing benchmark binary)
    problems: list[str] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return self.reachable and not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device.name, "class": self.device.device_class, "uri": self.device.uri,
                "reachable": self.reachable, "ready": self.ready, "error": self.error, "problems": self.problems,
                "runtime": self.runtime, "runtime_version": self.runtime_version,
                "battery_level": self.battery_level, "charging": self.charging,
                "free_storage_bytes": self.free_storage_bytes}


def check_farm(devices: list[Device], timeout_s: float = 30.0) -> list[Health]:
    """Every device in parallel; a device that does not answer in `timeout_s` is unreachable."""
    results: dict[str, Health] = {}
    threads = [threading.Thread(target=lambda d=d: results.__setitem__(d.name, check_device(d)), daemon=True)
               for d in devices]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout_s)
    out = [results.get(d.name) or Health(d, False, f"no answer within {timeout_s:.0f} s") for d in devices]
    for h in out:
        h.problems += local_problems(h.device)
    return out


#: target schemes that run a `benchmark_model` binary sent from this machine
_BINARY_SCHEMES = ("adb",)
_ELF = b"\x7fELF"


def local_problems(device: Device) -> list[str]:
    """What can be checked on this machine before any job: the `benchmark_binary` a phone target pushes."""
    if device.scheme not in _BINARY_SCHEMES:
        return []
    given = device.options.get("benchmark_binary") or device.profile.benchmark_binary
    if not given:
        return [("no benchmark_binary is set: give the benchmark_model built for the phone's ABI in the device's "
                 "options or its profile")]
    path = Path(given).expanduser()
    if not path.is_file():
        return [f"benchmark_binary {path} does not exist" if not path.exists() else
                f"benchmark_binary {path} is not a file"]
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        return [f"benchmark_binary {path} cannot be read: {e.strerror or e}"]
    if head != _ELF:
        return [(f"benchmark_binary {path} is not an executable (no ELF header): download the prebuilt "
                 "benchmark_model for the phone's ABI")]
    return []


def check_device(device: Device) -> Health:
    target = None
    try:
        target = device.connect()
        raw = target.health()
        return Health(device, bool(raw.get("reachable", True)), raw.get("error"), raw.get("runtime"),
                      raw.get("runtime_version"), raw.get("battery_level"), raw.get("charging"),
                      raw.get("free_storage_bytes"))
    except Exception as e:  # any failure to reach the device is the answer
        return Health(device, False, describe(e))
    finally:
        if target is not None:
            try:
                target.close()
            except Exception:
                pass
