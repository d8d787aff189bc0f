"""Check the devices of a farm: reachable, runtime version, battery and charging, free storage.

Every device in farm.toml (or the ones --select matches) is contacted at once
through its own protocol (adb, SSH, serial/RFC 2217, local). Exit code 1 when
a device is unreachable, so CI can gate a farm run on it.

Examples:
  kit farm check
  kit farm check --farm lab/farm.toml --select mcu --timeout 20
"""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="farm_command", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="health of every device, as a table")
    check.add_argument("--farm", default="farm.toml", help="farm inventory (default: ./farm.toml)")
    check.add_argument("--select", action="append", default=[], metavar="PATTERN",
                       help="only devices whose name, class, profile, chipset or tag matches (repeatable)")
    check.add_argument("--timeout", type=float, default=30.0, help="seconds per device")


def run(args: argparse.Namespace) -> int:
    from kit.farm.health import check_farm
    from kit.farm.inventory import load_farm
    from kit.core.tables import format_table

    farm = load_farm(args.farm)
    devices = farm.select(args.select)
    rows = []
    for h in check_farm(devices, args.timeout):
        battery = None if h.battery_level is None else f"{h.battery_level}%" + (
            " charging" if h.charging else " on battery" if h.charging is False else "")
        rows.append([h.device.name, h.device.device_class, h.device.uri, "yes" if h.reachable else "NO",
                     " ".join(x for x in (h.runtime, h.runtime_version) if x) or None, battery,
                     _size(h.free_storage_bytes), h.error])
    print(format_table(["device", "class", "uri", "reachable", "runtime", "battery", "free storage", "error"], rows))
    down = [r[0] for r in rows if r[3] == "NO"]
    if down:
        print(f"{len(down)} of {len(rows)} device(s) unreachable: {', '.join(down)}")
        return 1
    print(f"all {len(rows)} device(s) reachable")
    return 0


def _size(n: int | None) -> str | None:
    if n is None:
        return None
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"
