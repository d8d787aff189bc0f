"""Named TOML files (device profiles, MCU profiles): a built-in name or a path, unknown keys refused."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from kit.core.errors import KitError


def names(directory: Path) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.toml"))


def read_named_toml(name_or_path: str | Path, directory: Path, what: str,
                    known_keys: set[str]) -> tuple[Path, dict[str, Any]]:
    """`name` -> `directory/name.toml`; anything with a suffix is a path. Returns the path and its table."""
    path = Path(name_or_path)
    if not path.suffix:
        path = directory / f"{name_or_path}.toml"
    if not path.is_file():
        raise KitError(f"no {what} {str(name_or_path)!r}", f"known {what}s: {', '.join(names(directory))}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise KitError(f"{what} {path} is not valid TOML: {e}") from None
    unknown = sorted(set(data) - known_keys)
    if unknown:
        raise KitError(f"{what} {path}: unknown key(s) {', '.join(unknown)}",
                       f"known keys: {', '.join(sorted(known_keys))}")
    return path, data
