"""A virtual microcontroller board that speaks the MLPerf Tiny serial protocol.

What is real: the model runs in the TensorFlow Lite Micro Python runtime
(`tflite_micro.python.tflite_micro.runtime`, the same C++ kernels and arena
allocator as the firmware), with a fixed tensor arena and a flash limit that
refuse models that would not fit; the bytes travel over a real pseudo-terminal
(`pty.openpty`) or a TCP socket, so the host uses pyserial exactly as with a
board. What is emulated: the board itself. `m-lap-us-…` stamps are the host's
`time.perf_counter_ns()` as a 32-bit microsecond counter — the latency of TFLM on
the host CPU, not of a microcontroller — unless `modelled_latency_us` is given,
in which case a virtual clock advances by that many microseconds per inference
(e.g. from a cycle model of a named MCU) and the board says so in `m-profile`.
The board always names itself `prunekit-emulator` in `m-name-dut-[…]`.
Models are checked with `read_tflite` and then run in this process. With
`probe_in_child=True` (what `kit emulate` uses) every model, flashed or loaded
over the line, is first instantiated and invoked once in a child process with a
time limit, so a model that crashes or hangs TFLM is refused with the signal
named instead of taking the board down; without it, as on a real board, such a
model takes the board down and the host sees its port vanish.

With `extensions=False` it answers the kit's extra commands (model load, arena,
input-format) with `e-[Unknown command: …]`, like a board running the MLPerf
Tiny reference firmware. Faults can be injected for tests: drop a line, prepend garbage bytes, reset
mid-answer, or vanish (close the port).
"""
from __future__ import annotations

import os
import pty
import re
import select
import socket
import tempfile
import threading
import time
import tty
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from firmware_tools.protocol import EMULATOR_VENDOR, model_id
from kit.core.errors import KitError, ModelError
from kit.core.isolate import DEFAULT_TIMEOUT_S, run_isolated
from kit.core.tflite_file import read_tflite

FIRMWARE = "prunekit TFLM emulator 1"
DEFAULT_ARENA_BYTES = 512 * 1024
DEFAULT_FLASH_BYTES = 1024 * 1024
DEFAULT_INPUT_CAPACITY = 64 * 1024
#: longest command accepted; the host's 32-byte hex chunks need 69
COMMAND_SIZE = 1024
FAULT_KINDS = ("drop-line", "garbage", "reset", "vanish")
#: commands beyond the MLPerf Tiny reference firmware's; `extensions=False` answers them as unknown
EXTENSIONS = ("model", "arena", "input-format")
_GARBAGE = b"\xff\x00\x13#q~noise\r\n\xfe\x7fz\x80"
_STDERR_LOCK = threading.Lock()


@dataclass
class Fault:
    """Misbehave once (or `times` times) while answering `command` (its first word).

    `drop-line`: omit the first answer line starting with `line`;
    `garbage`: send noise bytes (one junk line, then junk glued to the first answer line);
    `reset`: reboot right after the line starting with `line` (or before answering);
    `vanish`: close the port instead of answering.
    """

    kind: str
    command: str
    line: str = ""
    times: int = 1

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {self.kind!r}; use one of {', '.join(FAULT_KINDS)}")


class _Clock:
    """Microsecond timestamps: host time, or a virtual clock advanced per inference."""

    def __init__(self, modelled_latency_us: float | None):
        self.modelled_latency_us = modelled_latency_us
        self._virtual_us = 0.0

    def now_us(self) -> int:
        if self.modelled_latency_us is None:
            return (time.perf_counter_ns() // 1000) % (1 << 32)
        return int(self._virtual_us) % (1 << 32)

    def inference_done(self) -> None:
        if self.modelled_latency_us is not None:
            self._virtual_us += self.modelled_latency_us


class _Model:
    """One model instantiated in the TFLM runtime with the board's arena."""

    def __init__(self, data: bytes, name: str, arena_bytes: int, flash_bytes: int):
        from tflite_micro.python.tflite_micro import runtime

        if len(data) > flash_bytes:
            raise ModelError(f"model {name} is {len(data)} bytes; the board's flash holds {flash_bytes}",
                             "compress the model or emulate a board with more flash (--flash-bytes)")
        info = read_tflite(data)
        try:
            self.interpreter = runtime.Interpreter.from_bytes(data, arena_size=arena_bytes)
        except Exception as e:  # the runtime raises RuntimeError/ValueError, or worse on odd models
            raise ModelError(f"model {name} does not run in a {arena_bytes}-byte TFLM arena: {e}",
                             "give the board a larger arena (--arena-bytes) or use ops TFLite Micro supports")
        self.id = model_id(name, data)
        self.inputs = [self.interpreter.get_input_details(i) for i in range(len(info.inputs))]
        self.outputs = [self.interpreter.get_output_details(i) for i in range(len(info.outputs))]
        self.input_bytes = sum(int(np.prod(d["shape"])) * np.dtype(d["dtype"]).itemsize for d in self.inputs)
        self.set_input(bytes(self.input_bytes))
        self.interpreter.invoke()  # the recording allocator's figures are complete after one invoke
        self.arena_used = _recorded_arena_bytes(self.interpreter)

    def set_input(self, data: bytes) -> None:
        offset = 0
        for i, d in enumerate(self.inputs):
            dtype = np.dtype(d["dtype"])
            n = int(np.prod(d["shape"])) * dtype.itemsize
            self.interpreter.set_input(np.frombuffer(data[offset:offset + n], dtype).reshape(d["shape"]), i)
            offset += n

    def results(self) -> list[float]:
        """All outputs, flattened and dequantized (what the reference firmware's th_results prints)."""
        values: list[float] = []
        for i, d in enumerate(self.outputs):
            out = np.asarray(self.interpreter.get_output(i)).reshape(-1)
            q = d["quantization_parameters"]
            if np.issubdtype(out.dtype, np.integer) and len(q["scales"]) == 1:
                out = (out.astype(np.float64) - float(q["zero_points"][0])) * float(q["scales"][0])
            values += [float(v) for v in out]
        return values

    def input_format(self) -> str:
        dtypes = {np.dtype(d["dtype"]).name for d in self.inputs}
        shapes = "+".join("x".join(str(int(s)) for s in d["shape"]) for d in self.inputs)
        return f"dtype={'+'.join(sorted(dtypes))},shape={shapes},bytes={self.input_bytes}"


def _recorded_arena_bytes(interpreter) -> int | None:
    """Total the TFLM recording allocator reports (it prints to C stderr, so fd 2 is captured briefly)."""
    with _STDERR_LOCK, tempfile.TemporaryFile() as tmp:
        saved = os.dup(2)
        try:
            os.dup2(tmp.fileno(), 2)
            interpreter.print_allocations()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        m = re.search(rb"Arena allocation total (\d+) bytes", tmp.read())
    return int(m.group(1)) if m else None


def _probe(data: bytes, name: str, arena_bytes: int, flash_bytes: int) -> int | None:
    """In a child: instantiate and invoke the model once as the board would; the arena it used."""
    return _Model(data, name, arena_bytes, flash_bytes).arena_used


def probe_in_child(data: bytes, name: str, arena_bytes: int, flash_bytes: int,
                   timeout_s: float = DEFAULT_TIMEOUT_S) -> int | None:
    """Instantiate the model in a child process first: ModelError (naming the signal) if it crashes or hangs TFLM."""
    return run_isolated(_probe, (data, name, arena_bytes, flash_bytes), runtime="tflm", file=name,
                        action="loading", timeout_s=timeout_s)


class EmulatedBoard:
    """A board running `model` in TFLite Micro; serve it on a pseudo-terminal or a TCP port."""

    def __init__(self, model: str | Path | bytes, *, name: str | None = None,
                 arena_bytes: int = DEFAULT_ARENA_BYTES, flash_bytes: int = DEFAULT_FLASH_BYTES,
                 input_capacity: int = DEFAULT_INPUT_CAPACITY, modelled_latency_us: float | None = None,
                 extensions: bool = True, probe_in_child: bool = False):
        self._file_name = None
        if isinstance(model, bytes):
            data, name = model, name or "model"
        else:
            path = Path(model)
            if not path.is_file():
                raise ModelError(f"model file {path} does not exist")
            data, name = path.read_bytes(), name or path.stem
            self._file_name = path.name
        if modelled_latency_us is not None and modelled_latency_us <= 0:
            raise KitError("the modelled latency must be > 0 µs")
        self.arena_bytes, self.flash_bytes, self.input_capacity = arena_bytes, flash_bytes, input_capacity
        self.extensions = extensions
        self.probe_in_child = probe_in_child
        self._probed: set[bytes] = set()
        self._flash = (data, name)
        self._clock = _Clock(modelled_latency_us)
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._fds: list[int] = []
        self._listener: socket.socket | None = None
        self.model = self._instantiate(data, name)
        self._reboot_state()

    # -- state ---------------------------------------------------------------------------------

    def _instantiate(self, data: bytes, name: str) -> _Model:
        if self.probe_in_child and data not in self._probed:
            read_tflite(data)  # a clear reader error first, without a child
            shown = (self._file_name or name) if (data, name) == self._flash else name
            probe_in_child(data, shown, self.arena_bytes, self.flash_bytes)
            self._probed.add(data)  # a reset re-flashes it without a new probe
        return _Model(data, name, self.arena_bytes, self.flash_bytes)

    def _reboot_state(self) -> None:
        self._input = bytearray()
        self._input_size = 0
        self._model_buf = bytearray()
        self._model_size = 0
        self._results: list[float] | None = None
        self._cmd = bytearray()
        self._cmd_overflow = False

    def inject(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def _pending_fault(self, command: str) -> Fault | None:
        with self._lock:
            return next((f for f in self._faults if f.command == command and f.times > 0), None)

    def _consume(self, fault: Fault) -> None:
        with self._lock:
            fault.times -= 1

    # -- protocol --------------------------------------------------------------------------------

    @property
    def profile_line(self) -> str:
        timing = "host timing" if self._clock.modelled_latency_us is None else \
            f"modelled latency {self._clock.modelled_latency_us:g} us"
        return f"m-profile-[{FIRMWARE}, {timing}]"

    def boot_lines(self) -> list[str]:
        return ["m-timestamp-mode-performance", "m-init-done", "m-ready"]

    def handle(self, command: str) -> Iterator[str]:
        """Lines answering one command (without its `%`), `m-ready` last; runs inferences lazily."""
        words = command.split()
        verb = words[0] if words else ""
        if verb in EXTENSIONS and not self.extensions:
            yield f"e-[Unknown command: {verb}]"
        elif not verb:
            pass  # an empty command is a no-op
        elif verb == "name":
            yield f"m-name-dut-[{EMULATOR_VENDOR}]"
        elif verb == "profile":
            yield self.profile_line
            yield f"m-model-[{self.model.id}]"
        elif verb == "timestamp":
            yield f"m-lap-us-{self._clock.now_us()}"
        elif verb == "db":
            yield from self._buffer_command(words, model=False)
        elif verb == "model":
            yield from self._buffer_command(words, model=True)
        elif verb == "infer":
            yield from self._infer(words[1:])
        elif verb == "results":
            yield self._results_line() if self._results is not None else "e-[No results: run infer first]"
        elif verb == "arena":
            if self.model.arena_used is not None:
                yield f"m-arena-used-{self.model.arena_used}"
            yield f"m-arena-size-{self.arena_bytes}"
        elif verb == "input-format":
            yield f"m-input-format-[{self.model.input_format()}]"
        else:
            yield f"e-[Unknown command: {_printable(verb)}]"
        yield "m-ready"

    def _buffer_command(self, words: list[str], model: bool) -> Iterator[str]:
        verb = words[0]
        cap = self.flash_bytes if model else self.input_capacity
        if len(words) < 2:
            yield f"e-[Command '{verb}' requires a subcommand]"
        elif words[1] == "load":
            size = _uint(words[2]) if len(words) == 3 else None
            if not size:
                yield f"e-[Command '{verb} load' requires a number of bytes > 0]"
            elif size > cap:
                what = "flash" if model else "input buffer"
                yield f"e-[{verb} load {size} exceeds the {cap} bytes of {what}]"
            else:
                if model:
                    self._model_buf, self._model_size = bytearray(), size
                else:
                    self._input, self._input_size = bytearray(), size
                yield f"m-[Expecting {size} bytes]"
        else:
            buf, size = (self._model_buf, self._model_size) if model else (self._input, self._input_size)
            try:
                chunk = bytes.fromhex(words[1]) if len(words) == 2 else None
            except ValueError:
                chunk = None
            if size == 0:
                yield f"e-[Buffer not allocated: send '{verb} load N' first]"
            elif chunk is None:
                yield "e-[Invalid hex data]"
            elif len(buf) + len(chunk) > size:
                yield f"e-[{len(buf) + len(chunk)} bytes overflow the {size} announced by '{verb} load']"
            else:
                buf += chunk
                if len(buf) == size:
                    yield from (self._install_model() if model else iter(["m-load-done"]))

    def _install_model(self) -> Iterator[str]:
        data = bytes(self._model_buf)
        self._model_buf, self._model_size = bytearray(), 0
        try:
            self.model = self._instantiate(data, "serial")
        except KitError as e:
            yield f"e-[Model rejected: {_printable(e.message)}]"
            return
        self._input, self._input_size, self._results = bytearray(), 0, None
        yield "m-model-load-done"
        yield f"m-model-[{self.model.id}]"

    def _infer(self, args: list[str]) -> Iterator[str]:
        n = _uint(args[0]) if args else 1
        w = _uint(args[1]) if len(args) > 1 else 10
        if not n:
            yield "e-[Inference iterations must be >0]"
            return
        if w is None:
            yield "e-[Inference warmup must be >=0]"
            return
        if self._input_size == 0 or len(self._input) != self._input_size:
            yield f"e-[No input loaded: got {len(self._input)} of {self._input_size} bytes]"
            return
        if self._input_size != self.model.input_bytes:
            yield f"e-[Input has {self._input_size} bytes, the model takes {self.model.input_bytes}]"
            return
        self.model.set_input(bytes(self._input))
        yield f"m-warmup-start-{w}"
        for _ in range(w):
            self._invoke()
        yield "m-warmup-done"
        yield f"m-infer-start-{n}"
        start = self._clock.now_us()
        for _ in range(n):
            self._invoke()
        end = self._clock.now_us()  # both stamps are sent after the loop so that serial output is not timed
        yield f"m-lap-us-{start}"
        yield f"m-lap-us-{end}"
        yield "m-infer-done"
        # TFLM reuses the input tensor's arena memory for later activations, so the timed loop
        # (input copied once, as in the MLPerf Tiny reference) leaves it clobbered: the reported
        # results come from one more, untimed inference on a fresh copy of the input
        self.model.set_input(bytes(self._input))
        self.model.interpreter.invoke()
        self._results = self.model.results()
        yield self._results_line()

    def _invoke(self) -> None:
        self.model.interpreter.invoke()
        self._clock.inference_done()

    def _results_line(self) -> str:
        return "m-results-[" + ",".join(f"{v:.6g}" for v in self._results or []) + "]"

    # -- transport -------------------------------------------------------------------------------

    def start_pty(self) -> str:
        """Serve on a new pseudo-terminal; return the path pyserial opens (e.g. /dev/pts/3)."""
        master, slave = pty.openpty()
        tty.setraw(slave)  # no echo, no newline translation, before anyone reads the banner
        self._fds += [master, slave]  # the slave stays open so that host reconnects see no hangup
        path = os.ttyname(slave)
        self._start(lambda: self._serve(_FdPort(master)))
        return path

    def start_tcp(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Serve on a TCP port (one client at a time), for `socket://host:port` targets; return the address."""
        listener = socket.create_server((host, port))
        listener.settimeout(0.2)
        self._listener = listener
        self._start(self._serve_tcp)
        return listener.getsockname()[:2]

    def _start(self, target: Callable[[], None]) -> None:
        if self._thread is not None:
            raise KitError("the emulated board is already serving")
        self._thread = threading.Thread(target=target, name="emulated-board", daemon=True)
        self._thread.start()

    def _serve_tcp(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except (socket.timeout, OSError):
                continue
            with conn:
                self._serve(_SocketPort(conn))
            self._reboot_state()  # a new client sees a freshly booted board

    def _serve(self, port: "_FdPort | _SocketPort") -> None:
        try:
            port.send(_lines(self.boot_lines()))
            while not self._stop.is_set():
                data = port.recv()
                if data is None:
                    continue
                if not data:
                    return
                for byte in data:
                    if not self._feed(byte, port):
                        return
        except OSError:
            return  # the port went away (the host closed it, or a `vanish` fault)

    def _feed(self, byte: int, port: "_FdPort | _SocketPort") -> bool:
        """Accumulate one received byte; answer on `%`. False when the board vanished."""
        if byte in (0x0A, 0x0D):
            return True
        if byte != ord("%"):
            if len(self._cmd) < COMMAND_SIZE:
                self._cmd.append(byte)
            else:
                self._cmd_overflow = True
            return True
        command = self._cmd.decode("ascii", "replace").strip()
        overflow = self._cmd_overflow
        self._cmd, self._cmd_overflow = bytearray(), False
        if overflow:
            port.send(_lines([f"e-[Command too long: the limit is {COMMAND_SIZE} characters]", "m-ready"]))
            return True
        verb = command.split()[0] if command.split() else ""
        fault = self._pending_fault(verb)
        if fault and (fault.kind in ("vanish", "garbage") or not fault.line):
            self._consume(fault)
            if fault.kind == "vanish":
                self._vanish(port)
                return False
            if fault.kind == "garbage":
                port.send(_GARBAGE)
            elif fault.kind == "reset":
                self._reset(port)
                return True
            fault = None
        for line in self.handle(command):
            hit = fault is not None and line.startswith(fault.line)
            if hit:
                self._consume(fault)
            if hit and fault.kind == "drop-line":
                fault = None
                continue
            port.send(_lines([line]))
            if hit and fault.kind == "reset":
                self._reset(port)
                return True
        return True

    def _reset(self, port: "_FdPort | _SocketPort") -> None:
        """Reboot: RAM state and any model loaded over serial are lost; the flashed model comes back."""
        time.sleep(0.05)
        self._reboot_state()
        self.model = self._instantiate(*self._flash)
        port.send(_lines(["", "TFLM board booting", *self.boot_lines()]))

    def _vanish(self, port: "_FdPort | _SocketPort") -> None:
        """The board disappears: its port closes (a pty master or a TCP connection) and it stops serving."""
        self._stop.set()
        port.close()
        self._close_all()

    @property
    def serving(self) -> bool:
        """True while the board answers (False after `stop()` or a `vanish` fault)."""
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()

    def stop(self) -> None:
        """Stop serving and close the port. Safe to call twice."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._close_all()

    def _close_all(self) -> None:
        for f in self._fds:
            try:
                os.close(f)
            except OSError:
                pass
        self._fds = []
        if self._listener is not None:
            self._listener.close()

    def __enter__(self) -> "EmulatedBoard":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _FdPort:
    """The board's end of a pseudo-terminal (its master file descriptor)."""

    def __init__(self, fd: int):
        self.fd = fd

    def recv(self) -> bytes | None:
        """Received bytes, b"" at end of file, None after 0.1 s of silence."""
        ready, _, _ = select.select([self.fd], [], [], 0.1)
        return os.read(self.fd, 4096) if ready else None

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


class _SocketPort:
    """The board's end of a TCP connection."""

    def __init__(self, conn: socket.socket):
        self.conn = conn
        conn.settimeout(0.1)

    def recv(self) -> bytes | None:
        try:
            return self.conn.recv(4096)
        except socket.timeout:
            return None

    def send(self, data: bytes) -> None:
        self.conn.sendall(data)

    def close(self) -> None:
        self.conn.close()


def _lines(lines: list[str]) -> bytes:
    return "".join(f"{line}\r\n" for line in lines).encode("ascii", "replace")


def _uint(text: str) -> int | None:
    """A non-negative decimal integer, or None (no atoi surprises: "12x" is not 12)."""
    return int(text) if text.isdigit() and len(text) < 10 else None


def _printable(text: str) -> str:
    return "".join(c if 0x20 <= ord(c) < 0x7F and c not in "[]" else "?" for c in text)[:64]
