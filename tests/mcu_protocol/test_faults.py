"""Faults on a real pty: garbage, lost lines, a board that resets, a port that vanishes, no board at all.

The emulated boards use a modelled clock, so the only correct latency is known
exactly: a recovery must give that number, anything else must be a clear error.
"""
from __future__ import annotations

import time

import pytest

from tests.support.shared import shared_file
from firmware_tools.emulator import Fault
from firmware_tools.protocol import ProtocolError
from kit.core.errors import TargetError
from .mcu_boards import KWS, emulated
from targets.base import RunSettings
from targets.registry import get_target
from targets.serial import BoardReset, PortLost, _check_infer

LATENCY_US = 3000
SETTINGS = RunSettings(runs=5, warmup=1, timeout_s=30)
#: seconds within which every fault must be resolved (recovered or reported)
BOUND_S = 15


def _profile_with(*faults: Fault, **options):
    model = shared_file(KWS)
    with emulated(model, modelled_latency_us=LATENCY_US) as (board, url), \
            get_target(url, line_timeout="0.5", **options) as target:
        for fault in faults:
            board.inject(fault)
        started = time.monotonic()
        try:
            return target.profile(model, SETTINGS)
        finally:
            assert time.monotonic() - started < BOUND_S


@pytest.mark.parametrize("fault", [
    Fault("garbage", "profile"),
    Fault("garbage", "infer"),
    Fault("garbage", "db"),
])
def test_garbage_bytes_are_skipped(fault):
    result = _profile_with(fault)
    assert result.latency.mean_us == LATENCY_US
    assert "? '" in result.raw_output  # the junk line was seen and set aside


@pytest.mark.parametrize("fault", [
    Fault("drop-line", "infer", line="m-lap-us"),        # a lap lost: the batch is run again
    Fault("drop-line", "infer", line="m-results"),       # results lost: run again
    Fault("drop-line", "profile", line="m-model"),
    Fault("drop-line", "db", line="m-load-done"),        # the input is loaded again from the start
    Fault("drop-line", "infer", line="m-ready"),         # complete answer, lost m-ready: accepted
    Fault("drop-line", "infer", line="m-lap-us", times=2),
])
def test_lost_lines_are_recovered_with_the_right_number(fault):
    result = _profile_with(fault)
    assert result.latency.mean_us == LATENCY_US and result.latency.count == SETTINGS.runs
    assert "retrying" in result.raw_output or "loading again" in result.raw_output \
        or "m-ready lost" in result.raw_output


def test_a_line_lost_every_time_ends_in_a_clear_error():
    with pytest.raises(TargetError, match="no complete answer to `infer 1 0` in 3 attempts"):
        _profile_with(Fault("drop-line", "infer", line="m-lap-us", times=100))


@pytest.mark.parametrize("fault", [
    Fault("reset", "infer", line="m-infer-start"),      # mid-batch
    Fault("reset", "infer"),                            # before answering
    Fault("reset", "db", line="m-[Expecting"),          # while loading the input
])
def test_board_reset_mid_run_is_a_clear_error(fault):
    with pytest.raises(BoardReset, match="reset"):
        _profile_with(fault)


def test_m_ready_out_of_sequence_means_reset():
    with pytest.raises(BoardReset, match="m-ready in the middle"):
        _check_infer(10, 1)(["m-warmup-start-1", "m-warmup-done", "m-infer-start-10"])
    with pytest.raises(ProtocolError):
        _check_infer(10, 1)([])


@pytest.mark.parametrize("command", ["infer", "db", "profile"])
def test_port_vanishing_is_a_clear_error(command):
    with pytest.raises(PortLost, match="disappeared"):
        _profile_with(Fault("vanish", command))


def test_a_target_reconnects_after_the_board_comes_back():
    model = shared_file(KWS)
    with emulated(model, modelled_latency_us=LATENCY_US) as (board, url), \
            get_target(url, line_timeout="0.5") as target:
        board.inject(Fault("reset", "infer", line="m-lap-us"))
        with pytest.raises(BoardReset):
            target.profile(model, SETTINGS)
        assert target.profile(model, SETTINGS).latency.mean_us == LATENCY_US


def test_no_board_behind_the_port():
    started = time.monotonic()
    with pytest.raises(TargetError, match="no MLPerf Tiny board answers on loop://"):
        with get_target("loop://", connect_timeout="1", line_timeout="0.2") as target:
            target.device_info()
    assert time.monotonic() - started < 5
    with pytest.raises(TargetError, match="cannot open the serial port /dev/nonexistent-tty"):
        get_target("serial:///dev/nonexistent-tty").device_info()


def test_microcontroller_settings_are_checked():
    with pytest.raises(TargetError, match="one thread without delegates"):
        _profile_with_settings(RunSettings(runs=1, threads=2))


def _profile_with_settings(settings: RunSettings):
    model = shared_file(KWS)
    with emulated(model) as (_, url), get_target(url) as target:
        return target.profile(model, settings)
