"""Strict JSON for every file and `--json` output the kit writes.

Python's `json` writes NaN and Infinity, which strict readers (browsers, jq, most languages) refuse.
A figure that is not finite is not a figure: it is written as null, with a note beside it saying what it
was, so nothing is lost and nothing invalid is written. Anything else json cannot represent is an error
rather than a silent `str()`.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any


def _describe(x: float) -> str:
    return "NaN (not a number)" if math.isnan(x) else ("+Infinity" if x > 0 else "-Infinity")


def _scalar(value: Any) -> Any:
    """numpy scalars and arrays, Paths and dataclasses as plain JSON values; anything else unchanged."""
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    kind = type(value).__module__
    if kind == "numpy":
        if hasattr(value, "tolist"):
            return value.tolist()
    return value


def _clean(value: Any, where: str, notes: list[str]) -> Any:
    """A copy of `value` with non-finite floats replaced by None; `notes` collects what was replaced."""
    value = _scalar(value)
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        notes.append(f"{where}: {_describe(value)}" if where else _describe(value))
        return None
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        made: dict[str, str] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                if not (isinstance(key, (int, float, bool)) or key is None):
                    raise TypeError(f"{where or 'object'} has a key of type {type(key).__name__}, not a string")
                key = json.dumps(key, allow_nan=True)
            inner: list[str] = []
            out[key] = _clean(item, "", inner)
            if inner:
                made[f"{key}_note"] = "; ".join(inner) + ": written as null, not a measured value"
        for key, note in made.items():  # beside the value; a note the caller wrote there is kept in front
            out[key] = f"{out[key]}; {note}" if key in out else note
        return out
    if isinstance(value, (list, tuple)):
        items = []
        for i, item in enumerate(value):
            items.append(_clean(item, f"item {i}", notes))
        return items
    raise TypeError(f"cannot write a {type(value).__name__} as JSON{f' (at {where})' if where else ''}")


def to_strict(obj: Any) -> Any:
    """`obj` as plain JSON values, with non-finite floats as null plus a `<key>_note` sibling.

    The note sits in the nearest enclosing object; a bare top-level list or number has none to hold it.
    """
    return _clean(obj, "", [])


def dumps(obj: Any, indent: int | None = 2, sort_keys: bool = False) -> str:
    """Strict JSON text: never NaN/Infinity; a TypeError for values JSON cannot hold."""
    return json.dumps(to_strict(obj), indent=indent, sort_keys=sort_keys, allow_nan=False)


def write_json(path: str | Path, obj: Any, indent: int | None = 2) -> Path:
    """Write strict JSON to `path` through a temporary file, so a failed write leaves the old file whole."""
    p = Path(path)
    text = dumps(obj, indent=indent)  # fails before anything is touched
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(text + "\n")
    tmp.replace(p)
    return p
