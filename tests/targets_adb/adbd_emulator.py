"""An emulated Android phone for the ADB tests: adbd's transport and sync protocols over TCP.

It speaks what a phone's adbd speaks to the adb server over wireless
debugging: 24-byte little-endian message headers (command, arg0, arg1,
data_length, data_check, magic = command ^ 0xffffffff) with CNXN / OPEN /
OKAY / WRTE / CLSE (AOSP adb `protocol.txt`), the v1 `shell:` service (raw
output, then close) and the `sync:` service (STAT, SEND/DATA/DONE, RECV,
LIST, QUIT; AOSP `SYNC.TXT`). It never asks for AUTH, as a phone that does
not require authorisation, and advertises no optional features, so the real
`adb` uses the oldest, most widely supported protocol paths.

The "phone" is a sandbox directory. `/data/local/tmp` and
`/sys/class/power_supply` in shell commands and sync paths are mapped into
it; shell commands run with the host's /bin/sh (so `taskset`, `df`, `cat`,
`/proc/cpuinfo` are the host's); `getprop` and `dumpsys battery` are small
stand-in scripts reading the sandbox; battery current, voltage and charging
state are plain files that the tests set.
"""
from __future__ import annotations

import os
import posixpath
import re
import shlex
import signal
import socket
import stat
import struct
import subprocess
import threading
from pathlib import Path

_HEADER = struct.Struct("<6I")
A_VERSION_SKIP_CHECKSUM = 0x01000001
MAX_PAYLOAD = 256 * 1024
SYNC_DATA_MAX = 64 * 1024
MAPPED = ("/data/local/tmp", "/sys/class/power_supply")
_IO_TIMEOUT_S = 60.0


def _cmd(name: bytes) -> int:
    return int.from_bytes(name, "little")


CNXN, OPEN, OKAY, WRTE, CLSE, AUTH = (_cmd(n) for n in (b"CNXN", b"OPEN", b"OKAY", b"WRTE", b"CLSE", b"AUTH"))


def pack_message(command: int, arg0: int, arg1: int, data: bytes = b"") -> bytes:
    return _HEADER.pack(command, arg0, arg1, len(data), sum(data) & 0xFFFFFFFF, command ^ 0xFFFFFFFF) + data


class EmulatedPhone:
    """The sandbox standing in for the phone's file system, properties and battery."""

    def __init__(self, root: Path, props: dict[str, str]):
        if not re.fullmatch(r"[A-Za-z0-9_./-]+", str(root)):
            raise ValueError(f"sandbox path {root} must not need shell quoting")
        self.root = root
        for prefix in MAPPED:
            (root / prefix.lstrip("/")).mkdir(parents=True, exist_ok=True)
        (root / "props").write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        self._write_tools()
        self.set_battery(status="Discharging", usb_online=False, current_now=0, voltage_now=0)

    def set_battery(self, *, status: str, usb_online: bool, current_now: int, voltage_now: int,
                    capacity: int = 80) -> None:
        battery = self.root / "sys/class/power_supply/battery"
        usb = self.root / "sys/class/power_supply/usb"
        battery.mkdir(parents=True, exist_ok=True)
        usb.mkdir(parents=True, exist_ok=True)
        for name, value in (("status", status), ("current_now", current_now), ("voltage_now", voltage_now),
                            ("capacity", capacity)):
            (battery / name).write_text(f"{value}\n")
        (usb / "online").write_text("1\n" if usb_online else "0\n")

    def host_path(self, device_path: str) -> Path | None:
        """Where a device path lives in the sandbox; None outside the mapped directories."""
        path = posixpath.normpath(device_path)
        if any(path == p or path.startswith(p + "/") for p in MAPPED):
            return Path(str(self.root) + path)
        return None

    def map_command(self, command: str) -> str:
        for prefix in MAPPED:
            command = command.replace(prefix, str(self.root) + prefix)
        return command

    def shell_env(self) -> dict[str, str]:
        return {"PATH": f"{self.root}/system/bin:/usr/bin:/bin", "HOME": str(self.root / "data/local/tmp"),
                "LANG": "C.UTF-8", "TMPDIR": str(self.root / "data/local/tmp")}

    def _write_tools(self) -> None:
        bin_dir = self.root / "system/bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        props = shlex.quote(str(self.root / "props"))
        power = shlex.quote(str(self.root / "sys/class/power_supply"))
        getprop = f"""#!/bin/sh
# stand-in for Android's getprop: the emulated phone's properties (one key=value a line)
if [ $# -eq 0 ]; then
  exec awk '{{ k = $0; sub(/=.*/, "", k); sub(/^[^=]*=/, ""); print "[" k "]: [" $0 "]" }}' {props}
fi
exec awk -v k="$1" '{{ key = $0; sub(/=.*/, "", key) }} key == k {{ sub(/^[^=]*=/, ""); v = $0 }} END {{ print v }}' {props}
"""
        dumpsys = f"""#!/bin/sh
# stand-in for Android's `dumpsys battery`, read from the emulated sysfs files
[ "$1" = battery ] || {{ echo "Can't find service: $1"; exit 0; }}
b={power}/battery
case "$(cat $b/status)" in
  Charging) code=2;; Discharging) code=3;; "Not charging") code=4;; Full) code=5;; *) code=1;;
esac
usb=false; [ "$(cat {power}/usb/online)" = 1 ] && usb=true
echo "Current Battery Service state:"
echo "  AC powered: false"
echo "  USB powered: $usb"
echo "  Wireless powered: false"
echo "  status: $code"
echo "  health: 2"
echo "  present: true"
echo "  level: $(cat $b/capacity)"
echo "  scale: 100"
echo "  voltage: $(( $(cat $b/voltage_now) / 1000 ))"
echo "  technology: Li-ion"
"""
        for name, text in (("getprop", getprop), ("dumpsys", dumpsys)):
            (bin_dir / name).write_text(text)
            (bin_dir / name).chmod(0o755)


class AdbdEmulator:
    """A TCP server that answers the adb server as a phone's adbd would.

    `drop_on_push = ".tflite"` makes it drop the connection and stop listening
    (the phone goes offline) when a file with that suffix is pushed.
    """

    def __init__(self, phone: EmulatedPhone, banner_props: dict[str, str] | None = None):
        self.phone = phone
        props = banner_props or {"ro.product.name": "prunekit_emu", "ro.product.model": "Prunekit_Emulated_Phone",
                                 "ro.product.device": "emu"}
        self.banner = ("device::" + "".join(f"{k}={v};" for k, v in props.items()) + "features=").encode()
        self.drop_on_push: str | None = None
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._connections: list[_Connection] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def serial(self) -> str:
        return f"127.0.0.1:{self.port}"

    def go_offline(self) -> None:
        """Stop listening and drop every connection, as a phone that vanished."""
        try:
            self._listener.close()
        except OSError:
            pass
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            conn.drop()

    stop = go_offline

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            conn = _Connection(sock, self)
            with self._lock:
                self._connections.append(conn)
            threading.Thread(target=conn.serve, daemon=True).start()


class _Stream:
    """One OPENed service: an inbox for the host's WRTEs and flow-controlled writes back."""

    def __init__(self, conn: "_Connection", local_id: int, remote_id: int):
        self.conn, self.local_id, self.remote_id = conn, local_id, remote_id
        self.cond = threading.Condition()
        self.inbox = bytearray()
        self.acked = True
        self.closed = False
        self.process: subprocess.Popen | None = None

    def feed(self, data: bytes) -> None:
        with self.cond:
            self.inbox += data
            self.cond.notify_all()

    def on_okay(self) -> None:
        with self.cond:
            self.acked = True
            self.cond.notify_all()

    def read_exact(self, n: int) -> bytes:
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.inbox) >= n or self.closed, timeout=_IO_TIMEOUT_S):
                raise EOFError("timed out waiting for the host")
            if len(self.inbox) < n:
                raise EOFError("stream closed")
            data = bytes(self.inbox[:n])
            del self.inbox[:n]
            return data

    def write(self, data: bytes) -> None:
        step = self.conn.max_payload
        for i in range(0, len(data), step):
            with self.cond:
                if not self.cond.wait_for(lambda: self.acked or self.closed, timeout=_IO_TIMEOUT_S):
                    raise EOFError("the host did not acknowledge a write")
                if self.closed:
                    raise EOFError("stream closed")
                self.acked = False
            self.conn.send(WRTE, self.local_id, self.remote_id, data[i:i + step])

    def close(self) -> None:
        with self.cond:
            if self.closed:
                return
            self.closed = True
            self.cond.notify_all()
        self.conn.streams.pop(self.local_id, None)
        self.conn.send(CLSE, self.local_id, self.remote_id)

    def on_remote_close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)


class _Connection:
    def __init__(self, sock: socket.socket, emulator: AdbdEmulator):
        self.sock, self.emulator, self.phone = sock, emulator, emulator.phone
        self.sock.settimeout(None)
        self.send_lock = threading.Lock()
        self.streams: dict[int, _Stream] = {}
        self.next_id = 1
        self.version = A_VERSION_SKIP_CHECKSUM
        self.max_payload = MAX_PAYLOAD

    def send(self, command: int, arg0: int, arg1: int, data: bytes = b"") -> None:
        try:
            with self.send_lock:
                self.sock.sendall(pack_message(command, arg0, arg1, data))
        except OSError:
            pass

    def drop(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def _recv_exact(self, n: int) -> bytes | None:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)

    def serve(self) -> None:
        try:
            while True:
                header = self._recv_exact(_HEADER.size)
                if header is None:
                    break
                command, arg0, arg1, length, check, magic = _HEADER.unpack(header)
                if magic != command ^ 0xFFFFFFFF or length > MAX_PAYLOAD:
                    break  # protocol.txt: an invalid header closes the connection
                data = self._recv_exact(length) if length else b""
                if data is None:
                    break
                if self.version < A_VERSION_SKIP_CHECKSUM and sum(data) & 0xFFFFFFFF != check:
                    break
                self._dispatch(command, arg0, arg1, data)
        except OSError:
            pass
        finally:
            for stream in list(self.streams.values()):
                stream.on_remote_close()
            self.sock.close()

    def _dispatch(self, command: int, arg0: int, arg1: int, data: bytes) -> None:
        if command == CNXN:
            self.version = min(arg0, A_VERSION_SKIP_CHECKSUM)
            self.max_payload = min(arg1, MAX_PAYLOAD)
            self.send(CNXN, A_VERSION_SKIP_CHECKSUM, MAX_PAYLOAD, self.emulator.banner)
        elif command == OPEN:
            self._open(arg0, data.rstrip(b"\0").decode("utf-8", "replace"))
        elif command == WRTE:
            stream = self.streams.get(arg1)
            if stream is None:
                self.send(CLSE, 0, arg0)
                return
            stream.feed(data)
            self.send(OKAY, stream.local_id, stream.remote_id)
        elif command == OKAY:
            stream = self.streams.get(arg1)
            if stream is not None:
                stream.on_okay()
        elif command == CLSE:
            stream = self.streams.pop(arg1, None)
            if stream is not None:
                stream.on_remote_close()

    def _open(self, remote_id: int, service: str) -> None:
        if service.startswith("shell:") and service != "shell:":
            handler, arg = self._shell, service[len("shell:"):]
        elif service == "sync:":
            handler, arg = self._sync, ""
        else:  # not offered: refuse the OPEN, as adbd does for unknown services
            self.send(CLSE, 0, remote_id)
            return
        local_id, self.next_id = self.next_id, self.next_id + 1
        stream = _Stream(self, local_id, remote_id)
        self.streams[local_id] = stream
        self.send(OKAY, local_id, remote_id)
        threading.Thread(target=self._run_service, args=(handler, stream, arg), daemon=True).start()

    @staticmethod
    def _run_service(handler, stream: _Stream, arg: str) -> None:
        try:
            handler(stream, arg)
        except (EOFError, OSError):
            pass
        finally:
            stream.close()

    # ---- shell: (v1: stdout and stderr together, no exit status) -----------------------

    def _shell(self, stream: _Stream, command: str) -> None:
        proc = subprocess.Popen(["/bin/sh", "-c", self.phone.map_command(command)], cwd=self.phone.root,
                                env=self.phone.shell_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        stream.process = proc
        try:
            while True:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                stream.write(chunk)
        finally:
            proc.stdout.close()
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    # ---- sync: -------------------------------------------------------------------------

    def _sync(self, stream: _Stream, _: str) -> None:
        while True:
            request = stream.read_exact(8)
            ident, length = request[:4], struct.unpack("<I", request[4:])[0]
            if ident == b"QUIT":
                return
            if length > 4096:
                self._sync_fail(stream, "path too long")
                return
            path = stream.read_exact(length).decode("utf-8", "replace")
            if ident == b"STAT":
                self._sync_stat(stream, path)
            elif ident == b"SEND":
                self._sync_send(stream, path)
            elif ident == b"RECV":
                self._sync_recv(stream, path)
            elif ident == b"LIST":
                self._sync_list(stream, path)
            else:
                self._sync_fail(stream, f"unknown sync request {ident!r}")
                return

    @staticmethod
    def _sync_fail(stream: _Stream, message: str) -> None:
        data = message.encode()
        stream.write(b"FAIL" + struct.pack("<I", len(data)) + data)

    def _sync_stat(self, stream: _Stream, path: str) -> None:
        host = self.phone.host_path(path)
        try:
            st = os.lstat(host) if host is not None else None
        except OSError:
            st = None
        values = (st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime)) if st else (0, 0, 0)
        stream.write(b"STAT" + struct.pack("<III", *values))

    def _sync_send(self, stream: _Stream, spec: str) -> None:
        path, _, mode_text = spec.rpartition(",")
        host = self.phone.host_path(path)
        mode = int(mode_text) if mode_text.isdigit() else 0o644
        failure = None if host is not None else f"open failed: Permission denied: {path}"
        out = None
        if failure is None:
            try:
                host.parent.mkdir(parents=True, exist_ok=True)  # adbd creates missing parent directories
                out = open(host, "wb")
            except OSError as e:
                failure = f"open failed: {e.strerror}"
        try:
            while True:
                chunk = stream.read_exact(8)
                ident, length = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if ident == b"DATA":
                    if self.emulator.drop_on_push and path.endswith(self.emulator.drop_on_push):
                        self.emulator.go_offline()
                        raise EOFError("dropped on purpose")
                    if length > SYNC_DATA_MAX:
                        self._sync_fail(stream, "data chunk too large")
                        raise EOFError("bad chunk")
                    data = stream.read_exact(length)
                    if out is not None:
                        out.write(data)
                elif ident == b"DONE":
                    break
                else:
                    self._sync_fail(stream, f"unexpected {ident!r} in SEND")
                    raise EOFError("bad SEND")
        finally:
            if out is not None:
                out.close()
        if failure is not None:
            self._sync_fail(stream, failure)
            return
        os.chmod(host, stat.S_IMODE(mode))
        os.utime(host, (length, length))  # DONE carries the modification time
        stream.write(b"OKAY" + struct.pack("<I", 0))

    def _sync_recv(self, stream: _Stream, path: str) -> None:
        host = self.phone.host_path(path)
        try:
            data = host.read_bytes() if host is not None else None
        except OSError:
            data = None
        if data is None:
            self._sync_fail(stream, f"open failed: No such file or directory: {path}")
            return
        for i in range(0, len(data), SYNC_DATA_MAX):
            chunk = data[i:i + SYNC_DATA_MAX]
            stream.write(b"DATA" + struct.pack("<I", len(chunk)) + chunk)
        stream.write(b"DONE" + struct.pack("<I", 0))

    def _sync_list(self, stream: _Stream, path: str) -> None:
        host = self.phone.host_path(path)
        entries = sorted(host.iterdir()) if host is not None and host.is_dir() else []
        for entry in entries:
            st = entry.lstat()
            name = entry.name.encode()
            stream.write(b"DENT" + struct.pack("<IIII", st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime),
                                               len(name)) + name)
        stream.write(b"DONE" + struct.pack("<IIII", 0, 0, 0, 0))
