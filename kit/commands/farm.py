"""Check the devices of a farm: reachable, runtime version, battery and charging, free storage.

Every device in farm.toml (or the ones --select matches) is contacted at once
through its own protocol (adb, SSH, serial/RFC 2217, local); what this
machine holds for a device is checked too (a phone's `benchmark_binary` must
exist and be an executable). Exit code 1 when a device is unreachable or not
ready, so CI can gate a farm run on it. `--json` prints the same as strict JSON.

Examples:
  kit farm check
  kit farm check --farm lab/farm.toml --select mcu --timeout 20
  kit farm check --json > health.json
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
    check.add_argument("--json", action="store_true", help="print the health of every device as JSON")


def run(args: argparse.Namespace) -> int:
    from kit.core.jsonio import dumps
    from kit.core.tables import format_table
    from kit.farm.health import check_farm
    from kit.farm.inventory import load_farm

    farm = load_farm(args.farm)
    devices = farm.select(args.select)
    health = check_farm(devices, args.timeout)
    down = [h.device.name for h in health if not h.reachable]
    unready = [h.device.name for h in health if h.reachable and h.problems]
    if args.json:
        print(dumps({"devices": [h.to_dict() for h in health], "unreachable": down, "not_ready": unready,
                     "ok": not down and not unready}))
        return 1 if down or unready else 0
    rows = []
    for h in health:
        battery = None if h.battery_level is None else f"{h.battery_level}%" + (
            " charging" if h.charging else " on battery" if h.charging is False else "")
        error = "; ".join(x for x in (h.error, *h.problems) if x) or None
        rows.append([h.device.name, h.device.device_class, h.device.uri, "yes" if h.reachable else "NO",
                     " ".join(x for x in (h.runtime, h.runtime_version) if x) or None, battery,
                     _size(h.free_storage_bytes), error])
    print(format_table(["device", "class", "uri", "reachable", "runtime", "battery", "free storage", "error"], rows))
    if down:
        print(f"{len(down)} of {len(rows)} device(s) unreachable: {', '.join(down)}")
    if unready:
        print(f"{len(unready)} of {len(rows)} device(s) reachable but not ready: {', '.join(unready)}")
    if down or unready:
        return 1
    print(f"all {len(rows)} device(s) reachable")
    return 0


def _size(n: int | None) -> str | None:
    if n is None:
        return None
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"
