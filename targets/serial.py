"""A microcontroller on a serial line, driven with the MLPerf Tiny protocol.

`serial:///dev/ttyACM0?baud=115200` (a local port), `rfc2217://host:port` (a
board attached to another machine), `socket://host:port` (a TCP serial bridge,
or `kit emulate --tcp`), `loop://` (pyserial's loopback). Works with boards
flashed with the MLPerf Tiny reference firmware and with the kit's own firmware
(`kit firmware`), which adds the model-load, arena and input-format commands.

Every read has a deadline; a line is at most `MAX_LINE_BYTES` long and must
end within the time that many bytes take at the baud rate (plus a line timeout) (a board streaming bytes without a
line break is a protocol error within seconds, not a silent wait); lost lines are
recovered by re-sending idempotent commands after resynchronising; garbage bytes
are skipped; a board that reboots
mid-run or a port that disappears ends the run with a `TargetError`. A number is
only reported when the board's whole answer arrived in order.

Energy: with `--option meter=PORT` (or a device profile whose energy method is
`serial-meter`), an external power meter on the board's supply is read during
the timed batches (`targets.energy`); each batch's window ends when its second
`m-lap-us` line arrives and lasts as long as the board's laps say.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar
from urllib.parse import urlencode

import numpy as np

from firmware_tools import protocol
from firmware_tools.protocol import ProtocolError
from kit.core.errors import DataError, TargetError
from kit.core.tflite_file import TFLiteInfo, read_tflite
from targets.base import ArtifactRef, Deployment, DeviceInfo, LatencyStats, ProfileResult, RunSettings, Target
from targets.energy import EnergyReading, SerialPowerMeter, energy_per_inference
from targets.options import convert_option, parse_options
from targets.profiles import DeviceProfile
from targets.uri import TargetURI

T = TypeVar("T")
#: longest answer line accepted; a results line of 1,000 classes needs about 10 KiB
MAX_LINE_BYTES = 64 * 1024
#: what a vanished port raises: OSError (and pyserial's SerialException), or termios.error from tcdrain
_PORT_ERRORS: tuple[type[BaseException], ...] = (OSError,)
try:
    import termios

    _PORT_ERRORS += (termios.error,)
except ImportError:  # Windows: no termios
    pass


class BoardReset(TargetError):
    """The board rebooted: whatever it held in RAM (input, a model loaded over serial) is gone."""


class PortLost(TargetError):
    """The serial port failed or went away (unplugged board, closed bridge, emulator gone)."""


class _NoAnswer(ProtocolError):
    """No complete answer before the deadline."""


class Babbling(ProtocolError):
    """Bytes keep coming without a line break: the board is not speaking the protocol (not retried)."""


class _Link:
    """A line-oriented conversation with a board over an open pyserial port."""

    def __init__(self, port: Any, where: str, line_timeout: float, retries: int, baud: int = 115200):
        self.port, self.where, self.baud = port, where, baud
        self.line_timeout, self.retries = line_timeout, retries
        self.transcript: list[str] = []
        #: the last answer's lines and the host time (time.monotonic) at which each arrived
        self.last_lines: list[str] = []
        self.arrivals: list[float] = []
        #: commands the board answered in full, for error messages ("it had answered name, profile")
        self.answered: list[str] = []
        self._buf = bytearray()
        self._line_started: float | None = None  # when the first byte of the unfinished line arrived

    # -- bytes and lines -------------------------------------------------------------------------

    def _io(self, action: Callable[[], T]) -> T:
        try:
            return action()
        except _PORT_ERRORS as e:  # pyserial's SerialException is an OSError
            raise PortLost(f"the serial port {self.where} failed or disappeared: {e}",
                           "check the cable and the board's power; the board may have been unplugged") from None

    def send(self, command: str, record: bool = True) -> None:
        if record:
            self.transcript.append(f"> {command}")
        data = protocol.encode(command)
        self._io(lambda: (self.port.write(data), self.port.flush()))

    @property
    def line_time_limit(self) -> float:
        """Seconds a line may take from its first byte to its line break: the time MAX_LINE_BYTES take at
        the baud rate (10 bits a byte), plus one line timeout."""
        return MAX_LINE_BYTES * 10 / self.baud + self.line_timeout

    def read_line(self, deadline: float) -> str | None:
        """The next protocol line (noise skipped), or None at the deadline, even if noise keeps coming.

        Raises `Babbling` when a line grows past MAX_LINE_BYTES or stays unfinished for `line_time_limit`.
        """
        while True:
            nl = self._buf.find(b"\n", 0, MAX_LINE_BYTES + 1)
            if nl >= 0:
                raw = self._buf[:nl + 1].decode("ascii", "replace")
                del self._buf[:nl + 1]
                self._line_started = time.monotonic() if self._buf else None
                line = protocol.clean_line(raw)
                if line is not None:
                    return line
                if raw.strip():
                    self.transcript.append(f"? {raw.strip()[:200]!r}")
                continue
            self._check_unfinished()
            if time.monotonic() < deadline:
                chunk = self._io(lambda: self.port.read(max(1, min(self.port.in_waiting, MAX_LINE_BYTES))))
                if chunk and not self._buf:
                    self._line_started = time.monotonic()
                self._buf += chunk
            if time.monotonic() >= deadline and self._buf.find(b"\n") < 0:
                self._check_unfinished()
                return None

    def _check_unfinished(self) -> None:
        if not self._buf:
            return
        too_long = len(self._buf) > MAX_LINE_BYTES
        too_slow = self._line_started is not None and time.monotonic() - self._line_started > self.line_time_limit
        if too_long or too_slow:
            size, head = len(self._buf), bytes(self._buf[:60])
            self._buf.clear()
            self._line_started = None
            why = f"more than {MAX_LINE_BYTES} bytes" if too_long else \
                f"{size} bytes over {self.line_time_limit:g} s"
            raise Babbling(f"{self.where} sent {why} without a line break (starting {head!r}); "
                           f"{self.said()}",
                           "the board is not speaking the MLPerf Tiny protocol at this baud rate, or its "
                           "firmware is stuck printing; check ?baud= and reset the board")

    def said(self) -> str:
        """What the board did answer, for error messages."""
        if not self.answered:
            return "it had not answered any command in full"
        return "it had answered " + ", ".join(f"`{c}`" for c in dict.fromkeys(self.answered))

    def drain(self) -> None:
        self._io(self.port.reset_input_buffer)
        self._buf.clear()
        self._line_started = None

    # -- commands --------------------------------------------------------------------------------

    def exchange(self, command: str, timeout: float, complete: Callable[[list[str]], bool] | None = None,
                 record: bool = True, first_line: float | None = None) -> list[str]:
        """Send a command; return its answer lines up to `m-ready` (excluded).

        A boot banner means the board reset. If `complete(lines)` holds but
        `m-ready` was lost, the answer is accepted and the link resynchronised.
        `first_line`: seconds within which the answer must start, for a command whose whole answer may take
        `timeout` but whose first line a board sends at once (`infer` says m-warmup-start before working), so
        that a board gone quiet costs seconds, not `timeout` per attempt.
        """
        self.send(command, record)
        started = time.monotonic()
        deadline = started + timeout
        lines: list[str] = []
        self.last_lines, self.arrivals = lines, []
        while True:
            waiting_first = first_line is not None and not lines
            line = self.read_line(min(deadline, started + first_line) if waiting_first else deadline)
            if line is None:
                if complete is not None and complete(lines):
                    self.transcript.append("! m-ready lost; resynchronising")
                    self.resync()
                    return lines
                if waiting_first:
                    raise _NoAnswer(f"no answer to `{command}` from {self.where} within {first_line:.1f} s "
                                    "(a board starts this answer at once)",
                                    "the board may have hung; raise ?line_timeout= if it is slow to answer")
                raise _NoAnswer(f"no complete answer to `{command}` from {self.where} within {timeout:.1f} s",
                                "lines so far: " + (" | ".join(lines) or "none"))
            if record:
                self.transcript.append(line)
            if protocol.is_boot_line(line):
                raise BoardReset(f"the board on {self.where} reset while answering `{command}`",
                                 "check its power supply and watchdog; RAM state (input, a model loaded "
                                 "over serial) is lost; run again")
            if line == protocol.READY:
                return lines
            lines.append(line)
            self.arrivals.append(time.monotonic())
            if complete is not None and complete(lines):
                deadline = min(deadline, time.monotonic() + self.line_timeout)

    def command(self, command: str, parse: Callable[[list[str]], T], timeout: float | None = None,
                complete: Callable[[list[str]], bool] | None = None, first_line: float | None = None) -> T:
        """An idempotent command: on a lost or garbled answer, resynchronise and send it again."""
        def attempt() -> T:
            value = parse(self.exchange(command, timeout or self.line_timeout, complete, first_line=first_line))
            self.answered.append(command.split(" ", 1)[0])
            return value

        return self._with_retries(attempt, "retrying",
                                  f"{self.where} gave no complete answer to `{command}` in {self.retries + 1} attempts")

    def _with_retries(self, attempt: Callable[[], T], note: str, failure: str) -> T:
        """Run `attempt`; after a lost or garbled answer, resynchronise and run it again (a reset is final)."""
        last: ProtocolError | None = None
        for _ in range(self.retries + 1):
            try:
                return attempt()
            except (BoardReset, Babbling):
                raise
            except ProtocolError as e:
                last = e
                self.transcript.append(f"! {e.message}; {note}")
                self.resync()
        raise TargetError(f"{failure}: {last.message} ({self.said()})", last.hint)

    def resync(self, timeout: float | None = None, allow_boot: bool = False) -> None:
        """Discard input until the board answers `name` in full (a harmless command every firmware knows)."""
        deadline = time.monotonic() + (timeout or 4 * self.line_timeout)
        self.drain()
        while time.monotonic() < deadline:
            self.send("name", record=False)
            resend = min(deadline, time.monotonic() + self.line_timeout)
            saw_name = False
            while (line := self.read_line(resend)) is not None:
                if protocol.is_boot_line(line) and not allow_boot:
                    raise BoardReset(f"the board on {self.where} reset", "RAM state is lost; run again")
                if line.startswith("m-name-"):
                    saw_name = True
                elif line == protocol.READY and saw_name:
                    return
                elif line == protocol.READY:
                    saw_name = False
        if self.answered:
            raise TargetError(f"the board on {self.where} stopped answering `name` ({self.said()} before)",
                              "it may have hung or rebooted into other firmware; reset it and run again")
        raise TargetError(f"no MLPerf Tiny board answers on {self.where}",
                          "check the port, the baud rate (?baud=115200) and that the firmware implements the "
                          "MLPerf Tiny protocol (`name%` -> `m-name-dut-[…]`)")

    def load(self, verb: str, data: bytes, chunk_bytes: int, done: str) -> list[str] | None:
        """`verb load N` + hex chunks. None when the board does not know `verb`; else the final lines."""
        return self._with_retries(lambda: self._load_once(verb, data, chunk_bytes, done), "loading again",
                                  f"loading {len(data)} bytes with `{verb}` on {self.where} failed "
                                  f"{self.retries + 1} times")

    def _load_once(self, verb: str, data: bytes, chunk_bytes: int, done: str) -> list[str] | None:
        lines = self.exchange(f"{verb} load {len(data)}", self.line_timeout)
        if any(protocol.is_unknown_command(ln) for ln in lines):
            return None
        _refuse_errors(lines, f"{verb} load {len(data)}")
        if not any(ln.startswith("m-[Expecting") for ln in lines):
            raise ProtocolError(f"no m-[Expecting …] answer to `{verb} load`", " | ".join(lines))
        commands = protocol.chunk_commands(verb, data, chunk_bytes)[1:]
        for i, cmd in enumerate(commands):
            final = i == len(commands) - 1
            lines = self.exchange(cmd, self.line_timeout + (10.0 if final else 0.0), record=False)
            if final and verb == "model":
                _refuse_errors(lines, "model load")  # the board's verdict on the model
            if any(protocol.error_text(ln) is not None for ln in lines):
                raise ProtocolError(f"chunk {i + 1}/{len(commands)} refused: " + " | ".join(lines))
            if any(ln.startswith(done) for ln in lines) != final:
                raise ProtocolError(f"`{done}` came {'late' if final else 'early'} "
                                    f"(chunk {i + 1} of {len(commands)})")
        self.transcript.append(f"> {verb} … ({len(commands)} chunks, {len(data)} bytes)")
        self.transcript += lines
        self.answered.append(f"{verb} load")
        return lines

    def optional(self, command: str, parse: Callable[[list[str]], T]) -> T | None:
        """An extension command: None when the board answers `e-[Unknown command…]`."""
        def parse_or_none(lines: list[str]) -> T | None:
            return None if any(protocol.is_unknown_command(ln) for ln in lines) else parse(lines)
        return self.command(command, parse_or_none)


def _refuse_errors(lines: list[str], command: str) -> None:
    for line in lines:
        text = protocol.error_text(line)
        if text is not None:
            raise TargetError(f"the board refused `{command}`: {text}")


def _infer_complete(lines: list[str]) -> bool:
    return any(ln.startswith("m-results-") for ln in lines)


def _check_infer(n: int, w: int) -> Callable[[list[str]], protocol.InferReply]:
    def parse(lines: list[str]) -> protocol.InferReply:
        started = any(ln.startswith(("m-warmup-start-", "m-infer-start-")) for ln in lines)
        finished = any(ln.startswith(("m-infer-done", "m-results-")) for ln in lines)
        if started and not finished and not any(protocol.error_text(ln) for ln in lines):
            # m-ready while an inference batch was under way: the board rebooted (without a banner)
            raise BoardReset(f"the board said m-ready in the middle of `infer {n} {w}` (after "
                             f"{lines[-1]!r}): it most likely reset", "check its power supply and watchdog")
        return protocol.parse_infer(lines, n, w)
    return parse


@dataclass
class SerialOptions:
    """`--option KEY=VALUE` of serial targets."""

    #: overrides the URL's `?baud=`
    baud: int | None = field(default=None, metadata={"min": 1})
    #: seconds to wait for each answer line
    line_timeout: float = field(default=3.0, metadata={"min": 0.05})
    connect_timeout: float = field(default=10.0, metadata={"min": 0.1})
    #: re-sends of an idempotent command after a lost or garbled answer
    retries: int = field(default=2, metadata={"min": 0})
    #: timed `infer` batches the runs are split into (one latency sample each): several by default, so that
    #: min/median/max/std describe real samples rather than one batch mean
    batches: int = field(default=5, metadata={"min": 1})
    chunk_bytes: int = field(default=protocol.CHUNK_BYTES, metadata={"min": 1})
    #: the flashed model's name, asserted when the firmware cannot load models over serial
    board_model: str | None = None
    #: seed of the random input when no --input is given
    seed: int = field(default=0, metadata={"min": 0})
    #: serial port of an external power meter on the board's supply (`targets.energy`)
    meter: str | None = None
    meter_baud: int = field(default=115200, metadata={"min": 1})


class SerialTarget(Target):
    """A board speaking the MLPerf Tiny protocol on any pyserial URL."""

    schemes = ("serial", "rfc2217", "socket", "loop")
    #: reads `?baud=` (and pyserial's URL options) from the URI; `get_target` refuses a query elsewhere
    uri_query = True

    def __init__(self, uri: TargetURI, profile: DeviceProfile | None = None, **options: Any):
        super().__init__(uri, profile)
        o = self.options = parse_options(SerialOptions, options, "serial")
        self.url, url_baud = _pyserial_url(uri)
        self.baud = o.baud if o.baud is not None else url_baud
        self.line_timeout = o.line_timeout
        self.connect_timeout = o.connect_timeout
        self.retries = o.retries
        self.batches = o.batches
        self.chunk_bytes = o.chunk_bytes
        self.board_model = o.board_model
        self.seed = o.seed
        self.meter = o.meter
        self.meter_baud = o.meter_baud
        self._link_: _Link | None = None
        self._name: protocol.BoardName | None = None
        self._profile: protocol.BoardProfile | None = None

    # -- connection ------------------------------------------------------------------------------

    def _link(self) -> _Link:
        if self._link_ is None:
            import serial

            try:
                port = serial.serial_for_url(self.url, baudrate=self.baud, timeout=0.05,
                                             write_timeout=self.line_timeout)
            except (OSError, ValueError) as e:
                raise TargetError(f"cannot open the serial port {self.url}: {e}",
                                  "check the device path (ls /dev/ttyACM* /dev/ttyUSB*), permissions "
                                  "(dialout group) and that no other program holds the port") from None
            link = _Link(port, self.uri.raw, self.line_timeout, self.retries, self.baud)
            try:
                link.resync(self.connect_timeout, allow_boot=True)  # opening a port may reboot the board
            except BaseException:
                port.close()
                raise
            self._link_ = link
        return self._link_

    def _call(self, action: Callable[[_Link], T]) -> T:
        """Run an action on the link; a lost port or a reset board closes it so the next call reconnects."""
        link = self._link()
        try:
            return action(link)
        except (BoardReset, PortLost):
            self.close()
            raise

    def close(self) -> None:
        if self._link_ is not None:
            try:
                self._link_.port.close()
            except OSError:
                pass
            self._link_ = None

    def _identify(self, link: _Link) -> tuple[protocol.BoardName, protocol.BoardProfile]:
        self._name = link.command("name", protocol.parse_name)
        self._profile = link.command("profile", protocol.parse_profile)
        return self._name, self._profile

    # -- Target ----------------------------------------------------------------------------------

    def device_info(self) -> DeviceInfo:
        name, prof = self._call(self._identify)
        return DeviceInfo(name=name.vendor, cpu=self.profile_spec.description if self.profile_spec else None,
                          runtime="tflite-micro", runtime_version=None,
                          extra={"device": name.device, "firmware": prof.firmware, "board_model": prof.model,
                                 "port": self.uri.raw})

    def deploy(self, artifact: Path) -> Deployment:
        if not artifact.is_file():
            raise TargetError(f"model file {artifact} does not exist")
        data = artifact.read_bytes()
        info = read_tflite(data)
        return self._call(lambda link: self._deploy(link, artifact, data, info))

    def _deploy(self, link: _Link, artifact: Path, data: bytes, info: TFLiteInfo) -> Deployment:
        notes: list[str] = []
        link.transcript.clear()  # raw_output covers this deployment only
        _, prof = self._identify(link)
        if protocol.model_id_matches(prof.model, data):
            board_model = prof.model
            notes.append("the board's flashed model matches the file (sha256 prefix in m-model)")
        elif link.load("model", data, self.chunk_bytes, "m-model-load-done") is not None:
            board_model = link.command("profile", protocol.parse_profile).model
            if not protocol.model_id_matches(board_model, data):
                raise TargetError(f"after loading {artifact.name} the board reports model {board_model!r}, "
                                  "whose hash does not match the file", "the transfer was corrupted; run again")
            notes.append(f"model sent over serial ({len(data)} bytes, `model load` extension)")
        elif self.board_model is not None and self.board_model == prof.model:
            board_model = prof.model
            notes.append(f"the board runs model {prof.model!r}; that it is {artifact.name} was asserted with "
                         "--option board_model, not verified")
        else:
            raise TargetError(
                f"the board runs model {prof.model!r}, not {artifact.name}, and its firmware cannot load models "
                "over serial",
                f"flash firmware built with `kit firmware {artifact} -o DIR`, or, if the board's model is this "
                f"file, pass --option board_model={prof.model}")
        input_bytes = _input_size(info)
        fmt = link.optional("input-format", protocol.parse_input_format)
        if fmt is not None and "bytes" in fmt and int(fmt["bytes"]) != input_bytes:
            raise TargetError(f"the board's model takes {fmt['bytes']} input bytes, {artifact.name} takes "
                              f"{input_bytes}", "the board runs another model; flash or load the right one")
        arena = link.optional("arena", protocol.parse_arena)
        return Deployment(artifact=ArtifactRef.of(artifact), location=f"{self.uri.raw} model {board_model}",
                          state={"model": board_model, "info": info, "arena": arena, "notes": notes,
                                 "input_format": fmt})

    def run(self, deployment: Deployment, settings: RunSettings) -> dict[str, Any]:
        if (settings.delegate not in ("default", "none") or settings.threads != 1 or settings.core_mask
                or settings.instances != 1):
            raise TargetError("a microcontroller runs one TFLite Micro interpreter on one thread without delegates",
                              "drop --delegate, --threads, --core-mask and --instances for serial targets")
        data = _input_data(deployment.state["info"], settings, self.seed)
        return self._call(lambda link: self._run(link, data, settings))

    def _run(self, link: _Link, data: bytes, settings: RunSettings) -> dict[str, Any]:
        if link.load("db", data, self.chunk_bytes, "m-load-done") is None:
            raise TargetError(f"the board on {self.uri.raw} does not know the `db` command",
                              "it does not run MLPerf Tiny compatible firmware")
        started = time.monotonic()
        calibration = self._infer(link, 1, 0, settings.timeout_s)
        # per-inference time from the board's own laps and from the host clock, whichever is longer
        seconds_each = max(calibration.per_inference_us / 1e6, time.monotonic() - started)
        sizes = [settings.runs // self.batches + (1 if i < settings.runs % self.batches else 0)
                 for i in range(min(self.batches, settings.runs))]
        plan = self._energy_plan()
        meter = SerialPowerMeter(plan["port"], plan["baud"]) if plan["method"] else None
        replies, ends = [], []
        if meter:
            meter.start()
        try:
            for i, n in enumerate(sizes):
                w = settings.warmup if i == 0 else 0
                timeout = min(settings.timeout_s, 2 * self.line_timeout + 3 * (n + w) * seconds_each + 2)
                replies.append(self._infer(link, n, w, timeout))
                ends.append(_timed_loop_end(link))
        finally:
            samples = meter.stop() if meter else []
        energy = [self._energy(samples, end, r, meter) for r, end in zip(replies, ends)] if meter else None
        return {"replies": replies, "calibration": calibration, "transcript": "\n".join(link.transcript),
                "energy": energy, "energy_note": plan["note"]}

    @staticmethod
    def _infer(link: _Link, n: int, w: int, timeout: float) -> protocol.InferReply:
        return link.command(f"infer {n} {w}", _check_infer(n, w), timeout, complete=_infer_complete,
                            first_line=link.line_timeout)

    def _energy_plan(self) -> dict[str, Any]:
        """{"method": "serial-meter", "port", "baud"} when a meter is configured, else {"method": None, "note"}."""
        energy = dict(self.profile_spec.energy) if self.profile_spec else {"method": "none"}
        if self.meter:
            energy = {"method": "serial-meter", "port": self.meter, "baud": self.meter_baud}
        if energy.get("method") == "serial-meter" and energy.get("port"):
            return {"method": "serial-meter", "port": energy["port"], "baud": int(energy.get("baud", 115200)),
                    "note": ""}
        if energy.get("method") == "serial-meter":
            return {"method": None, "note": "the profile's serial-meter names no port: pass --option meter=PORT"}
        return {"method": None, "note": "no energy meter is attached to this serial target "
                "(pass --option meter=PORT for a serial power meter on the board's supply)"}

    @staticmethod
    def _energy(samples: list, end: float | None, reply: protocol.InferReply,
                meter: SerialPowerMeter) -> EnergyReading:
        if end is None:
            return EnergyReading(None, None, "serial-meter: the end of the timed loop is unknown")
        reading = energy_per_inference(samples, end, reply.elapsed_us / 1e6, reply.iterations, "serial-meter")
        if meter.problems():
            reading.note += f"; {meter.problems()}"
        return reading

    def collect(self, deployment: Deployment, raw: dict[str, Any], settings: RunSettings) -> ProfileResult:
        replies: list[protocol.InferReply] = raw["replies"]
        notes = list(deployment.state["notes"])
        if len(replies) == 1:
            r = replies[0]
            mean = r.per_inference_us
            latency = LatencyStats(count=r.iterations, min_us=mean, median_us=mean, mean_us=mean, p90_us=None,
                                   p99_us=None, max_us=mean, std_us=0.0)
            notes.append(f"latency: one batch of {r.iterations} inferences timed by two m-lap-us stamps "
                         f"({r.elapsed_us} us); min/median/max are that batch's mean, not a distribution "
                         "(use --option batches=K for K real samples)")
        else:
            latency = LatencyStats.from_samples([r.per_inference_us for r in replies])
            notes.append(f"latency: {len(replies)} samples, each the mean of one `infer` batch "
                         f"({', '.join(str(r.iterations) for r in replies)} inferences) between two m-lap-us stamps")
        prof = self._profile
        estimate = bool(prof and "modelled latency" in prof.firmware)
        if self._name and self._name.vendor == protocol.EMULATOR_VENDOR:
            notes.append("the board is the kit's emulator: TFLite Micro on the host; "
                         + ("latency from its modelled clock (an estimate)" if estimate
                            else "latency is the host CPU's, not a microcontroller's"))
        energy = _combine_energy(raw["energy"], raw["energy_note"])
        arena = deployment.state["arena"]
        if arena is None:
            notes.append("the board does not report tensor arena use (no `arena` command)")
        results = list(replies[-1].results)
        shown = ", ".join(f"{v:g}" for v in results[:16]) + (", …" if len(results) > 16 else "")
        notes.append(f"outputs of the last inference (m-results): [{shown}]")
        name = self._name
        return ProfileResult(
            target=self.uri.raw,
            device=DeviceInfo(name=name.vendor if name else self.uri.raw,
                              cpu=self.profile_spec.description if self.profile_spec else None,
                              runtime="tflite-micro",
                              extra={"device": name.device if name else None,
                                     "firmware": prof.firmware if prof else None,
                                     "board_model": deployment.state["model"],
                                     "results": results}),
            artifact=deployment.artifact,
            settings=settings,
            latency=latency,
            peak_memory_bytes=arena[0] if arena else None,
            memory_method="tensor arena bytes in use, reported by the board (`arena`)" if arena else None,
            energy_uj_per_inference=energy[0],
            energy_method=energy[1],
            energy_note=energy[2],
            estimate=estimate,
            notes=notes,
            raw_output=raw["transcript"],
        )

    def cleanup(self, deployment: Deployment) -> None:
        """Nothing to remove: a flashed model stays, a model loaded over serial lives in the board's RAM."""


# -- helpers ---------------------------------------------------------------------------------------

def _timed_loop_end(link: _Link) -> float | None:
    """Host time at which the board's timed loop ended: the arrival of the second m-lap-us line
    (the kit's firmware prints both stamps right after the loop; the reference firmware prints the
    second one then)."""
    laps = [t for line, t in zip(link.last_lines, link.arrivals) if line.startswith("m-lap-us-")]
    return laps[1] if len(laps) == 2 else None


def _combine_energy(readings: list[EnergyReading] | None, note: str) -> tuple[float | None, str | None, str]:
    """One figure from the per-batch meter readings: their mean, or None with the reason."""
    if readings is None:
        return None, None, note
    values = [r.uj_per_inference for r in readings if r.uj_per_inference is not None]
    if not values:
        return None, None, readings[0].note
    head = f"mean of {len(values)} batch(es): " if len(readings) > 1 else ""
    return sum(values) / len(values), "serial-meter", head + readings[0].note


def _pyserial_url(uri: TargetURI) -> tuple[str, int]:
    """`serial:///dev/ttyACM0?baud=9600` -> ("/dev/ttyACM0", 9600); other schemes keep their URL."""
    query = dict(uri.query)
    baud_text = query.pop("baud", query.pop("baudrate", "115200"))
    baud = convert_option("serial", "baud", baud_text, int, 1)
    if uri.scheme == "serial":
        if query:
            raise TargetError(f"unknown option(s) {', '.join(sorted(query))} in {uri.raw}", "serial URLs take ?baud=N")
        device = uri.path or re.sub(r"^serial://", "", uri.raw).split("?")[0]
        if not device:
            raise TargetError(f"{uri.raw} names no device", "e.g. serial:///dev/ttyACM0?baud=115200")
        return device, baud
    base = uri.raw.split("?", 1)[0]
    return (base + ("?" + urlencode(query) if query else "")), baud


def _input_size(info: TFLiteInfo) -> int:
    return sum(info.tensor(i).elements * np.dtype(info.tensor(i).dtype).itemsize for i in info.inputs)


def _input_data(info: TFLiteInfo, settings: RunSettings, seed: int) -> bytes:
    """The model's input as the bytes the board copies into its input tensor(s)."""
    tensors = [info.tensor(i) for i in info.inputs]
    if settings.input_path is None:
        rng = np.random.default_rng(seed)
        parts = []
        for t in tensors:
            dtype = np.dtype(t.dtype)
            if np.issubdtype(dtype, np.integer):
                lim = np.iinfo(dtype)
                parts.append(rng.integers(lim.min, lim.max, size=t.elements, endpoint=True, dtype=dtype))
            else:
                parts.append(rng.standard_normal(t.elements).astype(dtype))
        return b"".join(p.tobytes() for p in parts)
    if len(tensors) != 1:
        raise DataError(f"--input gives one array but the model has {len(tensors)} inputs")
    t = tensors[0]
    try:
        x = np.load(settings.input_path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read input {settings.input_path}: {e}", "pass a .npy file (numpy.save)") from None
    if x.size != t.elements:
        raise DataError(f"input {settings.input_path} has {x.size} values; the model's input {t.shape} takes "
                        f"{t.elements}")
    dtype = np.dtype(t.dtype)
    if x.dtype == dtype:
        return x.astype(dtype).tobytes()
    q = t.quantization
    if np.issubdtype(x.dtype, np.floating) and np.issubdtype(dtype, np.integer) and q and q.scale:
        lim = np.iinfo(dtype)
        xq = np.clip(np.round(x / q.scale + (q.zero_point or 0)), lim.min, lim.max)
        return xq.astype(dtype).tobytes()
    raise DataError(f"input {settings.input_path} is {x.dtype}; the model's input is {dtype.name}",
                    f"save the input as {dtype.name} (or float32 for a quantized input)")
