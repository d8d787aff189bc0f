"""Target URIs: `local`, `ssh://user@host:22`, `adb://SERIAL@host:5037`, `serial:///dev/ttyACM0?baud=115200`.

Parsed once here so that every target receives the same structure.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

from kit.core.errors import KitError


@dataclass(frozen=True)
class TargetURI:
    raw: str
    scheme: str
    user: str | None = None
    host: str | None = None
    port: int | None = None
    path: str = ""
    query: dict[str, str] = field(default_factory=dict)

    @property
    def base_scheme(self) -> str:
        """`edgetpu+ssh` -> `ssh`: the transport under an accelerator prefix."""
        return self.scheme.split("+", 1)[-1]

    @property
    def accelerator(self) -> str | None:
        return self.scheme.split("+", 1)[0] if "+" in self.scheme else None

    def __str__(self) -> str:
        return self.raw


def parse_target_uri(text: str) -> TargetURI:
    text = text.strip()
    if not text:
        raise KitError("empty target", "use e.g. --target local or --target ssh://pi@raspberrypi")
    if "://" not in text:
        # bare words: `local`, `edgetpu+local`, with a query if one is given (refused by targets that read none)
        word, _, query = text.partition("?")
        if word.replace("+", "").isalnum():
            return TargetURI(raw=text, scheme=word.lower(), query=dict(parse_qsl(query)))
        raise KitError(f"cannot parse target {text!r}", "a target is `local` or a URI such as ssh://user@host:22")
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        raise KitError(f"target {text!r} has an invalid port", "ports are numbers from 1 to 65535") from None
    return TargetURI(
        raw=text,
        scheme=parts.scheme.lower(),
        user=unquote(parts.username) if parts.username else None,
        host=parts.hostname,
        port=port,
        path=unquote(parts.path),
        query=dict(parse_qsl(parts.query)),
    )
