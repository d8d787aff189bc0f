"""Run a function in a child process with a time limit, so a crashing or spinning runtime cannot take the kit down.

The TFLM and LiteRT C++ runtimes trust the flatbuffers they are given; a damaged
model can segfault or loop forever inside them. Running the load (and the
predictions) in a child turns a signal into `RuntimeFailure` naming the
runtime, the signal and the file, and a spin into the same error after the time
limit. The child is a fresh interpreter (`python -m kit.core.isolate`), not a
fork: the parent may hold TensorFlow's threads and locks, and a fresh process
never re-runs the caller's main script the way multiprocessing's spawn does.
The call and its answer travel pickled over a pipe of their own, so whatever
the runtime prints cannot corrupt them.
"""
from __future__ import annotations

import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

from kit.core.errors import KitError, ModelError

DEFAULT_TIMEOUT_S = 60.0
_HINT = ("the file is probably damaged or uses something this runtime cannot handle; "
         "`kit inspect` shows what it contains")
_HEADER = struct.Struct("<Q")
_reply_fd: int | None = None


class RuntimeFailure(ModelError):
    """A runtime crashed (killed by a signal), exited, or did not finish within its time limit."""

    def __init__(self, message: str, hint: str | None = None, *, runtime: str = "", file: str = "",
                 how: str = ""):
        super().__init__(message, hint)
        self.runtime = runtime
        self.file = file
        self.how = how  # "SIGSEGV", "timeout", "exit 3", ...


@dataclass
class ChildException(Exception):
    """An ordinary exception raised in the child: its type name, text and traceback, as text."""

    type_name: str
    text: str
    trace: str

    def __str__(self) -> str:
        return f"{self.type_name}: {self.text}" if self.text else self.type_name


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def progress(action: str) -> None:
    """In a child: say what it is doing now (named in a crash message); restarts the parent's time limit."""
    if _reply_fd is not None:
        _send(_reply_fd, ("progress", action))


def _send(fd: int, message: tuple) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


class _Reader:
    """Length-prefixed pickled messages from a pipe, read with a deadline."""

    def __init__(self, fd: int):
        self.fd = fd
        self.buf = bytearray()

    def next(self, deadline: float) -> tuple | None:
        """The next message; None at end of file; TimeoutError past the deadline."""
        while True:
            if len(self.buf) >= _HEADER.size:
                (size,) = _HEADER.unpack_from(self.buf)
                if len(self.buf) >= _HEADER.size + size:
                    data = bytes(self.buf[_HEADER.size:_HEADER.size + size])
                    del self.buf[:_HEADER.size + size]
                    return pickle.loads(data)
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise TimeoutError
            chunk = os.read(self.fd, 1 << 20)
            if not chunk:
                return None
            self.buf += chunk


def _child_env() -> dict[str, str]:
    """The parent's environment, with its import path, so the child imports the same modules."""
    env = dict(os.environ)
    paths = [p or os.getcwd() for p in sys.path]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def run_isolated(fn: Callable[..., Any], args: tuple = (), *, runtime: str, file: str, action: str = "running",
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> Any:
    """Return `fn(*args)` computed in a child process.

    `fn` must be a module-level function. A `KitError` raised in the child is raised here as the same class;
    other exceptions become `ChildException`. A child killed by a signal, exiting without an answer, or silent
    for `timeout_s` seconds raises `RuntimeFailure`, e.g. "tflm crashed (SIGSEGV) loading m.tflite". The child
    may call `progress("running")` to rename what it is doing and restart the time limit.
    """
    name = os.path.basename(str(file)) or str(file)
    request = pickle.dumps((fn, args), protocol=pickle.HIGHEST_PROTOCOL)
    read_fd, write_fd = os.pipe()
    with tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile() as stderr:
        stdin.write(request)
        stdin.seek(0)
        try:
            proc = subprocess.Popen([sys.executable, "-m", "kit.core.isolate", str(write_fd)], stdin=stdin,
                                    stdout=subprocess.DEVNULL, stderr=stderr, pass_fds=(write_fd,),
                                    env=_child_env())
        finally:
            os.close(write_fd)
        reader = _Reader(read_fd)
        reply = None
        try:
            while True:
                try:
                    reply = reader.next(time.monotonic() + timeout_s)
                except TimeoutError:
                    proc.kill()
                    proc.wait()
                    raise RuntimeFailure(
                        f"{runtime} did not finish within {timeout_s:g} s {action} {name}",
                        "the model may be damaged (a loop that never ends) or far too large for this runtime; "
                        "`kit inspect` shows what it contains", runtime=runtime, file=str(file),
                        how="timeout") from None
                if reply is None or reply[0] != "progress":
                    break
                action = reply[1]
        finally:
            os.close(read_fd)
            if proc.poll() is None:
                try:
                    proc.wait(10 if reply is not None else 30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if reply is None:
            stderr.seek(0)
            tail = " | ".join(stderr.read().decode("utf-8", "replace").strip().splitlines()[-2:])
            code = proc.returncode
            how = signal_name(-code) if code < 0 else f"exit {code}"
            verb = "crashed" if code < 0 else "ended without an answer"
            raise RuntimeFailure(f"{runtime} {verb} ({how}) {action} {name}" + (f": {tail}" if tail else ""),
                                 _HINT, runtime=runtime, file=str(file), how=how)
    if reply[0] == "ok":
        return reply[1]
    if reply[0] == "kit":
        try:
            error = reply[1](reply[2], reply[3])
        except TypeError:
            error = KitError(reply[2], reply[3])
        raise error
    raise ChildException(reply[1], reply[2], reply[3])


def _child_main(fd: int) -> None:
    global _reply_fd
    _reply_fd = fd
    try:
        fn, args = pickle.loads(sys.stdin.buffer.read())
        value = fn(*args)
    except KitError as e:
        reply: tuple = ("kit", type(e), e.message, e.hint)
    except BaseException as e:  # anything else travels as text; the parent raises it as ChildException
        reply = ("exception", type(e).__name__, str(e), traceback.format_exc())
    else:
        reply = ("ok", value)
    try:
        _send(fd, reply)
    except Exception as e:  # an unpicklable value
        _send(fd, ("exception", type(e).__name__, f"cannot return the result: {e}", ""))
    os.close(fd)


if __name__ == "__main__":
    from kit.core import isolate  # the module callers import (this file runs as __main__, a separate copy)

    isolate._child_main(int(sys.argv[1]))
