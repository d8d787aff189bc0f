"""`kit farm check`: connect to every device at once and report its health.

Per device: reachable (or the error), runtime and version, battery level and
whether it charges, free storage where the kit deploys models. What a target
cannot tell is shown as unknown, never guessed: a serial board has no battery
or file system the protocol can read.
"""
from __future__ import annotations

import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kit.farm.inventory import Device
from kit.farm.scheduler import describe

#: battery fields of Linux's power-supply class, read on the host or over SSH
_BATTERY_SCRIPT = ("for d in /sys/class/power_supply/*; do [ -r \"$d/capacity\" ] || continue; "
                   "echo \"$(cat \"$d/capacity\") $(cat \"$d/status\" 2>/dev/null || echo Unknown)\"; break; done")


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
        h = Health(device, bool(raw.get("reachable", True)), raw.get("error"), raw.get("runtime"),
                   raw.get("runtime_version"), raw.get("battery_level"), raw.get("charging"),
                   raw.get("free_storage_bytes"))
        if h.reachable:
            _add_host_facts(device, target, h)
        return h
    except Exception as e:  # any failure to reach the device is the answer
        return Health(device, False, describe(e))
    finally:
        if target is not None:
            try:
                target.close()
            except Exception:
                pass


def _add_host_facts(device: Device, target: Any, h: Health) -> None:
    """Battery and free space for Linux hosts (local, SSH), which the targets' health() does not report."""
    scheme = device.scheme
    if scheme in ("local", "edgetpu+local"):
        h.free_storage_bytes = shutil.disk_usage(tempfile.gettempdir()).free
        h.battery_level, h.charging = _parse_battery(_local_battery())
    elif scheme in ("ssh", "edgetpu+ssh") and hasattr(target, "execute"):
        df = target.execute(["df", "-Pk", "/tmp"], timeout=20, what="reading free storage")
        h.free_storage_bytes = _parse_df(df.stdout)
        battery = target.execute(["sh", "-c", _BATTERY_SCRIPT], timeout=20, what="reading the battery")
        h.battery_level, h.charging = _parse_battery(battery.stdout)


def _local_battery() -> str:
    for d in sorted(Path("/sys/class/power_supply").glob("*")):
        try:
            level = (d / "capacity").read_text().strip()
        except OSError:
            continue
        try:
            status = (d / "status").read_text().strip()
        except OSError:
            status = "Unknown"
        return f"{level} {status}"
    return ""


def _parse_battery(text: str) -> tuple[int | None, bool | None]:
    parts = text.split()
    if len(parts) < 2 or not parts[0].isdigit():
        return None, None
    return int(parts[0]), parts[1] in ("Charging", "Full")


def _parse_df(text: str) -> int | None:
    lines = text.strip().splitlines()
    if len(lines) < 2:
        return None
    fields = lines[-1].split()
    return int(fields[3]) * 1024 if len(fields) >= 4 and fields[3].isdigit() else None
