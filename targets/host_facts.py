"""Battery and free storage of a Linux machine, for `Target.health()` of the host and of SSH boards.

Read from Linux's power-supply class and `df`; what cannot be read is None, never guessed.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

#: the first battery's level and status, the same lines on the host and over SSH
BATTERY_SCRIPT = ("for d in /sys/class/power_supply/*; do [ -r \"$d/capacity\" ] || continue; "
                  "echo \"$(cat \"$d/capacity\") $(cat \"$d/status\" 2>/dev/null || echo Unknown)\"; break; done")
#: free space where the kit deploys models on a board (POSIX output, KiB)
DF_COMMAND = ["df", "-Pk", "/tmp"]


def local_health() -> dict[str, int | bool | None]:
    """Free space in the temp folder and the battery of this host."""
    level, charging = parse_battery(_local_battery())
    return {"free_storage_bytes": shutil.disk_usage(tempfile.gettempdir()).free,
            "battery_level": level, "charging": charging}


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


def parse_battery(text: str) -> tuple[int | None, bool | None]:
    """`BATTERY_SCRIPT` output -> (level in percent, charging); (None, None) without a battery."""
    parts = text.split()
    if len(parts) < 2 or not parts[0].isdigit():
        return None, None
    return int(parts[0]), parts[1] in ("Charging", "Full")


def parse_df(text: str) -> int | None:
    """Available bytes from `df -Pk` output."""
    lines = text.strip().splitlines()
    if len(lines) < 2:
        return None
    fields = lines[-1].split()
    return int(fields[3]) * 1024 if len(fields) >= 4 and fields[3].isdigit() else None
