"""Every target declares its options in one dataclass: unknown keys and wrong types are refused by name,
good values arrive converted from the text `--option KEY=VALUE` gives."""
from __future__ import annotations

import subprocess
import sys

import pytest

from kit.core.errors import TargetError
from targets.adb import ADBTarget
from targets.local import LocalTarget
from targets.serial import SerialTarget
from targets.ssh import SSHTarget
from targets.uri import parse_target_uri

#: (target class, URI; built without connecting)
TARGETS = {
    "local": (LocalTarget, "local"),
    "ssh": (SSHTarget, "ssh://pi@board.invalid"),
    "serial": (SerialTarget, "loop://"),
    "adb": (ADBTarget, "adb://SERIAL"),
}


def _build(kind: str, **options):
    cls, uri = TARGETS[kind]
    return cls(parse_target_uri(uri), None, **options)


@pytest.mark.parametrize("kind", sorted(TARGETS))
def test_unknown_option_is_refused_with_the_known_ones(kind):
    with pytest.raises(TargetError) as e:
        _build(kind, foo="bar")
    assert "unknown option" in e.value.message and "foo" in e.value.message and kind in e.value.message
    known = {"local": "op_profiling", "ssh": "identity", "serial": "line_timeout", "adb": "benchmark_binary"}[kind]
    assert known in e.value.hint


def test_close_misspelling_is_named():
    with pytest.raises(TargetError) as e:
        _build("serial", retires="3")
    assert "did you mean retries" in e.value.hint


@pytest.mark.parametrize("kind, key, value, words", [
    ("ssh", "connect_timeout", "soon", "connect_timeout='soon' is not a float"),
    ("ssh", "trust_on_first_use", "perhaps", "is not true or false"),
    ("ssh", "meter_baud", "0", "must be >= 1"),
    ("serial", "retries", "many", "retries='many' is not a int"),
    ("serial", "line_timeout", "0.001", "must be >= 0.05"),
    ("adb", "op_profiling", "maybe", "is not true or false"),
    ("adb", "command_timeout_s", "a minute", "is not a float"),
])
def test_wrong_type_is_refused(kind, key, value, words):
    with pytest.raises(TargetError) as e:
        _build(kind, **{key: value})
    assert words in e.value.message and kind in e.value.message


def test_good_options_arrive_converted():
    ssh = _build("ssh", trust_on_first_use="yes", connect_timeout="7.5", python="/opt/py/bin/python3",
                 meter="/dev/ttyUSB0", meter_baud="9600")
    assert ssh.trust_on_first_use is True and ssh.connect_timeout == 7.5 and ssh.python == "/opt/py/bin/python3"
    assert ssh.options.meter == "/dev/ttyUSB0" and ssh.meter_baud == 9600
    serial = _build("serial", retries="5", line_timeout="0.5", baud="9600", board_model="kws")
    assert (serial.retries, serial.line_timeout, serial.baud, serial.board_model) == (5, 0.5, 9600, "kws")
    adb = _build("adb", op_profiling="off", command_timeout_s="5", benchmark_binary="bm")
    assert adb.op_profiling is False and adb.command_timeout_s == 5.0 and adb.benchmark_binary == "bm"
    # farm.toml gives TOML values rather than text
    assert _build("serial", retries=0, line_timeout=1).line_timeout == 1.0
    assert _build("local").options is not None


def test_cli_unknown_option_is_a_clear_error(tiny_tflite):
    """`kit profile MODEL --option foo=bar` names the option instead of failing with a TypeError."""
    proc = subprocess.run([sys.executable, "-m", "kit", "profile", str(tiny_tflite), "--option", "foo=bar"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "unknown option(s): foo do not apply to local targets" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
