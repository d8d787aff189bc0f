"""`kit run` killed with SIGKILL (or stopped with Ctrl-C) mid-run, then run again: only unfinished jobs run,
no measurement is lost and none is doubled."""
from __future__ import annotations

import signal
import sqlite3
import subprocess
import time

import pytest

from tests.support.processes import ctrl_c_enabled
from tests.support.shared import shared_file
from .farm_fixtures import KIT, MODELS, ROOT, emulators, farm_toml, pipeline_toml

pytestmark = pytest.mark.slow  # farm runs stopped and started again

JOBS = 12  # 3 artifacts x (3 boards + 1 local)


@pytest.fixture(scope="module")
def models():
    return {k: shared_file(v) for k, v in MODELS.items()}


def _rows(db) -> list[tuple]:
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute("SELECT id, artifact_sha256, device, settings_hash, status, invocation, finished, "
                           "latency_mean_us FROM measurements ORDER BY id").fetchall()
    except sqlite3.OperationalError:  # the schema is not created yet
        return []
    finally:
        con.close()


def _start(d):
    return subprocess.Popen([*KIT, "run", str(d / "pipeline.toml")], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=ctrl_c_enabled)


def _wait_rows(proc, db, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len([r for r in _rows(db) if r[4] == "ok"]) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.05)


def _setup(tmp_path, models, boards, mcu_runs: int = 60):
    (tmp_path / "farm.toml").write_text(farm_toml([b.uri for b in boards], local=1))
    (tmp_path / "pipeline.toml").write_text(pipeline_toml([models[n] for n in ("kws", "speech", "hello")],
                                                          f"[settings.class.mcu]\nruns = {mcu_runs}\n"))
    return tmp_path / "run" / "results.db"


def test_sigkill_mid_run_then_resume(tmp_path, models):
    with emulators(3, models["hello"]) as boards:
        db = _setup(tmp_path, models, boards)
        first = _start(tmp_path)
        _wait_rows(first, db, JOBS // 2)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        before = _rows(db)
        assert 0 < len(before) < JOBS, "the kill did not land mid-run"
        second = _start(tmp_path)
        out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    after = _rows(db)
    done_before = [r for r in before if r[4] == "ok"]
    # nothing lost: every row written before the kill is still there, unchanged
    assert [r for r in after if r[0] in {b[0] for b in before}] == before
    # nothing doubled, nothing missing
    keys = [r[1:4] for r in after]
    assert len(keys) == len(set(keys)) == JOBS and all(r[4] == "ok" for r in after)
    # only the unfinished jobs ran again
    assert f"{len(done_before)} already measured, running {JOBS - len(done_before)}" in out
    con = sqlite3.connect(db)
    invocations = con.execute("SELECT id, status, planned, skipped FROM invocations ORDER BY started").fetchall()
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    assert [i[1] for i in invocations] == ["interrupted", "finished"]  # the killed one, marked on resume
    assert invocations[1][2:] == (JOBS, len(done_before))
    assert len([r for r in after if r[5] == invocations[1][0]]) == JOBS - len(done_before)


def test_ctrl_c_stops_cleanly_and_the_rerun_finishes(tmp_path, models):
    """Also: while it runs, a second `kit run` on the same folder is refused."""
    with emulators(3, models["hello"]) as boards:
        db = _setup(tmp_path, models, boards, mcu_runs=200)  # long enough for the rival to find it running
        first = _start(tmp_path)
        _wait_rows(first, db, 2)
        rival = _start(tmp_path)  # a second orchestrator on the same run folder is refused
        _, rival_err = rival.communicate(timeout=60)
        assert rival.returncode == 2 and "another `kit run` is using" in rival_err
        t0 = time.monotonic()
        first.send_signal(signal.SIGINT)
        out, err = first.communicate(timeout=30)
        stopped_in = time.monotonic() - t0
        assert first.returncode == 130, err
        assert "interrupted: run the same command again" in err and stopped_in < 10
        before = _rows(db)
        assert all(r[4] == "ok" for r in before), "an interrupted job was recorded as a failure"
        second = _start(tmp_path)
        out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    after = _rows(db)
    assert len(after) == JOBS and all(r[4] == "ok" for r in after)
    assert [r for r in after if r[0] in {b[0] for b in before}] == before
