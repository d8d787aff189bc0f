"""Read-only commands on real damaged results stores: a clear error with a hint, and the file left as it was.

The store comes from a real `kit run` (one local device, one small model); each test copies it and damages
the copy the way a crash, a full disk or a hand edit would.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from kit.cli import main
from kit.farm.store import ResultsStore, StoreError
from tests.support.shared import shared_file

COMMANDS = (["results"], ["report"], ["export", "--android", "{tmp}/assets"])


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    model = shared_file("models/tflm-examples/hello_world_int8.tflite")
    d = tmp_path_factory.mktemp("farm")
    (d / "farm.toml").write_text('[farm]\nname = "t"\n\n[[device]]\nname = "host-0"\nuri = "local"\n'
                                 'profile = "host"\nclass = "host"\n')
    (d / "pipeline.toml").write_text(f'name = "t-run"\nfarm = "farm.toml"\nout = "run"\n\n[[artifact]]\n'
                                     f'path = "{model}"\n\n[settings]\nruns = 3\nwarmup = 1\ntimeout_s = 60\n')
    proc = subprocess.run([sys.executable, "-m", "kit", "run", str(d / "pipeline.toml")], cwd=d,
                          capture_output=True, text=True, timeout=300, env=None)
    assert proc.returncode == 0, proc.stderr
    db = d / "run" / "results.db"
    con = sqlite3.connect(db)  # fold the WAL into the file, so that damage to the file is damage to the data
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.execute("PRAGMA journal_mode=DELETE")
    con.close()
    assert not (d / "run" / "results.db-wal").exists()
    return d / "run"


@pytest.fixture
def run(pristine, tmp_path) -> Path:
    """A copy of the run whose run.json names the copy's store."""
    d = Path(shutil.copytree(pristine, tmp_path / "run"))
    plan = json.loads((d / "run.json").read_text())
    plan["store"] = str(d / "results.db")
    (d / "run.json").write_text(json.dumps(plan))
    return d


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def _each_command(run: Path, tmp_path: Path, capfd, hint: bool = True) -> list[str]:
    """Run results, report and export on `run`; each must exit 2 with a message; return the messages."""
    messages = []
    for command in COMMANDS:
        argv = [a.replace("{tmp}", str(tmp_path)) for a in command]
        assert main([argv[0], str(run), *argv[1:]]) == 2, argv
        err = capfd.readouterr().err
        assert "Traceback" not in err and err.startswith("error: ") and ("hint:" in err or not hint), err
        messages.append(err)
    return messages


def test_the_intact_store_reads_and_is_not_modified(run, tmp_path, capfd):
    before = _digest(run / "results.db")
    assert main(["results", str(run)]) == 0
    assert "1 row(s)" in capfd.readouterr().out
    assert _digest(run / "results.db") == before


def test_a_missing_store_is_an_error_and_is_not_created(run, tmp_path, capfd):
    (run / "results.db").unlink()
    for err in _each_command(run, tmp_path, capfd, hint=False):
        assert "results store" in err and ("is missing" in err or "does not exist" in err), err
    assert not (run / "results.db").exists()


def test_a_zero_byte_store_is_an_error_and_stays_zero_bytes(run, tmp_path, capfd):
    (run / "results.db").write_bytes(b"")
    for err in _each_command(run, tmp_path, capfd):
        assert "is empty (0 bytes)" in err
    assert (run / "results.db").stat().st_size == 0
    assert not (run / "results.db-wal").exists()


def test_a_file_that_is_not_sqlite(run, tmp_path, capfd):
    (run / "results.db").write_text("id,latency\n1,2\n")
    for err in _each_command(run, tmp_path, capfd):
        assert "is not an SQLite results store" in err and "integrity_check" in err


def test_a_damaged_page_gives_the_integrity_check_hint(run, tmp_path, capfd):
    db = run / "results.db"
    con = sqlite3.connect(db)
    page_size = con.execute("PRAGMA page_size").fetchone()[0]
    root = con.execute("SELECT rootpage FROM sqlite_master WHERE name = 'measurements'").fetchone()[0]
    con.close()
    data = bytearray(db.read_bytes())
    start = (root - 1) * page_size
    data[start:start + 64] = b"\xff" * 64  # the b-tree page header of the measurements table
    db.write_bytes(bytes(data))
    before = _digest(db)
    for err in _each_command(run, tmp_path, capfd):
        assert "is damaged" in err and "PRAGMA integrity_check" in err, err
    assert _digest(db) == before


def test_a_schema_version_that_is_not_a_number(run, tmp_path, capfd):
    con = sqlite3.connect(run / "results.db")
    con.execute("UPDATE meta SET value = 'one' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    for err in _each_command(run, tmp_path, capfd):
        assert "schema version 'one', not a whole number" in err


@pytest.mark.parametrize("column, value", [("latency_median_us", "'fast'"), ("latency_count", "2.5"),
                                           ("peak_memory_bytes", "x'00ff'"), ("latency_mean_us", "9e999")])
def test_a_wrongly_typed_row_is_damage_not_a_figure(run, tmp_path, capfd, column, value):
    con = sqlite3.connect(run / "results.db")
    con.execute(f"UPDATE measurements SET {column} = {value}")
    con.commit()
    con.close()
    for err in _each_command(run, tmp_path, capfd):
        assert f"holds {column} = " in err and "in measurements row" in err, err


def test_a_killed_invocation_is_marked_interrupted_when_the_run_resumes(tmp_path):
    with ResultsStore(tmp_path / "r.db") as store:
        store.begin("inv-1", "night", planned=4, skipped=0)  # then the process is killed: never ended
        store.begin("other", "another-run", planned=1, skipped=0)
        assert store.begin("inv-2", "night", planned=4, skipped=1) == 1
        store.end("inv-2", "finished")
        status = {i["id"]: i["status"] for i in store.invocations()}
    assert status == {"inv-1": "interrupted", "other": "running", "inv-2": "finished"}


def test_a_read_only_store_refuses_writes(run):
    with ResultsStore(run / "results.db", read_only=True) as store:
        assert len(store.measurements()) == 1
        with pytest.raises(StoreError, match="read-only"):
            store.begin("x", "t-run", 1, 0)



def test_unwritable_outputs_of_results_and_report_are_clear_errors(run, tmp_path, capfd):
    for argv in (["results", str(run), "--csv", str(tmp_path)], ["results", str(run), "--csv", "/proc/kit.csv"],
                 ["report", str(run), "-o", str(tmp_path)], ["report", str(run), "-o", "/proc/kit.html"]):
        assert main(argv) == 2, argv
        err = capfd.readouterr().err
        assert err.startswith("error: ") and "hint:" in err, err


@pytest.mark.parametrize("flag", ["--android", "--firmware"])
def test_export_into_an_unwritable_place_is_a_clear_error(run, tmp_path, capfd, flag):
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    for place, why in (("/proc/kit-assets", "not writable"), (str(a_file), "not a folder")):
        assert main(["export", str(run), flag, place]) == 2, place
        err = capfd.readouterr().err
        assert err.startswith("error: ") and why in err and "Traceback" not in err, err
    assert a_file.read_text() == "x"


def test_a_run_whose_export_cannot_be_written_is_refused_before_any_job(tmp_path, capfd):
    model = shared_file("models/tflm-examples/hello_world_int8.tflite")
    (tmp_path / "farm.toml").write_text('[farm]\nname = "t"\n\n[[device]]\nname = "host-0"\nuri = "local"\n'
                                        'profile = "host"\nclass = "host"\n')
    (tmp_path / "pipeline.toml").write_text(f'name = "t"\nfarm = "farm.toml"\nout = "run"\n\n[[artifact]]\n'
                                            f'path = "{model}"\n\n[export]\nandroid = "/proc/kit-assets"\n')
    assert main(["run", str(tmp_path / "pipeline.toml")]) == 2
    err = capfd.readouterr().err
    assert "[export] android folder /proc/kit-assets" in err and "not writable" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing measured, nothing stored
