"""A board whose sshd has no SFTP subsystem (Dropbear, minimal images): files go over the exec channel."""
from __future__ import annotations

import sys

import paramiko
import pytest

from kit.core.errors import TargetError
from targets.base import RunSettings
from targets.registry import get_target
from tests.support.loopback_sshd import SSHD, LoopbackSSHD
from tests.support.shared import shared_file

pytestmark = pytest.mark.skipif(not SSHD.exists(), reason="/usr/sbin/sshd is absent: apt-get install openssh-server")


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    b = LoopbackSSHD(tmp_path_factory.mktemp("sshd-nosftp"))
    config = b.config.read_text()
    assert "Subsystem sftp" in config
    b.config.write_text(config.replace("Subsystem sftp internal-sftp\n", ""))
    with b:  # __enter__ starts it
        yield b


def connect(board, **options):
    return get_target(board.uri, None, identity=str(board.user_key_path), known_hosts=str(board.known_hosts),
                      python=sys.executable, **options)


def test_the_board_really_has_no_sftp(board):
    client = paramiko.SSHClient()
    client.load_host_keys(str(board.known_hosts))
    client.connect("127.0.0.1", port=board.port, key_filename=str(board.user_key_path), look_for_keys=False,
                   allow_agent=False)
    try:
        with pytest.raises((paramiko.SSHException, EOFError)):
            client.open_sftp()
    finally:
        client.close()


def test_profile_with_op_profiling_copies_over_the_exec_channel(board):
    model = shared_file("models/mlperf-tiny/ad01_int8.tflite")
    with connect(board, op_profiling=True) as target:
        result = target.profile(model, RunSettings(runs=10, warmup=1, timeout_s=120))
    assert result.latency.count == 10 and result.device.runtime == "ai_edge_litert"
    assert "RSS" in result.memory_method
    ops = result.op_profile
    assert ops and ops["by_type"] and any("Fully Connected" in t["op"] for t in ops["by_type"]), ops


def test_a_failed_copy_names_the_real_cause(board, tmp_path):
    local = tmp_path / "m.tflite"
    local.write_bytes(b"\0" * 1000)
    with connect(board) as target, pytest.raises(TargetError) as e:
        target._upload([(local, "/nonexistent-kit-dir/m.tflite", "the model")])
    assert "through `cat` failed" in e.value.message and "No such file or directory" in e.value.message
    assert "not writable" in e.value.hint and "free space" not in e.value.hint
