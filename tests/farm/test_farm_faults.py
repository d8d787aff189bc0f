"""Devices that die mid-job, jobs that hang: the run goes on, nothing is lost, every failure has its cause."""
from __future__ import annotations

import socket
import threading
import time

import pytest

from tests.support.shared import shared_file
from .farm_fixtures import MODELS, emulators, farm_toml, pipeline_toml
from kit.commands.run import failure_lines
from kit.farm.choose import choose
from kit.farm.orchestrate import run_pipeline
from kit.farm.progress import Progress
from kit.farm.rundata import load_run
from kit.farm.spec import load_pipeline
from kit.report.html import render

pytestmark = pytest.mark.slow  # farm runs on emulated boards that fail

#: long enough that the kill lands inside the job (TFLM runs kws in ~6 ms per inference on the host)
MCU_RUNS = "[settings.class.mcu]\nruns = 200\n"


@pytest.fixture(scope="module")
def models():
    return {k: shared_file(v) for k, v in MODELS.items()}


class KillOnFirstJob(Progress):
    """Kills a board's emulator process shortly after its first job starts: the board drops off mid-job."""

    def __init__(self, device: str, board, delay_s: float):
        super().__init__([], 0, enabled=False)
        self.device, self.board, self.delay_s = device, board, delay_s
        self.fired = threading.Event()

    def state(self, device: str, text: str) -> None:
        if device == self.device and text.startswith("running") and not self.fired.is_set():
            self.fired.set()
            threading.Timer(self.delay_s, self.board.kill).start()


def _run(tmp_path, models, boards, extra: str, progress=None, names=("kws", "speech", "hello"), classes=None):
    (tmp_path / "farm.toml").write_text(farm_toml([b.uri for b in boards], local=1, mcu_classes=classes))
    (tmp_path / "pipeline.toml").write_text(pipeline_toml([models[n] for n in names], extra))
    outcome = run_pipeline(load_pipeline(tmp_path / "pipeline.toml"), log=lambda line: None, quiet_progress=True,
                           progress=progress)
    return outcome, load_run(tmp_path / "run")


def test_board_killed_mid_job_fails_its_jobs_with_the_cause_and_spares_the_others(tmp_path, models):
    with emulators(2, models["hello"]) as boards:
        killer = KillOnFirstJob("mcu-0", boards[0], 0.3)
        # each board its own class: class mcu-a has nothing measured, and the report must say why
        outcome, run = _run(tmp_path, models, boards, MCU_RUNS, killer, classes=["mcu-a", "mcu-b"])
    assert killer.fired.is_set()
    assert list(outcome.report.unhealthy) == ["mcu-0"]
    failed = {run.artifacts[m["artifact_sha256"]].name: m for m in run.failed()}
    assert {m["device"] for m in failed.values()} == {"mcu-0"} and len(failed) == 3
    first = failed["kws_ref_model"]  # the job the board died in
    assert "serial port" in first["error"] and "did not answer a fresh connection" in first["error"]
    assert run.device_lost(first)
    for name in ("micro_speech_quantized", "hello_world_int8"):  # queued behind it: not run, with the reason
        assert "dropped out" in failed[name]["error"] and "mcu-0" in failed[name]["error"]
    ok = {(m["device"], run.artifacts[m["artifact_sha256"]].name) for m in run.ok()}
    assert ok == {(d, n) for d in ("mcu-1", "host-0")
                  for n in ("kws_ref_model", "micro_speech_quantized", "hello_world_int8")}
    # `kit run` names the dead board once, with its cause and the jobs it lost, not one paragraph per job
    lines, named = failure_lines(tmp_path / "run", outcome.invocation)
    heads = [line for line in lines if line.startswith("failed")]
    assert named == {"mcu-0"} and len(heads) == 1, lines
    assert heads[0].startswith("failed: mcu-0 unreachable") and "serial port" in heads[0]
    assert sum("3 job(s) not measured" in line for line in lines) == 1
    # the report: one failure row for the board; its class says why nothing was measured, once
    choices = {c.device_class: c for c in choose(run)}
    assert choices["mcu-a"].winner is None and "yet" not in choices["mcu-a"].why_none
    assert choices["mcu-a"].why_none.count("not measured: mcu-0 unreachable (") == 1
    page = render(run, list(choices.values()))
    failures = page[page.index("<h2>Failures</h2>"):]
    assert failures.count("<tr><td>mcu-0</td>") == 1 and "device unreachable, dropped out" in failures
    winners = page[:page.index("<h2>Latency per device</h2>")]
    assert winners.count("not measured: mcu-0 unreachable (") == 1 and "not measured on any device" not in page


def test_pool_mode_retries_a_dead_boards_job_on_another_board_of_its_profile(tmp_path, models):
    with emulators(2, models["hello"]) as boards:
        killer = KillOnFirstJob("mcu-0", boards[0], 0.3)
        outcome, run = _run(tmp_path, models, boards, MCU_RUNS + '[scheduler]\nspread = "pool"\n', killer)
    assert killer.fired.is_set() and list(outcome.report.unhealthy) == ["mcu-0"]
    assert run.failed() == []
    mcu = [m for m in run.ok() if m["device_class"] == "mcu"]
    assert len(mcu) == 3 and {m["device"] for m in mcu} == {"mcu-1"}
    lost = [a for a in run.attempts if a["device"] == "mcu-0"]
    assert len(lost) == 1 and lost[0]["device_lost"] == 1
    retried = next(m for m in mcu if m["artifact_sha256"] == lost[0]["artifact_sha256"])
    assert retried["attempts"] == 2  # the first attempt died with mcu-0
    assert len([m for m in run.ok() if m["device"] == "host-0"]) == 3


def test_a_hung_device_is_given_up_at_the_job_timeout(tmp_path, models):
    listener = socket.create_server(("127.0.0.1", 0))  # accepts, never answers: a bridge to a dead board
    port = listener.getsockname()[1]
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        farm = farm_toml([f"socket://127.0.0.1:{port}"], local=1, mcu_options='options = { connect_timeout = 60 }')
        (tmp_path / "farm.toml").write_text(farm)
        (tmp_path / "pipeline.toml").write_text(pipeline_toml([models["hello"]], "[scheduler]\njob_timeout_s = 2\n"))
        t0 = time.monotonic()
        outcome = run_pipeline(load_pipeline(tmp_path / "pipeline.toml"), log=lambda line: None, quiet_progress=True)
        elapsed = time.monotonic() - t0
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
        for s in held:
            s.close()
    run = load_run(tmp_path / "run")
    assert elapsed < 20
    assert "timeout" in outcome.report.unhealthy["mcu-0"]
    [failed] = run.failed()
    assert failed["device"] == "mcu-0" and "longer than its 2 s timeout" in failed["error"]
    assert [m["device"] for m in run.ok()] == ["host-0"]
