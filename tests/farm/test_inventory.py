"""farm.toml and pipeline.toml: valid files parse; broken ones fail with the file, the line and what to do."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from kit.core.toml import FarmError, TomlFile
from kit.farm.inventory import load_farm, parse_farm_text
from kit.farm.spec import load_pipeline, parse_pipeline

GOOD = """
[farm]
name = "lab"

[profiles.m4]
kind = "mcu"
formats = ["int8"]

[[device]]
name = "pixel-1"
uri = "adb://35211FDH2000XY@hub-1:5037"
profile = "pixel-8"
class = "phone-mid"
chipset = "tensor-g3"
tags = ["android", "usb-hub-1"]
options = { benchmark_binary = "tools/benchmark_model" }

[[device]]
name = "pi-1"
uri = "ssh://pi@10.0.0.7"
profile = "raspberry-pi-5"
tags = ["linux"]

[[device]]
name = "nucleo-1"
uri = "rfc2217://serial-host:4001"
profile = "m4"
class = "mcu-m4"

[[device]]
name = "host"
uri = "local"
profile = "host"
"""


def test_valid_farm(tmp_path):
    farm = parse_farm_text(GOOD, "farm.toml", tmp_path)
    assert [d.name for d in farm.devices] == ["pixel-1", "pi-1", "nucleo-1", "host"]
    pixel, pi, nucleo, host = farm.devices
    assert pixel.device_class == "phone-mid" and pixel.profile.kind == "android" and pixel.concurrency == 1
    assert pixel.options["benchmark_binary"] == str(tmp_path / "tools/benchmark_model")  # relative to farm.toml
    assert pi.device_class == "raspberry-pi-5"  # class defaults to the profile
    assert nucleo.profile.kind == "mcu" and nucleo.profile.formats == ["int8"]
    assert [d.name for d in farm.select(["linux"])] == ["pi-1"]
    assert [d.name for d in farm.select(["tensor-*", "mcu-m4"])] == ["pixel-1", "nucleo-1"]
    assert {d.device_class for d in farm.devices} == {"phone-mid", "raspberry-pi-5", "mcu-m4", "host"}


def _error(text: str, tmp_path: Path) -> str:
    with pytest.raises(FarmError) as e:
        parse_farm_text(text, "farm.toml", tmp_path)
    return str(e.value)


def _reported_line(message: str, text: str) -> str:
    """The line of `text` that the error message points at ("line N" or TOML's "(at line N, column M)")."""
    m = re.search(r"line (\d+)", message)
    assert m, message
    return text.splitlines()[int(m.group(1)) - 1]


@pytest.mark.parametrize("broken, expected", [
    # corrupted TOML: the parser's position is passed on
    (GOOD.replace('uri = "local"', 'uri = "local'), ["farm.toml is not valid TOML", "@uri = \"local"]),
    (GOOD.replace("[[device]]\nname = \"pi-1\"", "[[device]\nname = \"pi-1\""), ["not valid TOML"]),
    (GOOD + "\x00garbage = 1\n", ["not valid TOML"]),
    # wrong keys and values point at the line and the key
    (GOOD.replace('class = "mcu-m4"', 'clas = "mcu-m4"'), ["@clas = ", "`device[2].clas` is not a known key",
                                                            "did you mean `class`?"]),
    (GOOD.replace('profile = "raspberry-pi-5"', 'profile = "raspberry-pi-9"'),
     ["@raspberry-pi-9", "`device[1].profile`", "no device profile 'raspberry-pi-9'"]),
    (GOOD.replace('uri = "ssh://pi@10.0.0.7"', 'uri = "ftp://pi@10.0.0.7"'),
     ["@ftp://", "unknown scheme 'ftp'", "known:"]),
    (GOOD.replace('uri = "ssh://pi@10.0.0.7"', 'uri = "ssh://pi@10.0.0.7:99999"'), ["invalid port"]),
    (GOOD.replace('name = "pi-1"', 'name = "pixel-1"'), ["repeats the device name 'pixel-1'"]),
    (GOOD.replace('rfc2217://serial-host:4001', 'ssh://pi@10.0.0.7'), ["names the same device as 'pi-1'"]),
    (GOOD.replace('name = "host"', 'name = "host; rm -rf /"'), ["`device[3].name`", "letters, digits"]),
    (GOOD.replace('formats = ["int8"]', 'formats = ["int9"]'), ["`profiles.m4.formats`", "unknown format 'int9'"]),
    (GOOD.replace('tags = ["linux"]', 'tags = "linux", 3'), ["not valid TOML"]),
    (GOOD.replace('tags = ["linux"]', 'concurrency = 0'), ["`device[1].concurrency`", "out of range"]),
    (GOOD.replace('uri = "local"\n', ''), ["`device[3].uri` is missing"]),
    ("[farm]\nname = \"empty\"\n", ["`device` is missing"]),
])
def test_broken_farm_is_a_clear_error(tmp_path, broken, expected):
    message = _error(broken, tmp_path)
    for part in expected:
        if part.startswith("@"):  # the line the message names holds this text
            assert part[1:] in _reported_line(message, broken), message
        else:
            assert part in message, message


def test_missing_farm_file(tmp_path):
    with pytest.raises(FarmError, match="does not exist"):
        load_farm(tmp_path / "nope.toml")


def test_select_names_the_unknown_pattern(tmp_path):
    farm = parse_farm_text(GOOD, "farm.toml", tmp_path)
    with pytest.raises(FarmError) as e:
        farm.select(["phone-low"])
    assert "'phone-low'" in e.value.message and "phone-mid" in e.value.hint


def _pipeline(tmp_path: Path, text: str):
    (tmp_path / "a.tflite").write_bytes(b"not read at parse time")
    return parse_pipeline(TomlFile(text, "pipeline.toml", "pipeline file"), tmp_path)


PIPELINE = """
name = "release"
farm = "farm.toml"
select = ["phone-mid", "mcu-m4"]
objective = "latency"

[[artifact]]
path = "a.tflite"
accuracy = 0.93

[settings]
runs = 20
[settings.class.mcu-m4]
runs = 5

[scheduler]
spread = "pool"
max_attempts = 3

[constraints]
min_accuracy = 0.9
[constraints.class.mcu-m4]
max_latency_ms = 200
max_flash_bytes = 262144
"""


def test_valid_pipeline(tmp_path):
    spec = _pipeline(tmp_path, PIPELINE)
    assert spec.out == tmp_path / "runs/release" and spec.store == tmp_path / "runs/release/results.db"
    assert spec.run_settings("phone-mid").runs == 20 and spec.run_settings("mcu-m4").runs == 5
    c = spec.constraints_for("mcu-m4")
    assert (c.min_accuracy, c.max_latency_ms, c.max_flash_bytes) == (0.9, 200, 262144)
    assert spec.constraints_for("phone-mid").max_latency_ms is None
    assert spec.spread == "pool" and spec.max_attempts == 3 and spec.objective == "latency"


@pytest.mark.parametrize("change, expected", [
    (('spread = "pool"', 'spread = "pol"'), ["`scheduler.spread` is 'pol'", "did you mean 'pool'?"]),
    (("max_flash_bytes = 262144", "max_flash_bytes = -1"), ["`constraints.class.mcu-m4.max_flash_bytes`", "range"]),
    (("min_accuracy = 0.9", "min_accuracy = 90"), ["`constraints.min_accuracy`", "0 to 1"]),
    (('path = "a.tflite"', 'path = "b.tflite"'), ["`artifact[0].path`", "no such file"]),
    (("runs = 5", "runs = 0"), ["`settings.class.mcu-m4.runs`"]),
    (('farm = "farm.toml"\n', ""), ["`farm` is missing"]),
    (("[scheduler]", "[schedule]"), ["`schedule` is not a known key", "did you mean `scheduler`?"]),
])
def test_broken_pipeline_is_a_clear_error(tmp_path, change, expected):
    with pytest.raises(FarmError) as e:
        _pipeline(tmp_path, PIPELINE.replace(*change))
    for part in expected:
        assert part in str(e.value), str(e.value)


def test_pipeline_needs_something_to_profile(tmp_path):
    (tmp_path / "p.toml").write_text('farm = "farm.toml"\n')
    with pytest.raises(FarmError, match="nothing to profile"):
        load_pipeline(tmp_path / "p.toml")


@pytest.mark.parametrize("damage", ["truncate", "binary", "empty"])
def test_corrupted_farm_file_through_the_cli(tmp_path, capsys, damage):
    from kit.cli import main

    farm = tmp_path / "farm.toml"
    data = GOOD.encode()
    farm.write_bytes({"truncate": data[: len(data) * 2 // 3], "binary": b"\x89PNG\r\n\x1a\n\x00\xff" + data,
                      "empty": b""}[damage])
    (tmp_path / "a.tflite").write_bytes(b"x")
    (tmp_path / "pipeline.toml").write_text('farm = "farm.toml"\n[[artifact]]\npath = "a.tflite"\n')
    for argv in (["farm", "check", "--farm", str(farm)], ["run", str(tmp_path / "pipeline.toml")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "Traceback" not in err
        assert str(farm) in err and ("not valid TOML" in err or "cannot read" in err or "`device` is missing" in err)
