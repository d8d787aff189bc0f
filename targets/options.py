"""Target options: each target declares its `--option KEY=VALUE` keys in one dataclass.

Options arrive as text from the command line (`--option retries=3`) and as
TOML values from farm.toml (`options = { retries = 3 }`); `parse_options`
turns either into the target's dataclass, converting each value to its
field's type and refusing keys the target does not know, so a typo is an
error that lists the known keys rather than a TypeError or a silent default.
A field's `metadata={"min": N}` sets its lowest allowed value, `metadata={"choices": (...)}` the allowed
strings.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Mapping, TypeVar

from kit.core.errors import TargetError

T = TypeVar("T")

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def option_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def parse_options(cls: type[T], options: Mapping[str, Any], target: str) -> T:
    """`cls` built from `options`; TargetError for an unknown key or a value of the wrong type."""
    known = option_names(cls)
    unknown = sorted(set(options) - set(known))
    if unknown:
        close = [m for k in unknown for m in difflib.get_close_matches(k, known, n=1)]
        hint = (f"did you mean {', '.join(close)}? " if close else "") + \
            f"{target} targets take {', '.join(known) if known else 'no options'}"
        raise TargetError(f"unknown option(s): {', '.join(unknown)} do not apply to {target} targets", hint)
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in options:
            values[f.name] = convert_option(target, f.name, options[f.name], hints[f.name], f.metadata.get("min"),
                                            f.metadata.get("choices"))
    return cls(**values)


def split_options(cls: type, options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the options `cls` declares, the rest): for a target that hands the rest to the transport under it."""
    known = set(option_names(cls))
    return ({k: v for k, v in options.items() if k in known}, {k: v for k, v in options.items() if k not in known})


def convert_option(target: str, name: str, value: Any, hint: Any, minimum: float | None = None,
                   choices: tuple[str, ...] | None = None) -> Any:
    """One option value as type `hint` (bool, int, float, str, or one of them `| None`); a string one of
    `choices` when given."""
    kinds = [hint]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        kinds = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
    kind = kinds[0]
    where = f"{target} target option {name}={value!r}"
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise TargetError(f"{where} is not true or false", "use true/false, yes/no, on/off or 1/0")
    if kind in (int, float):
        if isinstance(value, bool):
            raise TargetError(f"{where} is not a {kind.__name__}")
        try:
            number = kind(value)
        except (TypeError, ValueError):
            raise TargetError(f"{where} is not a {kind.__name__}") from None
        if minimum is not None and number < minimum:
            raise TargetError(f"{where} must be >= {minimum}")
        return number
    if kind is str:
        if isinstance(value, (bool, list, dict)):
            raise TargetError(f"{where} is not a string")
        if choices and str(value) not in choices:
            raise TargetError(f"{where} is not one of {', '.join(choices)}")
        return str(value)
    raise TypeError(f"option {name} has the unsupported type {hint!r}")
