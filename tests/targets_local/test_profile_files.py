"""Device and MCU profile files are checked as strictly as a profile written inline in farm.toml:
the same mistakes are refused, naming the file, the line and the key."""
from __future__ import annotations

import re

import pytest

from firmware_tools.estimate import load_mcu_profile
from kit.core.errors import KitError
from kit.farm.inventory import parse_farm_text
from targets.profiles import load_profile

PROFILE = 'description = "a board"\nkind = "linux"\nformats = ["int8"]\nthreads = [1, 2]\n'
MCU = ('name = "m"\ncore = "Cortex-M0"\nclock_mhz = 48\nactive_power_mw = 10\nbase = "cortex-m4f-120"\n'
       'cycle_factor = 2.0\n')


def _refused(load, path, text: str) -> tuple[str, str]:
    """The error message, and the line of `text` it names."""
    path.write_text(text)
    with pytest.raises(KitError) as e:
        load(path)
    message = str(e.value)
    m = re.search(rf"{re.escape(str(path))}, line (\d+): ", message)
    assert m, message
    return message, text.splitlines()[int(m.group(1)) - 1]


@pytest.mark.parametrize("bad, words", [
    (('kind = "linux"', 'kind = "androd"'), ["`kind` is 'androd'", "did you mean 'android'?"]),
    (("threads = [1, 2]", 'threads = "x"'), ["`threads` must be a list of thread counts >= 1"]),
    (("threads = [1, 2]", "threads = [0]"), ["`threads` must be a list"]),
    (('formats = ["int8"]', 'formats = ["int9"]'), ["`formats` holds the unknown format 'int9'"]),
    (('description = "a board"', "description = 3"), ["`description` must be str"]),
    (('description = "a board"', 'colour = "red"'), ["`colour` is an unknown key"]),
])
def test_device_profile_file_mistakes_name_the_line(tmp_path, bad, words):
    old, new = bad
    message, line = _refused(load_profile, tmp_path / "board.toml", PROFILE.replace(old, new))
    assert line == new, message
    for w in words:
        assert w in message, message


@pytest.mark.parametrize("bad, key, problem", [
    (('kind = "linux"', 'kind = "androd"'), "kind", "is 'androd', not one of linux, android, edgetpu, mcu"),
    (("threads = [1, 2]", 'threads = "x"'), "threads", "must be a list of thread counts >= 1, got 'x'"),
])
def test_file_and_inline_profiles_are_refused_alike(tmp_path, bad, key, problem):
    old, new = bad
    text = PROFILE.replace(old, new)
    file_message, _ = _refused(load_profile, tmp_path / "board.toml", text)
    assert f"`{key}` {problem}" in file_message, file_message
    farm = f'[profiles.board]\n{text}\n[[device]]\nname = "b"\nuri = "local"\nprofile = "board"\n'
    with pytest.raises(KitError) as e:
        parse_farm_text(farm, "farm.toml", tmp_path)
    line = PROFILE.splitlines().index(old) + 2  # after the [profiles.board] header
    assert f"farm.toml, line {line}: `profiles.board.{key}` {problem}" in str(e.value), str(e.value)


@pytest.mark.parametrize("bad, words", [
    (("clock_mhz = 48", 'clock_mhz = "fast"'), ["`clock_mhz` must be float"]),
    (("clock_mhz = 48", "clock_mhz = 0"), ["`clock_mhz` is 0.0, out of range"]),
    (("cycle_factor = 2.0", "cycle_factor = [2]"), ["`cycle_factor` must be float"]),
    (('core = "Cortex-M0"', "core = 0"), ["`core` must be str"]),
    (("cycle_factor = 2.0", "cycle_factor = 2.0\n[cycles]\nconv_mc = 3"), ["`cycles.conv_mc` is not a known key",
                                                                           "did you mean `conv_mac`?"]),
])
def test_mcu_profile_file_mistakes_name_the_line(tmp_path, bad, words):
    old, new = bad
    message, line = _refused(load_mcu_profile, tmp_path / "mcu.toml", MCU.replace(old, new))
    assert line == new.splitlines()[-1], message
    for w in words:
        assert w in message, message


def test_good_files_load(tmp_path):
    (tmp_path / "board.toml").write_text(PROFILE)
    p = load_profile(tmp_path / "board.toml")
    assert p.name == "board" and p.kind == "linux" and p.threads == [1, 2] and p.formats == ["int8"]
    (tmp_path / "mcu.toml").write_text(MCU)
    m = load_mcu_profile(tmp_path / "mcu.toml")
    assert m.name == "m" and m.clock_mhz == 48.0 and m.cycles["op"] == 2 * load_mcu_profile("cortex-m4f-120").cycles["op"]
