"""`kit farm check`: what this machine holds for a device is checked too (a phone's benchmark_model binary), and
`--json` prints the same health as strict JSON."""
from __future__ import annotations

import json
import shutil
import socket

import pytest

from kit.cli import main

ADB = shutil.which("adb")


def _refused_port(host: str) -> int:
    """A port nothing listens on at `host` (bound, then released)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@pytest.mark.skipif(ADB is None, reason="adb is absent: apt-get install adb")
def test_farm_check_names_a_missing_or_broken_benchmark_binary(tmp_path, capsys):
    # 127.0.0.2: adb refuses to start a server for a non-local address, so the phones are simply unreachable
    port = _refused_port("127.0.0.2")
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "not-elf").write_text("#!/bin/sh\necho benchmark_model\n")
    shutil.copyfile(shutil.which("true"), tools / "benchmark_model")  # an ELF executable
    phones = {"pixel-1": "tools/missing", "pixel-2": "tools/not-elf", "pixel-3": "tools/benchmark_model"}
    text = '[[device]]\nname = "host-0"\nuri = "local"\nprofile = "host"\n'
    for i, (name, binary) in enumerate(phones.items()):
        text += (f'\n[[device]]\nname = "{name}"\nuri = "adb://SERIAL{i}@127.0.0.2:{port}"\nprofile = "pixel-8"\n'
                 f'options = {{ benchmark_binary = "{binary}" }}\n')
    (tmp_path / "farm.toml").write_text(text)

    assert main(["farm", "check", "--farm", str(tmp_path / "farm.toml"), "--timeout", "20", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    health = {d["device"]: d for d in report["devices"]}
    assert health["host-0"]["ready"] and health["host-0"]["problems"] == []
    assert f"benchmark_binary {tools / 'missing'} does not exist" in health["pixel-1"]["problems"][0]
    assert "no ELF header" in health["pixel-2"]["problems"][0]
    assert health["pixel-3"]["problems"] == []  # the binary is fine; the phone itself is not there
    assert all(not health[p]["reachable"] and "127.0.0.2" in health[p]["error"] for p in phones)
    assert report["unreachable"] == list(phones) and report["ok"] is False

    # the table says the same in its error column
    assert main(["farm", "check", "--farm", str(tmp_path / "farm.toml"), "--select", "pixel-1"]) == 1
    out = capsys.readouterr().out
    assert "does not exist" in out and "1 of 1 device(s) unreachable: pixel-1" in out


def test_farm_check_json_of_a_reachable_device(tmp_path, capsys):
    (tmp_path / "farm.toml").write_text('[[device]]\nname = "host-0"\nuri = "local"\nprofile = "host"\n')
    assert main(["farm", "check", "--farm", str(tmp_path / "farm.toml"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    [host] = report["devices"]
    assert report["ok"] and host["reachable"] and host["ready"] and host["runtime"] == "ai_edge_litert"
    assert host["free_storage_bytes"] > 0
