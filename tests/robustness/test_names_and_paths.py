"""Names from farm files, recipes and model files never reach the file system or generated C unchecked."""
from __future__ import annotations

from pathlib import Path

import pytest

from kit.core.errors import KitError
from kit.core.paths import component_problem, find_collision, safe_component
from kit.core.toml import FarmError, TomlFile
from kit.farm.inventory import parse_farm_text
from kit.farm.spec import parse_pipeline


@pytest.mark.parametrize("name", ["../../x", "/etc/x", "a/b", "a\\b", "..", ".", "", "  ", "-h", "a\nb", "a\x00b",
                                  "x" * 200, " padded"])
def test_unsafe_names_are_refused(name):
    assert component_problem(name) is not None
    with pytest.raises(KitError, match="becomes a file or folder name"):
        safe_component(name, "device class")


@pytest.mark.parametrize("name", ["phone-mid", "mcu_m4", "v1.2", "Pixel 8"])
def test_ordinary_names_pass(name):
    assert safe_component(name, "device class") == name


def test_collisions_ignore_case():
    assert find_collision(["a", "b", "A"]) == ("a", "A")
    assert find_collision(["a", "b"]) is None


FARM = """
[[device]]
name = "host"
uri = "local"
profile = "host"
class = {cls}
"""


@pytest.mark.parametrize("cls", ['"../../x"', '"/tmp/abs"', '"-rf"', '"a\\nb"', '""'])
def test_farm_device_class_that_escapes_is_refused(tmp_path, cls):
    with pytest.raises(FarmError) as e:
        parse_farm_text(FARM.format(cls=cls), "farm.toml", tmp_path)
    assert "farm.toml, line 6" in str(e.value) and "device class" in str(e.value)


def test_farm_classes_differing_in_case_are_refused(tmp_path):
    text = FARM.format(cls='"Phone"') + FARM.format(cls='"phone"').replace('"host"\nuri', '"host2"\nuri')
    text = text.replace('uri = "local"', 'uri = "ssh://pi@10.0.0.9"', 1)
    with pytest.raises(FarmError, match="shares its export file"):
        parse_farm_text(text, "farm.toml", tmp_path)


def test_valid_farm_still_parses(tmp_path):
    farm = parse_farm_text(FARM.format(cls='"phone-mid"'), "farm.toml", tmp_path)
    assert farm.devices[0].device_class == "phone-mid"


def _pipeline(tmp_path: Path, text: str):
    return parse_pipeline(TomlFile(text, "pipeline.toml", "pipeline file"), tmp_path)


def _recipe(tmp_path: Path, file: str, name: str) -> str:
    (tmp_path / file).write_text(f'name = "{name}"\n[prune]\nfinal_sparsity = 0.5\n')
    return file


def test_recipe_name_that_escapes_is_refused(tmp_path):
    r = _recipe(tmp_path, "evil.toml", "../../../x")
    text = f'farm = "farm.toml"\n[model]\npath = "lenet5"\ndata = "digits"\nrecipes = ["{r}"]\n'
    with pytest.raises(FarmError, match="path separator"):
        _pipeline(tmp_path, text)


def test_two_recipes_with_one_folder_are_refused(tmp_path):
    a, b = _recipe(tmp_path, "a.toml", "small"), _recipe(tmp_path, "b.toml", "small")
    text = f'farm = "farm.toml"\n[model]\npath = "lenet5"\ndata = "digits"\nrecipes = ["{a}", "{b}"]\n'
    with pytest.raises(FarmError, match="share one compress folder"):
        _pipeline(tmp_path, text)
    c = _recipe(tmp_path, "c.toml", "large")
    spec = _pipeline(tmp_path, text.replace(f'"{b}"', f'"{c}"'))
    assert len(spec.model.recipes) == 2


def test_pipeline_name_that_escapes_is_refused(tmp_path):
    text = 'name = "../x"\nfarm = "farm.toml"\n[model]\npath = "lenet5"\ndata = "digits"\n'
    with pytest.raises(FarmError, match="run name becomes a folder"):
        _pipeline(tmp_path, text)


def test_model_file_name_cannot_inject_c(tmp_path):
    from firmware_tools.c_array import c_identifier, comment_text, render_model_array

    label = "m\n#error injected\n// x \\"
    header, source = render_model_array(b"\x01\x02", source_label=label)
    assert "#error" not in "\n".join(line for line in header.splitlines() if not line.startswith("//"))
    assert all(not line.startswith("#error") for line in header.splitlines())
    assert "\\" not in comment_text(label) and "\n" not in comment_text(label)
    assert c_identifier("9 model-v2.tflite") == "_9_model_v2_tflite"
    assert c_identifier("a\nb").isidentifier()
