"""Host side of the MLPerf Tiny (EEMBC runner) serial protocol: commands out, answers in.

The device protocol, as the MLPerf Tiny reference firmware speaks it:

* a command is ASCII text ended by ``%`` (no newline); the device answers with
  lines ended by ``\\r\\n`` and closes every answer with ``m-ready``;
* ``name`` -> ``m-name-dut-[VENDOR]``; ``profile`` -> ``m-profile-[FIRMWARE]``,
  ``m-model-[MODEL]``; ``timestamp`` -> ``m-lap-us-T``;
* ``db load N`` -> ``m-[Expecting N bytes]``, then ``db HEX`` chunks, the last one
  answered by ``m-load-done``;
* ``infer N W`` -> ``m-warmup-start-W``, ``m-warmup-done``, ``m-infer-start-N``,
  ``m-lap-us-T0``, ``m-lap-us-T1``, ``m-infer-done``, ``m-results-[v,...]``;
  latency per inference = (T1 - T0) / N, T a 32-bit microsecond counter;
* ``results`` -> ``m-results-[...]``; errors are ``e-[MESSAGE]``; a command the
  firmware does not know is ``e-[Unknown command: NAME]``.

Extensions understood by the kit's own firmware and emulator (a reference board
answers them with the unknown-command error, which the host treats as "feature
off"): ``model load N`` / ``model HEX`` (replace the model over serial, answered
by ``m-model-load-done``), ``arena`` (``m-arena-used-N``, ``m-arena-size-N``) and
``input-format`` (``m-input-format-[dtype=int8,shape=1x49x10x1,bytes=490]``).

This module only encodes and parses; reading the port (timeouts, retries,
resynchronisation) is `targets.serial`'s job.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from kit.core.errors import TargetError

TERMINATOR = "%"
READY = "m-ready"
#: the reference firmware's command buffer (EE_CMD_SIZE): longer commands are corrupted there
REFERENCE_COMMAND_SIZE = 80
#: bytes per `db`/`model` chunk: "db " + 64 hex digits fits the reference command buffer
CHUNK_BYTES = 32
#: lines a board prints while booting (reference firmware and the kit's own)
BOOT_LINES = ("m-timestamp-mode-", "m-init-done")
LAP_WRAP = 1 << 32
#: the vendor string the kit's emulator gives in `m-name-dut-[…]`
EMULATOR_VENDOR = "prunekit-emulator"

_ERROR = re.compile(r"e-\[(.*)\]$")
_UNKNOWN = re.compile(r"e-\[(unknown command|command not recognized)", re.IGNORECASE)
_MESSAGE_START = re.compile(r"e-\[|m-[\[a-z]")
_PRINTABLE = re.compile(r"[\x20-\x7e]*$")
_RUNNER_PREFIX = re.compile(r"^\s*\d+\.\d+\s+([A-Za-z0-9_.-]+):\s?(.*)$")
_RUNNER_COMMAND = re.compile(r'^Command "(.*)"$')
_FLOAT = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$|[-+]?(?:nan|inf)$", re.IGNORECASE)


class ProtocolError(TargetError):
    """An answer that is incomplete, out of order or malformed."""


def encode(command: str) -> bytes:
    """`"infer 10 1"` -> `b"infer 10 1%"`; refuses text the device would split or mangle."""
    if TERMINATOR in command or any(c in command for c in "\r\n"):
        raise ValueError(f"command {command!r} contains a terminator or a line break")
    if not command.isascii() or not _PRINTABLE.match(command):
        raise ValueError(f"command {command!r} is not printable ASCII")
    return (command + TERMINATOR).encode("ascii")


def chunk_commands(verb: str, data: bytes, chunk_bytes: int = CHUNK_BYTES) -> list[str]:
    """`verb load N` then `verb HEX...` commands carrying `data` (`verb` is `db` or `model`)."""
    if not data:
        raise ValueError("nothing to load: the data is empty")
    if chunk_bytes < 1:
        raise ValueError("chunk_bytes must be >= 1")
    commands = [f"{verb} load {len(data)}"]
    commands += [f"{verb} {data[i:i + chunk_bytes].hex()}" for i in range(0, len(data), chunk_bytes)]
    return commands


def model_id(name: str, data: bytes) -> str:
    """What the kit's firmware and emulator print in `m-model-[...]`: name plus content hash."""
    return f"{name} sha256:{hashlib.sha256(data).hexdigest()[:16]}"


def model_id_matches(board_model: str, data: bytes) -> bool:
    """True when `board_model` carries the hash prefix of `data` (reference boards never do)."""
    m = re.search(r"sha256:([0-9a-f]{8,64})", board_model)
    return bool(m) and hashlib.sha256(data).hexdigest().startswith(m.group(1))


def clean_line(raw: str) -> str | None:
    """The protocol message in one received line, or None for noise.

    Garbage bytes glued in front of a message (line noise, a board's boot
    chatter) are dropped: the message starts at the first `m-` / `e-[` from
    which the rest of the line is printable ASCII.
    """
    line = raw.strip("\r\n\x00 ")
    for m in _MESSAGE_START.finditer(line):
        rest = line[m.start():]
        if _PRINTABLE.match(rest):
            return rest.rstrip()
    return None


def error_text(line: str) -> str | None:
    """`e-[Unknown command: x]` -> `Unknown command: x`; None for non-error lines."""
    m = _ERROR.match(line)
    return m.group(1) if m else None


def is_unknown_command(line: str) -> bool:
    return bool(_UNKNOWN.match(line))


def is_boot_line(line: str) -> bool:
    return line.startswith(BOOT_LINES)


def _bracketed(lines: list[str], prefix: str) -> str | None:
    """The text in `prefix[...]` of the first matching line."""
    for line in lines:
        if line.startswith(prefix + "[") and line.endswith("]"):
            return line[len(prefix) + 1:-1]
    return None


@dataclass(frozen=True)
class BoardName:
    device: str
    vendor: str


def parse_name(lines: list[str]) -> BoardName:
    """`m-name-dut-[unspecified]` -> BoardName("dut", "unspecified")."""
    for line in lines:
        m = re.match(r"m-name-([^\[]*?)-?\[(.*)\]$", line)
        if m:
            return BoardName(device=m.group(1) or "dut", vendor=m.group(2))
    raise ProtocolError("the board's answer to `name` has no m-name-…-[…] line", "lines: " + " | ".join(lines))


@dataclass(frozen=True)
class BoardProfile:
    firmware: str
    model: str


def parse_profile(lines: list[str]) -> BoardProfile:
    """`m-profile-[ULPMark for tinyML Firmware V0.0.1]`, `m-model-[kws01]`."""
    firmware, model = _bracketed(lines, "m-profile-"), _bracketed(lines, "m-model-")
    if firmware is None or model is None:
        raise ProtocolError("the board's answer to `profile` lacks m-profile-[…] or m-model-[…]",
                            "lines: " + " | ".join(lines))
    return BoardProfile(firmware=firmware, model=model)


def parse_lap(line: str) -> int | None:
    m = re.match(r"m-lap-us-(\d{1,20})$", line)  # bounded: int() refuses 4,300+ digits
    return int(m.group(1)) if m else None


def parse_results(line: str) -> list[float] | None:
    """`m-results-[0.000,0.761]` -> [0.0, 0.761]; None when the line is not a results line."""
    m = re.match(r"m-results-\[(.*)\]$", line)
    if not m:
        return None
    body = m.group(1).strip()
    if not body:
        return []
    items = [s.strip() for s in body.split(",")]
    if not all(_FLOAT.match(s) for s in items):
        raise ProtocolError(f"malformed results line {line!r}")
    return [float(s) for s in items]


def parse_arena(lines: list[str]) -> tuple[int, int | None] | None:
    """(bytes used, arena size or None) from the `arena` extension; None when absent."""
    used = size = None
    for line in lines:
        m = re.match(r"m-arena-(used|size)-(\d{1,20})$", line)
        if m and m.group(1) == "used":
            used = int(m.group(2))
        elif m:
            size = int(m.group(2))
    return None if used is None else (used, size)


def parse_input_format(lines: list[str]) -> dict[str, str] | None:
    """`m-input-format-[dtype=int8,shape=1x49x10x1,bytes=490]` -> {"dtype": "int8", ...}; None when absent.

    A line whose items are not KEY=VALUE, whose `bytes` is not a byte count or whose `shape` is not
    DIMxDIM… (`+` between inputs) is a ProtocolError quoting it.
    """
    body = _bracketed(lines, "m-input-format-")
    if body is None:
        return None
    line = f"m-input-format-[{body}]"
    fields: dict[str, str] = {}
    for item in body.split(","):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ProtocolError(f"malformed input-format line {line!r}: {item!r} is not KEY=VALUE")
        fields[key.strip()] = value.strip()
    if "bytes" in fields and not re.fullmatch(r"\d{1,12}", fields["bytes"]):
        raise ProtocolError(f"malformed input-format line {line!r}: bytes={fields['bytes']!r} is not a byte count")
    if "shape" in fields and not re.fullmatch(r"\d{1,9}(x\d{1,9})*(\+\d{1,9}(x\d{1,9})*)*", fields["shape"]):
        raise ProtocolError(f"malformed input-format line {line!r}: shape={fields['shape']!r} is not DIMxDIM…")
    return fields


def lap_elapsed_us(start: int, end: int) -> int:
    """Microseconds between two laps of a 32-bit counter that may have wrapped once."""
    if end >= start:
        return end - start
    if start < LAP_WRAP and end < LAP_WRAP:
        return end + LAP_WRAP - start
    raise ProtocolError(f"lap timestamps go backwards ({start} then {end})")


@dataclass(frozen=True)
class InferReply:
    """One `infer N W` answer, checked for completeness."""

    iterations: int
    warmup: int
    laps_us: tuple[int, int]
    results: tuple[float, ...]

    @property
    def elapsed_us(self) -> int:
        return lap_elapsed_us(*self.laps_us)

    @property
    def per_inference_us(self) -> float:
        return self.elapsed_us / self.iterations


def parse_infer(lines: list[str], iterations: int | None = None, warmup: int | None = None) -> InferReply:
    """Check and decode an `infer` answer; raise ProtocolError if anything is missing or out of order.

    `iterations`/`warmup`, when given, must match what the board says it ran,
    so that an answer to another command can never be taken for this one.
    """
    def fail(why: str) -> ProtocolError:
        return ProtocolError(f"incomplete or inconsistent `infer` answer: {why}", "lines: " + " | ".join(lines))

    for line in lines:
        err = error_text(line)
        if err is not None:
            raise TargetError(f"the board refused `infer`: {err}")
    order = ["m-warmup-start-", "m-warmup-done", "m-infer-start-", "m-lap-us-", "m-lap-us-", "m-infer-done",
             "m-results-"]
    steps = [ln for ln in lines if ln.startswith(tuple(order))]
    if len(steps) != len(order) or any(not s.startswith(p) for s, p in zip(steps, order)):
        raise fail("expected " + ", ".join(p.rstrip("-") for p in order))
    w = re.fullmatch(r"m-warmup-start-(\d{1,20})", steps[0])
    n = re.fullmatch(r"m-infer-start-(\d{1,20})", steps[2])
    laps = parse_lap(steps[3]), parse_lap(steps[4])
    if not w or not n or None in laps:
        raise fail("malformed warmup/infer/lap line")
    if iterations is not None and int(n.group(1)) != iterations:
        raise fail(f"board ran {n.group(1)} inferences, {iterations} were asked for")
    if warmup is not None and int(w.group(1)) != warmup:
        raise fail(f"board ran {w.group(1)} warmup inferences, {warmup} were asked for")
    if int(n.group(1)) < 1:
        raise fail("zero inferences")
    results = parse_results(steps[6])
    reply = InferReply(iterations=int(n.group(1)), warmup=int(w.group(1)), laps_us=(laps[0], laps[1]),
                       results=tuple(results or ()))
    if reply.elapsed_us <= 0:
        raise fail("the two laps are equal: the timer did not advance")
    return reply


@dataclass(frozen=True)
class Exchange:
    """One command of an EEMBC runner log and the device lines that answered it."""

    command: str
    lines: list[str]


def runner_exchanges(log: str, device: str = "dut") -> list[Exchange]:
    """Device exchanges in an EEMBC runner log (`00273.604 parser: Command "dut infer 100 1"` ...).

    The runner prefixes each line with a time and a source (`parser`,
    `sequencer`, `dut`, ...). Only lines from `device` are device output; the
    runner's own lines (`parser: m-ready-finished[dut]`) never count as answers.
    """
    exchanges: list[Exchange] = []
    for raw in log.splitlines():
        m = _RUNNER_PREFIX.match(raw)
        if not m:
            continue
        source, text = m.groups()
        cmd = _RUNNER_COMMAND.match(text) if source == "parser" else None
        if cmd and cmd.group(1).startswith(device + " "):
            exchanges.append(Exchange(command=cmd.group(1)[len(device) + 1:], lines=[]))
        elif source == device and exchanges:
            line = clean_line(text)
            if line is not None:
                exchanges[-1].lines.append(line)
    return exchanges
