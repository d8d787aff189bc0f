"""Output places are checked before any long work, and the kit never writes into another tool's folder."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from kit.cli import main
from kit.core.errors import KitError
from kit.core.paths import check_output_dir, check_output_file, write_output


def test_output_file_checks(tmp_path):
    existing = tmp_path / "r.json"
    existing.write_text("keep me")
    with pytest.raises(KitError, match="already exists"):
        check_output_file(existing)
    assert check_output_file(existing, overwrite=True) == existing
    with pytest.raises(KitError, match="is a folder"):
        check_output_file(tmp_path)
    with pytest.raises(KitError, match="is not a folder"):
        check_output_file(existing / "below-a-file.json")
    assert check_output_file(tmp_path / "new" / "deeper" / "x.json").name == "x.json"
    assert existing.read_text() == "keep me" and not (tmp_path / "new").exists()


def test_output_dir_checks(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "report.md").write_text("another tool's report")
    with pytest.raises(KitError, match="not made by the kit"):
        check_output_dir(other, "manifest.json")
    assert check_output_dir(other, "manifest.json", force=True) == other
    (other / "manifest.json").write_text("{}")
    assert check_output_dir(other, "manifest.json") == other
    a_file = tmp_path / "f"
    a_file.write_text("x")
    with pytest.raises(KitError, match="not a folder"):
        check_output_dir(a_file, "manifest.json")
    with pytest.raises(KitError, match="not a folder"):
        check_output_dir(a_file / "sub", "manifest.json")


@pytest.mark.skipif(not Path("/proc/version").exists(), reason="needs a mounted /proc (read-only even for root)")
def test_unwritable_place_is_refused():
    # /proc is read-only even for root, so this holds when CI runs as root
    with pytest.raises(KitError, match="not writable"):
        check_output_file("/proc/kit-test/out.json")
    with pytest.raises(KitError, match="not writable"):
        check_output_dir("/proc/kit-test-out", "manifest.json")


def _error(capfd) -> str:
    err = capfd.readouterr().err
    assert "Traceback" not in err
    return err


def test_compress_refuses_bad_outputs_before_training(tmp_path, capfd):
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    assert main(["compress", "lenet-300-100", "--data", "digits", "-o", str(a_file)]) == 2
    assert "not a folder" in _error(capfd)
    other = tmp_path / "other"
    other.mkdir()
    (other / "report.md").write_text("another tool's report")
    assert main(["compress", "lenet-300-100", "--data", "digits", "-o", str(other)]) == 2
    assert "--force" in _error(capfd)
    assert (other / "report.md").read_text() == "another tool's report"
    assert sorted(p.name for p in other.iterdir()) == ["report.md"]
    assert main(["compress", "lenet-300-100", "--data", "digits", "--eval-samples", "0", "-o", str(tmp_path / "n")]) == 2
    assert "at least 1" in _error(capfd)


def test_sensitivity_refuses_a_file_as_folder(tmp_path, capfd):
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    assert main(["sensitivity", "lenet-300-100", "--data", "digits", "-o", str(a_file)]) == 2
    assert "not a folder" in _error(capfd)


def test_profile_json_into_a_bad_place_refused_before_measuring(tmp_path, capfd, tiny_models):
    model = tmp_path / "m.tflite"
    model.write_bytes(tiny_models.float32)
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    assert main(["profile", str(model), "--runs", "1", "--warmup", "0", "--json", str(a_file / "r.json")]) == 2
    err = _error(capfd)
    assert "not a folder" in err
    assert main(["profile", str(model), "--runs", "1", "--warmup", "0", "--json", str(tmp_path)]) == 2
    assert "is a folder" in _error(capfd)


def test_firmware_refuses_bad_baud_and_foreign_folder(tmp_path, capfd, tiny_models):
    model = tmp_path / "m.tflite"
    model.write_bytes(tiny_models.int8)
    assert main(["firmware", str(model), "-o", str(tmp_path / "fw"), "--baud", "-5"]) == 2
    assert "--baud -5" in _error(capfd)
    assert not (tmp_path / "fw").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "main.cpp").write_text("int main() {}")
    assert main(["firmware", str(model), "-o", str(other)]) == 2
    assert "not a `kit firmware` project" in _error(capfd)


@pytest.mark.slow
def test_firmware_from_a_hostile_file_name(tmp_path, tiny_models):
    from firmware_tools.project import generate_project

    model = tmp_path / "evil\n#error injected\n.tflite"
    model.write_bytes(tiny_models.int8)
    project = generate_project(model, tmp_path / "fw", methods=())
    for path in project.files:
        if path.suffix in (".h", ".cc", ".cpp"):
            text = path.read_text()
            assert not any(line.lstrip().startswith("#error") for line in text.splitlines()), path


def test_profile_json_into_a_missing_folder_is_written(tmp_path, capfd, tiny_models):
    model = tmp_path / "m.tflite"
    model.write_bytes(tiny_models.float32)
    out = tmp_path / "no" / "such" / "r.json"
    assert main(["profile", str(model), "--runs", "1", "--warmup", "0", "--json", str(out)]) == 0
    assert "Traceback" not in capfd.readouterr().err
    rows = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in strict JSON"))
    assert len(rows) == 1 and rows[0]["artifact"]["path"].endswith("m.tflite"), rows


@pytest.mark.parametrize("command", [["sensitivity", "lenet-300-100"], ["demo", "--model", "lenet-300-100"]])
def test_sensitivity_and_demo_refuse_another_tools_folder_before_training(tmp_path, capfd, command):
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.md").write_text("another tool's notes")
    assert main([*command, "--data", "digits", "-o", str(other)]) == 2
    err = capfd.readouterr().err
    assert "not made by the kit" in err and "--force" in err and "training" not in err, err
    assert sorted(p.name for p in other.iterdir()) == ["notes.md"]


def test_demo_refuses_a_run_count_before_training(tmp_path, capfd):
    assert main(["demo", "--data", "digits", "--runs", "-5", "-o", str(tmp_path / "d")]) == 2
    err = capfd.readouterr().err
    assert "runs must be >= 1" in err and "training" not in err, err
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("fraction", ["2", "0", "nan"])
def test_compress_budget_refuses_a_validation_fraction_before_training(tmp_path, capfd, fraction):
    out = tmp_path / "o"
    assert main(["compress", "lenet-300-100", "--data", "digits", "--budget", "accuracy-drop=1",
                 "--val-fraction", fraction, "-o", str(out)]) == 2
    assert "--val-fraction must be between 0 and 0.5" in _error(capfd)
    assert not out.exists()  # refused before the folder was claimed and the baseline trained


def test_write_output_makes_folders_and_turns_os_errors_into_kit_errors(tmp_path):
    assert write_output(tmp_path / "a" / "b" / "r.json", "[]").read_text() == "[]"
    with pytest.raises(KitError, match="cannot write --json file /proc/kit-x/r.json"):
        write_output("/proc/kit-x/r.json", b"x", "--json file")
