"""edgetpu+ssh:// through a real OpenSSH server: the Edge TPU runtime is probed on the board before anything runs."""
from __future__ import annotations

import ctypes.util
import getpass
import glob
import sys

import pytest

from tests.support.shared import shared_file
from kit.core.errors import TargetError
from tests.support.loopback_sshd import SSHD, LoopbackSSHD
from targets.base import RunSettings
from targets.registry import get_target

pytestmark = [
    pytest.mark.skipif(not SSHD.exists(), reason="/usr/sbin/sshd is absent: apt-get install openssh-server"),
    pytest.mark.skipif(ctypes.util.find_library("edgetpu") is not None, reason="this board has libedgetpu"),
]


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    with LoopbackSSHD(tmp_path_factory.mktemp("sshd")) as b:
        yield b


def connect(board, **options):
    uri = board.uri.replace("ssh://", "edgetpu+ssh://")
    return get_target(uri, "coral-dev-board", identity=str(board.user_key_path), known_hosts=str(board.known_hosts),
                      python=sys.executable, **options)


def test_board_without_edgetpu_runtime_is_refused_before_deploying(board):
    before = set(glob.glob("/tmp/kit-ssh.*"))
    with connect(board) as target:
        info = target.device_info()
        with pytest.raises(TargetError) as e:
            target.profile(shared_file("models/mlperf-tiny/ad01_int8.tflite"), RunSettings(runs=2))
    assert f"libedgetpu.so.1 cannot be loaded on {getpass.getuser()}@127.0.0.1:{board.port}" in e.value.message
    assert info.runtime == "ai_edge_litert" and "cannot open shared object file" in info.extra["edgetpu_runtime"]
    assert set(glob.glob("/tmp/kit-ssh.*")) == before


def test_uncompiled_model_is_refused_over_ssh(board, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no edgetpu_compiler on this host
    with connect(board, delegate_library=ctypes.util.find_library("c")) as target, pytest.raises(TargetError) as e:
        target.profile(shared_file("models/mlperf-tiny/ad01_int8.tflite"), RunSettings(runs=2))
    assert "is not compiled for the Edge TPU" in e.value.message
