"""A test farm of real endpoints: emulated MCU boards (`kit emulate` processes on ptys), the host, a loopback SSH board.

Each emulated board is its own process running TFLite Micro behind the MLPerf
Tiny protocol on a pseudo-terminal, so killing it is a board dropping off the
bus. The SSH board is a real OpenSSH server on 127.0.0.1 (tests/support/loopback_sshd.py).
"""
from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

from tests.support.loopback_sshd import SSHD, LoopbackSSHD
from tests.support.shared import ROOT

KIT = [sys.executable, "-m", "kit"]
#: small int8 models every runtime here loads (TFLM and LiteRT), under ../shared
MODELS = {
    "kws": "models/mlperf-tiny/kws_ref_model.tflite",
    "speech": "models/tflm-examples/micro_speech_quantized.tflite",
    "hello": "models/tflm-examples/hello_world_int8.tflite",
    "resnet": "models/mlperf-tiny/pretrainedResnet_quant.tflite",  # 98 KB: more than the test boards' flash
}
#: the test boards' flash: holds every model above but resnet
FLASH_BYTES = "80000"
MCU_PROFILE = """
[profiles.emulated-m4]
kind = "mcu"
formats = ["int8"]
description = "TFLite Micro emulator (host CPU timing)"
"""


class Emulator:
    """`kit emulate MODEL --pty` in its own process."""

    def __init__(self, model: Path, *options: str):
        self.proc = subprocess.Popen([*KIT, "emulate", str(model), "--pty", *options], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("serial://"):
            self.kill()
            raise RuntimeError(f"kit emulate printed {line!r}")
        self.uri = line

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


@contextlib.contextmanager
def emulators(n: int, model: Path, *options: str) -> Iterator[list[Emulator]]:
    boards: list[Emulator] = []
    try:
        for _ in range(n):
            boards.append(Emulator(model, *options))
        yield boards
    finally:
        for b in boards:
            b.kill()


def ssh_board_class():
    """LoopbackSSHD, or None with the reason."""
    if not SSHD.exists():
        return None, f"{SSHD} is absent: apt-get install openssh-server"
    return LoopbackSSHD, ""


def farm_toml(mcus: list[str], local: int = 1, ssh=None, mcu_options: str = "",
              mcu_classes: list[str] | None = None) -> str:
    """farm.toml text: emulated boards in class `mcu` (or `mcu_classes[i]`), `local` entries in class `host`, the
    SSH board in `board`."""
    parts = ['[farm]\nname = "test-farm"\n', MCU_PROFILE]
    for i, uri in enumerate(mcus):
        cls = mcu_classes[i] if mcu_classes else "mcu"
        parts.append(f'[[device]]\nname = "mcu-{i}"\nuri = "{uri}"\nprofile = "emulated-m4"\nclass = "{cls}"\n'
                     f'tags = ["mcu", "emulated"]\n{mcu_options}\n')
    for i in range(local):
        parts.append(f'[[device]]\nname = "host-{i}"\nuri = "local"\nprofile = "host"\nclass = "host"\n'
                     f'tags = ["linux"]\n')
    if ssh is not None:
        parts.append(f'[[device]]\nname = "ssh-board"\nuri = "{ssh.uri}"\nprofile = "raspberry-pi-4"\n'
                     f'class = "board"\ntags = ["linux", "ssh"]\n'
                     f'options = {{ identity = "{ssh.user_key_path}", known_hosts = "{ssh.known_hosts}", '
                     f'python = "{sys.executable}" }}\n')
    return "\n".join(parts)


def pipeline_toml(artifacts: list[Path], extra: str = "", accuracies: dict[str, float] | None = None,
                  runs: int = 10) -> str:
    accuracies = accuracies or {}
    arts = "".join(f'[[artifact]]\npath = "{p}"\n' + (f"accuracy = {accuracies[p.stem]}\n" if p.stem in accuracies
                                                       else "") + "\n" for p in artifacts)
    return f'name = "test-run"\nfarm = "farm.toml"\nout = "run"\n\n{arts}[settings]\nruns = {runs}\nwarmup = 1\n' \
           f'timeout_s = 60\n\n{extra}'

