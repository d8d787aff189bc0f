"""Names that become file or folder names, and output places checked before long work starts.

Names come from farm files, recipes and model files that the user may not have written; one that holds
a separator, `..`, a control character or a leading `-` could write outside the output folder or be read
as an option, so it is refused with what to change rather than cleaned silently.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from kit.core.errors import KitError

_MAX_NAME = 120  # file systems allow 255 bytes; leave room for suffixes such as ".tflite"


def component_problem(name: object) -> str | None:
    """Why `name` cannot be one file or folder name, or None when it can."""
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not a string"
    if not name.strip():
        return "is empty"
    if name in (".", ".."):
        return f"is {name!r}, which names a folder above or this one"
    if "/" in name or "\\" in name:
        return "contains a path separator"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "contains a control character"
    if name.startswith("-"):
        return "starts with '-', which commands would read as an option"
    if name != name.strip():
        return "starts or ends with a space"
    if len(name.encode()) > _MAX_NAME:
        return f"is longer than {_MAX_NAME} bytes"
    return None


def safe_component(name: str, what: str) -> str:
    """`name` unchanged when it is a safe single path component; otherwise a KitError naming `what`."""
    problem = component_problem(name)
    if problem is not None:
        raise KitError(f"{what} {name!r} {problem}; it becomes a file or folder name",
                       "use letters, digits, '-', '_' and '.', without '/' or '..'")
    return name


def find_collision(names: list[str]) -> tuple[str, str] | None:
    """Two different entries of `names` that would share one folder (equal, or equal ignoring case)."""
    seen: dict[str, str] = {}
    for name in names:
        key = name.casefold()
        if key in seen:
            return seen[key], name
        seen[key] = name
    return None


def check_output_file(path: str | Path, what: str = "output file", overwrite: bool = False) -> Path:
    """Refuse at once an output file that exists (unless `overwrite`), is a folder, or cannot be written."""
    p = Path(path)
    if p.is_dir():
        raise KitError(f"{what} {p} is a folder", "name a file")
    if p.exists() and not overwrite:
        raise KitError(f"{what} {p} already exists", "name a new file, or remove the old one")
    parent = p.parent if str(p.parent) else Path(".")
    _check_writable_dir(parent, what, p)
    return p


def write_output(path: str | Path, data: str | bytes, what: str = "output file") -> Path:
    """Write a file checked by `check_output_file`: missing folders are made here, and a failure (disk full,
    permissions changed meanwhile) is a KitError naming the file, not a traceback after the work ran."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            p.write_bytes(data)
        else:
            p.write_text(data)
    except OSError as e:
        raise KitError(f"cannot write {what} {p}: {e.strerror or e}", "choose another place") from None
    return p


def check_output_dir(path: str | Path, marker: str | tuple[str, ...], force: bool = False,
                     what: str = "output folder") -> Path:
    """Refuse a folder that is a file, cannot be created or written, or holds files the kit did not make.

    `marker` is the file (or files) the kit writes into every folder it makes (e.g. manifest.json); a
    non-empty folder without one belongs to someone else and is only used with `force`.
    """
    markers = (marker,) if isinstance(marker, str) else marker
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise KitError(f"{what} {p} exists and is not a folder", "choose another output folder with -o")
    if p.is_dir():
        if not _can_create_in(p):
            raise KitError(f"{what} {p} is not writable", "choose another output folder with -o")
        if not force and any(p.iterdir()) and not any((p / m).is_file() for m in markers):
            raise KitError(f"{what} {p} is not empty and was not made by the kit (no {markers[0]})",
                           "choose a new or empty folder with -o, or pass --force to write into it")
        return p
    _check_writable_dir(p.parent, what, p)
    return p


def _check_writable_dir(parent: Path, what: str, target: Path) -> None:
    """The nearest existing ancestor of `parent` must be a writable folder (missing ones are created later)."""
    probe = parent.absolute()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise KitError(f"cannot write {what} {target}: {probe} is not a folder", "choose another place")
    if not _can_create_in(probe):
        raise KitError(f"cannot write {what} {target}: {probe} is not writable", "choose another place")


def _can_create_in(folder: Path) -> bool:
    """Create and remove a file there: permission bits alone miss read-only mounts and root's rights."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".kit-write-check-"):
            return True
    except OSError:
        return False


def shared_dir() -> Path | None:
    """The read-only `shared/` folder next to the project checkout, when present."""
    candidates = [os.environ.get("PRUNEKIT_SHARED"), Path.cwd().parent / "shared",
                  Path(__file__).resolve().parents[3] / "shared"]
    for c in candidates:
        if c and (Path(c) / "data" / "mnist").is_dir():
            return Path(c)
    return None


def user_cache(*parts: str) -> Path:
    """`$XDG_CACHE_HOME/prunekit/...` (default `~/.cache`): what the kit rebuilds on demand (TFLM objects,
    calibrations), shared by every project and output folder."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "prunekit", *parts)
