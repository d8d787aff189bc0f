"""`kit farm check`: connect to every device at once and report its health.

Per device: reachable (or the error), runtime and version, battery level and
whether it charges, free storage where the kit deploys models. Each target
reports what its device can tell through `Target.health()`; the rest is shown
as unknown, never guessed: a serial board has no battery or file system the
protocol can read.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

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


def check_farm(devices: list[Device], timeout_s: float = 30.0) -> list[Health]:
    """Every device in parallel; a device that does not answer in `timeout_s` is unreachable."""
    results: dict[str, Health] = {}
    threads = [threading.Thread(target=lambda d=d: results.__setitem__(d.name, check_device(d)), daemon=True)
               for d in devices]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout_s)
    return [results.get(d.name) or Health(d, False, f"no answer within {timeout_s:.0f} s") for d in devices]


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
