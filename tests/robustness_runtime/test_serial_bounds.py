"""Hostile boards on a real pty: malformed answers, endless lines, a board that stops mid-run.

The boards are the kit's emulator (TFLite Micro on a pseudo-terminal) with one answer replaced; the host
side is the real `kit profile --target serial://…` code path.
"""
from __future__ import annotations

import time

import pytest

from firmware_tools.emulator import EmulatedBoard
from firmware_tools.protocol import ProtocolError, parse_input_format, parse_lap
from kit.core.errors import TargetError
from targets.base import RunSettings
from targets.registry import get_target
from targets.serial import MAX_LINE_BYTES, Babbling
from tests.support.shared import shared_file

KWS = "models/mlperf-tiny/kws_ref_model.tflite"
SETTINGS = RunSettings(runs=2, warmup=0, timeout_s=600)  # the default-sized timeout of a real run


class _Board(EmulatedBoard):
    """An emulated board that misbehaves on one command (its first word)."""

    def __init__(self, model, *, on: str, answer: list[str] | None = None, babble_rate: int = 0,
                 silent: bool = False, **kw):
        super().__init__(model, modelled_latency_us=1000, **kw)
        self.on, self.answer, self.babble_rate, self.silent = on, answer, babble_rate, silent

    def handle(self, command: str):
        if command.split()[:1] == [self.on] and self.answer is not None:
            yield from self.answer
            return
        yield from super().handle(command)

    def _feed(self, byte: int, port) -> bool:
        if byte == ord("%") and self._cmd.decode("ascii", "replace").split()[:1] == [self.on]:
            if self.silent:
                self._cmd.clear()
                return True
            if self.babble_rate:
                end = time.monotonic() + 120
                while not self._stop.is_set() and time.monotonic() < end:
                    try:
                        port.send(b"x" * max(1, self.babble_rate // 20))
                    except OSError:
                        return False
                    time.sleep(0.05)
                return False
        return super()._feed(byte, port)


def _profile(board: _Board, settings: RunSettings = SETTINGS, **options):
    model = shared_file(KWS)
    url = "serial://" + board.start_pty()
    started = time.monotonic()
    try:
        with get_target(url, line_timeout="0.5", **options) as target:
            target.profile(model, settings)
    finally:
        board.stop()
    return time.monotonic() - started


def test_a_malformed_input_format_is_a_protocol_error_quoting_the_line():
    bad = "m-input-format-[dtype=int8,shape=1x49x10x1,bytes=abc]"
    board = _Board(shared_file(KWS).read_bytes(), name="kws", on="input-format", answer=[bad, "m-ready"])
    with pytest.raises(TargetError) as e:
        _profile(board)
    assert bad in e.value.message and "bytes='abc' is not a byte count" in e.value.message
    assert "it had answered `name`, `profile`" in e.value.message
    assert "Traceback" not in str(e.value)


def test_a_board_streaming_without_line_breaks_fails_fast_and_says_what_it_answered():
    board = _Board(shared_file(KWS).read_bytes(), name="kws", on="infer", babble_rate=200_000)
    with pytest.raises(Babbling) as e:
        _profile(board)
    message = e.value.message
    assert f"more than {MAX_LINE_BYTES} bytes without a line break" in message, message
    assert "it had answered `name`, `profile`" in message and "`db load`" in message


def test_a_slow_stream_without_line_breaks_is_bounded_in_time():
    # 2,000 bytes/s never fills a 64 KiB line within the test; the line's time limit ends it
    board = _Board(shared_file(KWS).read_bytes(), name="kws", on="infer", babble_rate=2_000)
    t0 = time.monotonic()
    with pytest.raises(Babbling, match=r"bytes over [\d.]+ s without a line break"):
        _profile(board, baud="1000000")  # a fast line: its time limit is 64 KiB at 1 Mbit/s + 0.5 s
    assert time.monotonic() - t0 < 20


def test_a_board_that_stops_answering_is_not_reported_as_absent():
    board = _Board(shared_file(KWS).read_bytes(), name="kws", on="arena", silent=True)
    with pytest.raises(TargetError) as e:
        _profile(board)
    message = e.value.message
    assert "no MLPerf Tiny board answers" not in message
    assert "`name`" in message and "`profile`" in message, message


def test_a_board_silent_on_infer_costs_line_timeouts_not_the_run_timeout():
    # before any lap the board says m-warmup-start; silence after `infer` is a hung board, whatever timeout_s is
    board = _Board(shared_file(KWS).read_bytes(), name="kws", on="infer", silent=True)
    t0 = time.monotonic()
    with pytest.raises(TargetError) as e:
        _profile(board, RunSettings(runs=2, warmup=0, timeout_s=30))
    assert time.monotonic() - t0 < 15
    message = e.value.message
    assert "no answer to `infer 1 0`" in message and "within 0.5 s" in message, message
    assert "`db load`" in message, message


@pytest.mark.parametrize("line", [
    "m-input-format-[dtype=int8,shape=1x49x10x1,bytes=abc]",
    "m-input-format-[dtype=int8,shape=1x-49,bytes=490]",
    "m-input-format-[garbage]",
    "m-input-format-[bytes=" + "9" * 5000 + "]",
])
def test_malformed_input_format_lines(line):
    with pytest.raises(ProtocolError) as e:
        parse_input_format([line])
    assert line[:40] in e.value.message


def test_a_lap_with_thousands_of_digits_is_not_a_lap():
    assert parse_lap("m-lap-us-" + "7" * 5000) is None
    assert parse_lap("m-lap-us-123") == 123
