"""TOML checks that name the file, the line and the dotted key of a mistake (recipes, farm.toml, pipeline.toml).

One checker for every TOML file the kit reads, so each is held to the same rules; the error class says which
kind of file was wrong (RecipeError, FarmError).
"""
from __future__ import annotations

import difflib
import re
import sys
from pathlib import Path
from typing import Any, Callable, NoReturn

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from kit.core.errors import KitError

#: a dotted key path; ints index arrays of tables (`device[2].uri`)
KeyPath = tuple  # tuple[str | int, ...]

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\[\]]+?)\s*\]\]?\s*(#.*)?$")
#: a dot outside double quotes: `prune.layers."fc.*"` is three names
_DOT = re.compile(r"\.(?=(?:[^\"]*\"[^\"]*\")*[^\"]*$)")


class FarmError(KitError):
    """A farm.toml or pipeline.toml that does not validate."""


def dotted(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class TomlFile:
    """One parsed TOML file plus what is needed to point at a line in it."""

    def __init__(self, text: str, where: str, what: str, error: type[KitError] = FarmError,
                 data: dict[str, Any] | None = None):
        """`data`: the already parsed `text`, for callers that report a syntax error their own way."""
        self.where, self.what, self.error = where, what, error
        self.lines = text.splitlines()
        if data is not None:
            self.data: dict[str, Any] = data
            return
        try:
            self.data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise error(f"{where} is not valid TOML: {e}",
                        f"fix the syntax there; see docs/farm.md for a complete {what} example") from None

    @classmethod
    def load(cls, path: str | Path, what: str) -> "TomlFile":
        p = Path(path)
        if not p.is_file():
            raise FarmError(f"{what} {p} does not exist", f"create it; docs/farm.md has an example {what}")
        return cls(read_text(p, what, FarmError), str(p), what)

    # -- locating ------------------------------------------------------------------------------

    def line(self, path: KeyPath) -> int | None:
        """Line of `path` (a table header or a `key =` line), best effort."""
        counts: dict[tuple, int] = {}
        current: tuple = ()
        array_names: dict[tuple, int] = {}
        for number, text in enumerate(self.lines, 1):
            m = _HEADER.match(text)
            if m:
                names = tuple(p.strip().strip("\"'") for p in _DOT.split(m.group(2)))
                if m.group(1) == "[[":
                    counts[names] = counts.get(names, -1) + 1
                    array_names[names] = counts[names]
                current = self._resolve(names, array_names)
                if current == tuple(path):
                    return number
                continue
            if path and current == tuple(path[:-1]) and isinstance(path[-1], str) and \
                    re.match(rf"^\s*[\"']?{re.escape(path[-1])}[\"']?\s*=", text):
                return number
        return None

    @staticmethod
    def _resolve(names: tuple, arrays: dict[tuple, int]) -> tuple:
        """("device", "options") -> ("device", 2, "options") when [[device]] was seen 3 times."""
        out: list = []
        for i in range(len(names)):
            out.append(names[i])
            if names[:i + 1] in arrays:
                out.append(arrays[names[:i + 1]])
        return tuple(out)

    def fail(self, path: KeyPath, problem: str, hint: str | None = None) -> NoReturn:
        line = None
        for cut in range(len(path), 0, -1):  # nearest line we can find
            line = self.line(path[:cut])
            if line:
                break
        at = f"{self.where}, line {line}" if line else self.where
        raise self.error(f"{at}: `{dotted(path)}` {problem}", hint)

    # -- typed access --------------------------------------------------------------------------

    def table(self, value: Any, path: KeyPath, allowed: set[str] | None) -> dict:
        if not isinstance(value, dict):
            self.fail(path, f"must be a table, got {type(value).__name__} {value!r}")
        if allowed is not None:
            for key in value:
                if key not in allowed:
                    close = difflib.get_close_matches(key, sorted(allowed), n=1)
                    hint = f"did you mean `{close[0]}`?" if close else f"known keys: {', '.join(sorted(allowed))}"
                    self.fail((*path, key), "is not a known key", hint)
        return value

    def tables(self, value: Any, path: KeyPath) -> list[dict]:
        """An array of tables (`[[device]]`)."""
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.fail(path, "must be an array of tables", f"write each entry as [[{dotted(path)}]]")
        return value

    def get(self, t: dict, path: KeyPath, key: str, typ: type | tuple, default: Any = None,
            check: Callable[[Any], bool] | None = None, allowed: str | None = None, required: bool = False) -> Any:
        if key not in t:
            if required:
                self.fail((*path, key), "is missing", allowed and f"give {allowed}")
            return default
        value = t[key]
        types = typ if isinstance(typ, tuple) else (typ,)
        if float in types and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            names = " or ".join(x.__name__ for x in types)
            self.fail((*path, key), f"must be {names}, got {type(value).__name__} {value!r}")
        if check is not None and not check(value):
            self.fail((*path, key), f"is {value!r}, out of range", allowed and f"allowed: {allowed}")
        return value

    def choice(self, t: dict, path: KeyPath, key: str, options: tuple[str, ...], default: str | None) -> str | None:
        value = self.get(t, path, key, str, default)
        if key in t and value not in options:
            close = difflib.get_close_matches(value, options, n=1)
            hint = (f"did you mean {close[0]!r}? " if close else "") + f"use {' | '.join(options)}"
            self.fail((*path, key), f"is {value!r}, not one of {', '.join(options)}", hint)
        return value

    def strings(self, t: dict, path: KeyPath, key: str, default: list[str] | None = None) -> list[str]:
        if key not in t:
            return list(default or [])
        value = t[key]
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            self.fail((*path, key), f"must be a string or a list of strings, got {value!r}")
        return list(value)

    def string_list(self, t: dict, path: KeyPath, key: str, default: list[str]) -> list[str]:
        """A list of strings, and nothing else (a lone string is refused)."""
        if key not in t:
            return list(default)
        value = t[key]
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            self.fail((*path, key), f"must be a list of strings, got {value!r}")
        return list(value)

    def patterns(self, t: dict, path: KeyPath, key: str) -> list[str]:
        """A list of layer-name regular expressions, each checked to compile."""
        values = self.string_list(t, path, key, [])
        for pattern in values:
            self.regex(path, key, pattern)
        return values

    def regex(self, path: KeyPath, key: str, pattern: str) -> None:
        try:
            re.compile(pattern)
        except re.error as e:
            self.fail((*path, key), f"holds {pattern!r}, not a valid regular expression ({e})")


# -- named files: device and MCU profiles ------------------------------------------------------------

def named_files(directory: Path) -> list[str]:
    """The built-in names in `directory`: its `NAME.toml` files."""
    return sorted(p.stem for p in directory.glob("*.toml"))


def load_named(name_or_path: str | Path, directory: Path, what: str) -> TomlFile:
    """`NAME` -> `directory/NAME.toml`; anything with a suffix is a path. Parsed; the caller checks the keys."""
    path = Path(name_or_path)
    if not path.suffix:
        path = directory / f"{name_or_path}.toml"
    if not path.is_file():
        raise KitError(f"no {what} {str(name_or_path)!r}", f"known {what}s: {', '.join(named_files(directory))}")
    return TomlFile(read_text(path, what, KitError), str(path), what, error=KitError)


def read_text(path: Path, what: str, error: type[KitError]) -> str:
    """A TOML file's text; unreadable or not UTF-8 is `error`, naming the file."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"cannot read {what} {path}: {e}", f"a {what} is UTF-8 TOML text") from None


def check_keys(doc: TomlFile, t: dict, path: KeyPath, allowed: set[str], what: str) -> None:
    """Refuse a key outside `allowed` at its line: "`colour` is an unknown key of this device profile"."""
    for key in t:
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f"did you mean `{close[0]}`?" if close else f"known keys: {', '.join(sorted(allowed))}"
            doc.fail((*path, key), f"is an unknown key of this {what}", hint)
