"""Per-device progress while a farm run is under way.

On a terminal: one live line per device (what it runs, how many jobs it has
done, or why it was taken out), redrawn in place. Elsewhere (CI logs, pipes):
one line per finished job and per device state change, so logs stay readable.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


class Progress:
    def __init__(self, devices: list[str], total: int, stream: TextIO | None = None, live: bool | None = None,
                 enabled: bool = True):
        self.stream = stream or sys.stderr
        self.live = (self.stream.isatty() if live is None else live) and enabled
        self.enabled = enabled
        self.total = total
        self.done = self.failed = 0
        self._state = {d: "waiting" for d in devices}
        self._count = {d: 0 for d in devices}
        self._lock = threading.Lock()
        self._drawn = 0
        self._last_draw = 0.0
        self._t0 = time.monotonic()

    def state(self, device: str, text: str) -> None:
        with self._lock:
            changed = self._state.get(device) != text
            self._state[device] = text
            if self.live:
                self._draw()
            elif changed and self.enabled and text.startswith("unhealthy"):
                self._line(f"[{device}] {text}")

    def finished(self, device: str, label: str, ok: bool, detail: str) -> None:
        with self._lock:
            self._count[device] = self._count.get(device, 0) + 1
            if ok:
                self.done += 1
            else:
                self.failed += 1
            if self.live:
                self._draw(force=True)
            elif self.enabled:
                mark = "ok  " if ok else "FAIL"
                self._line(f"[{self.done + self.failed}/{self.total}] {mark} {device}: {label}: {detail}")

    def note(self, text: str) -> None:
        with self._lock:
            if self.enabled:
                self._clear()
                self._line(text)

    def close(self) -> None:
        with self._lock:
            if self.live:
                self._draw(force=True)
                self.stream.write("\n")
                self.stream.flush()
                self._drawn = 0

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def _clear(self) -> None:
        if self.live and self._drawn:
            self.stream.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        width = max(len(d) for d in self._state) if self._state else 0
        lines = [f"  {d.ljust(width)}  {self._count[d]:>3} done  {s}"[:160] for d, s in self._state.items()]
        lines.append(f"  {self.done + self.failed}/{self.total} jobs ({self.failed} failed), "
                     f"{now - self._t0:.0f} s")
        self._clear()
        self.stream.write("\n".join(lines) + "\n")
        self.stream.flush()
        self._drawn = len(lines)
