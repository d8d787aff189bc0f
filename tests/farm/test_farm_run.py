"""A real farm run: emulated MCU boards on ptys, two `local` slots and (when available) a loopback SSH board.

Covers: every device measures every artifact it can load, concurrently and one
job per device at a time; an artifact a board refuses fails with the board's
reason while the board keeps working; selection, export, results and report
from the stored run.
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import re
import sys
from pathlib import Path

import pytest

from .chromium import CHROMIUM, render
from tests.support.shared import shared_file
from .farm_fixtures import FLASH_BYTES, MODELS, emulators, farm_toml, pipeline_toml, ssh_board_class
from kit.cli import main
from kit.farm.orchestrate import run_pipeline
from kit.farm.rundata import load_run
from kit.farm.choose import choose
from kit.farm.spec import load_pipeline
from kit.core.tflite_file import read_tflite

pytestmark = pytest.mark.slow  # one farm run on emulated boards, the host and an SSH board

ACCURACY = {"kws_ref_model": 0.9, "micro_speech_quantized": 0.8, "hello_world_int8": 0.5,
            "pretrainedResnet_quant": 0.85}
CONSTRAINTS = """
[constraints.class.mcu]
max_flash_bytes = 30000        # kws (54 KB) does not fit; micro_speech and hello_world do
min_accuracy = 0.6             # hello_world is too inaccurate: micro_speech must win

[constraints.class.board]
max_latency_ms = 0.000001      # nothing is this fast
"""


@pytest.fixture(scope="module")
def models():
    return {k: shared_file(v) for k, v in MODELS.items()}


@pytest.fixture(scope="module")
def ssh_board(tmp_path_factory):
    cls, reason = ssh_board_class()
    if cls is None:
        yield None, reason
        return
    with cls(tmp_path_factory.mktemp("sshd")) as board:
        yield board, ""


@pytest.fixture(scope="module")
def farm_run(models, ssh_board, tmp_path_factory):
    """3 emulated boards (mcu-2 with a modelled clock) + 2 local slots (+ SSH board): 4 artifacts, one run."""
    d = tmp_path_factory.mktemp("farm")
    board, _ = ssh_board
    arts = [models[k] for k in ("kws", "speech", "hello", "resnet")]
    with emulators(2, models["hello"], "--flash-bytes", FLASH_BYTES) as boards, \
            emulators(1, models["hello"], "--flash-bytes", FLASH_BYTES, "--modelled-latency-us", "50000") as modelled:
        (d / "farm.toml").write_text(farm_toml([b.uri for b in boards + modelled], local=2, ssh=board))
        (d / "pipeline.toml").write_text(pipeline_toml(arts, CONSTRAINTS, ACCURACY))
        spec = load_pipeline(d / "pipeline.toml")
        outcome = run_pipeline(spec, log=lambda line: None, quiet_progress=True)
        check = io.StringIO()
        with contextlib.redirect_stdout(check):
            check_rc = main(["farm", "check", "--farm", str(d / "farm.toml"), "--timeout", "20"])
    return d, outcome, load_run(d / "run"), board, (check_rc, check.getvalue())


def test_every_device_measures_every_artifact_concurrently(farm_run):
    d, outcome, run, board, _ = farm_run
    devices = ["mcu-0", "mcu-1", "mcu-2", "host-0", "host-1"] + (["ssh-board"] if board else [])
    assert sorted(run.devices) == sorted(devices)
    assert outcome.planned == 4 * len(devices) and outcome.skipped == 0 and not outcome.report.interrupted
    ok = {(m["device"], run.artifacts[m["artifact_sha256"]].name) for m in run.ok()}
    for device in devices:
        for name in ("kws_ref_model", "micro_speech_quantized", "hello_world_int8"):
            assert (device, name) in ok
    for device in ("host-0", "host-1", "ssh-board"):
        assert (device, "pretrainedResnet_quant") in ok or device not in devices
    # real runtimes answered: TFLM behind the serial protocol, LiteRT on the host and over SSH
    for m in run.ok():
        result = json.loads(m["result"])
        expected = "tflite-micro" if m["device"].startswith("mcu") else "ai_edge_litert"
        assert result["device"]["runtime"] == expected
        assert m["latency_count"] >= 1 and m["latency_mean_us"] > 0
    # one job at a time per device, several devices at once
    spans = {}
    for m in run.ok():
        spans.setdefault(m["device"], []).append((m["started"], m["finished"]))
    for device, s in spans.items():
        s.sort()
        assert all(a[1] <= b[0] + 1e-3 for a, b in zip(s, s[1:])), f"{device} ran two jobs at once"
    flat = [(a, b, dev) for dev, s in spans.items() for a, b in s]
    assert any(d1 != d2 and a1 < b2 and a2 < b1 for a1, b1, d1 in flat for a2, b2, d2 in flat), \
        "no two devices ever worked at the same time"


def test_estimates_are_kept_apart_from_measurements(farm_run, tmp_path):
    d, outcome, run, _, _ = farm_run
    for m in run.ok():
        assert bool(m["estimate"]) == (m["device"] == "mcu-2")
        if m["device"] == "mcu-2":  # the board's virtual clock: exactly the modelled 50 ms per inference
            assert m["latency_mean_us"] == pytest.approx(50000.0)
    mcu = next(c for c in outcome.choices if c.device_class == "mcu")
    assert mcu.winner.estimate and mcu.winner.latency_device == "mcu-2"  # the class's worst device is modelled
    assert main(["report", str(d / "run"), "-o", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    badges = page.count("<span class='badge estimate'>estimate</span>")
    assert badges >= 3 + 1  # three mcu-2 rows and the winner of class mcu
    assert "(est.)" in page and "stroke-dasharray='2,2'" in page


def test_a_refused_artifact_fails_with_the_boards_reason_and_the_board_keeps_working(farm_run):
    _, outcome, run, _, _ = farm_run
    failed = {m["device"]: m for m in run.failed()}
    assert sorted(failed) == ["mcu-0", "mcu-1", "mcu-2"]
    for m in failed.values():
        assert run.artifacts[m["artifact_sha256"]].name == "pretrainedResnet_quant"
        assert f"exceeds the {FLASH_BYTES} bytes of flash" in m["error"]
        assert not run.device_lost(m)
    assert outcome.report.unhealthy == {}


def test_selection_per_class_follows_the_constraints(farm_run):
    _, outcome, run, board, _ = farm_run
    choices = {c.device_class: c for c in outcome.choices}
    mcu = choices["mcu"]
    assert mcu.winner.artifact.name == "micro_speech_quantized"
    problems = {c.artifact.name: c.problems for c in mcu.candidates}
    assert any("flash 53,936 B > 30,000 B" in p for p in problems["kws_ref_model"])
    assert any("accuracy 50.00% < 60.00%" in p for p in problems["hello_world_int8"])
    assert any("exceeds the" in p for p in problems["pretrainedResnet_quant"])
    assert choices["host"].winner.artifact.name == "kws_ref_model"  # unconstrained: the most accurate
    if board:
        assert choices["board"].winner is None
        assert "none of 4 artifact(s) meets the constraints" in choices["board"].why_none
        assert "> 1e-06 ms on ssh-board" in choices["board"].why_none
    saved = json.loads((run.dir / "selection.json").read_text())
    assert {c["class"]: (c["winner"] or {}).get("name") for c in saved}["mcu"] == "micro_speech_quantized"


def test_export_for_app_and_firmware_builds(farm_run, tmp_path):
    d, _, _, board, _ = farm_run
    rc = main(["export", str(d / "run"), "--android", str(tmp_path / "assets"), "--firmware", str(tmp_path / "fw")])
    assert rc == (1 if board else 0)  # the SSH board class has no model that meets its constraints
    app = json.loads((tmp_path / "assets" / "prunekit_models.json").read_text())
    host = next(m for m in app["models"] if m["device_class"] == "host")
    data = (tmp_path / "assets" / host["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == host["sha256"] and len(data) == host["bytes"]
    info = read_tflite(data)
    assert host["inputs"][0]["shape"] == info.tensor(info.inputs[0]).shape
    assert host["inputs"][0]["dtype"] == "int8" and host["inputs"][0]["quantization"]["scale"] > 0
    assert host["source"]["artifact"] == "kws_ref_model" and host["accuracy"] == 0.9
    assert {m["device"] for m in host["measured"]} == {"host-0", "host-1"}
    assert all(m["latency_median_us"] > 0 and m["estimate"] is False for m in host["measured"])
    assert host["labels"] is None and host["normalisation"] is None
    if board:
        assert app["unresolved"][0]["device_class"] == "board"
    fw = json.loads((tmp_path / "fw" / "prunekit_models.json").read_text())
    mcu = fw["models"][0]
    assert mcu["device_class"] == "mcu" and mcu["source"]["artifact"] == "micro_speech_quantized"
    project = tmp_path / "fw" / "mcu"
    assert (project / "platformio.ini").is_file() and mcu["firmware"]["arena_bytes"] > 0
    assert any(f.endswith(".cc") or f.endswith(".cpp") for f in mcu["firmware"]["files"])


def _edited_run(d: Path, tmp_path: Path, edit) -> Path:
    """A copy of the run's plan, edited, next to the same results store."""
    copy = tmp_path / "run"
    copy.mkdir()
    plan = json.loads((d / "run" / "run.json").read_text())
    edit(plan)
    (copy / "run.json").write_text(json.dumps(plan))
    return copy


def test_export_refuses_a_model_changed_after_profiling(farm_run, tmp_path):
    d, _, run, _, _ = farm_run
    changed = tmp_path / "changed.tflite"

    def swap(plan):
        for a in plan["artifacts"]:
            if a["name"] == "kws_ref_model":
                changed.write_bytes(Path(a["path"]).read_bytes() + b"\0")
                a["path"] = str(changed)

    rc = main(["export", str(_edited_run(d, tmp_path, swap)), "--android", str(tmp_path / "assets")])
    assert rc == 2 and not (tmp_path / "assets" / "host.tflite").exists()


@pytest.mark.parametrize("count", [12, 4])
def test_export_checks_the_labels_against_the_model(farm_run, tmp_path, count, capsys):
    d, _, _, board, _ = farm_run
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"word{i}\n" for i in range(count)))
    run_dir = _edited_run(d, tmp_path, lambda plan: plan["export"].update(labels=str(labels)))
    rc = main(["export", str(run_dir), "--android", str(tmp_path / "assets")])
    if count == 12:  # kws_ref_model, the host's choice, has 12 outputs
        assert rc == (1 if board else 0)
        assert (tmp_path / "assets" / "labels.txt").read_text() == labels.read_text()
        manifest = json.loads((tmp_path / "assets" / "prunekit_models.json").read_text())
        assert manifest["models"][0]["labels"] == "labels.txt"
    else:
        assert rc == 2
        assert "the labels file has 4 labels but" in capsys.readouterr().err


def test_results_filter_and_csv(farm_run, tmp_path, capsys):
    d, _, run, _, _ = farm_run
    out = tmp_path / "r.csv"
    assert main(["results", str(d / "run"), "--class", "mcu", "--status", "ok", "--csv", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 9 and {r["device"] for r in rows} == {"mcu-0", "mcu-1", "mcu-2"}
    assert all(float(r["latency_mean_us"]) > 0 for r in rows)
    assert main(["results", str(d / "run"), "--artifact", "*resnet*", "--status", "failed"]) == 0
    assert "3 row(s)" in capsys.readouterr().out


def test_farm_check_while_the_boards_are_up(farm_run):
    _, _, run, _, (rc, out) = farm_run
    assert rc == 0 and f"all {len(run.devices)} device(s) reachable" in out
    rows = [line for line in out.splitlines() if line.split(" ")[0] in run.devices]
    assert len(rows) == len(run.devices)
    for line in rows:
        assert " yes " in line
        assert ("tflite-micro" if line.startswith("mcu") else "ai_edge_litert") in line


def test_farm_check_after_the_boards_went_away(farm_run, capsys):
    d, _, run, board, _ = farm_run
    # the emulated boards stopped with the fixture: unreachable, exit code 1; the rest still healthy
    assert main(["farm", "check", "--farm", str(d / "farm.toml"), "--timeout", "20"]) == 1
    out = capsys.readouterr().out
    for line in out.splitlines():
        if line.startswith("host-"):
            assert " yes " in line and "ai_edge_litert" in line and "GiB" in line
        if line.startswith("mcu-"):
            assert " NO " in line
        if line.startswith("ssh-board"):
            assert " yes " in line and "ai_edge_litert" in line
    assert "3 of" in out and "unreachable" in out


def test_loopback_ssh_board_took_part(farm_run, ssh_board):
    _, _, run, board, _ = farm_run
    if board is None:
        pytest.skip(ssh_board[1])
    rows = [m for m in run.ok() if m["device"] == "ssh-board"]
    assert len(rows) == 4
    assert all(json.loads(m["result"])["device"]["extra"]["ssh"].endswith(f"127.0.0.1:{board.port}") for m in rows)


def test_report_is_self_contained(farm_run, tmp_path):
    d, _, run, _, _ = farm_run
    out = tmp_path / "report.html"
    assert main(["report", str(d / "run"), "-o", str(out)]) == 0
    page = out.read_text()
    assert page.count("<svg") >= len(run.devices) + 2
    for needle in ("src=\"http", "src='http", "href=\"http", "href='http", "@import", "url(http"):
        assert needle not in page
    assert "micro_speech_quantized" in page and "exceeds the" in page and "Pareto" in page
    assert sys.getsizeof(page) < 2_000_000


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is absent: apt-get install chromium")
def test_report_renders_in_headless_chromium_without_console_errors(farm_run, tmp_path):
    d, _, _, _, _ = farm_run
    # the check can fail: a page with an error is caught
    bad = tmp_path / "bad.html"
    bad.write_text("<!doctype html><html><body><script>console.log('a log line'); console.warn('a warning');"
                   "undefinedFunction();</script></body></html>")
    messages = render(bad, tmp_path / "bad.png", tmp_path / "profile-bad")
    for needle in ("a log line", "a warning", "undefinedFunction"):  # any message, not only errors
        assert any(needle in m for m in messages), messages
    page = tmp_path / "report.html"
    assert main(["report", str(d / "run"), "-o", str(page)]) == 0
    shot = tmp_path / "report.png"
    assert render(page, shot, tmp_path / "profile") == []
    assert shot.stat().st_size > 50_000  # a rendered page of tables and plots, not a blank one


@pytest.mark.parametrize("factor, expected_rc", [(0.5, 1), (2.0, 0)])
def test_regression_gate_against_an_earlier_run(farm_run, tmp_path, capsys, factor, expected_rc):
    """The earlier run is this run's copy with every median scaled: 0.5 makes today 100 % slower."""
    import shutil
    import sqlite3

    d, _, run, _, _ = farm_run
    base = tmp_path / "base"
    base.mkdir()
    shutil.copyfile(d / "run" / "results.db", base / "results.db")
    plan = json.loads((d / "run" / "run.json").read_text())
    plan["store"] = str(base / "results.db")
    (base / "run.json").write_text(json.dumps(plan))
    con = sqlite3.connect(base / "results.db")
    con.execute("UPDATE measurements SET latency_median_us = latency_median_us * ?, "
                "latency_mean_us = latency_mean_us * ?", (factor, factor))
    con.commit()
    con.close()
    rc = main(["results", str(d / "run"), "--compare", str(base), "--fail-on-regression", "10"])
    out = capsys.readouterr().out
    assert rc == expected_rc
    compared = [line for line in out.splitlines() if line.startswith(("device ", "class "))]
    assert len(compared) == len(run.ok()) + sum(1 for c in choose(run) if c.winner is not None)
    assert all(("REGRESSED" in line) == (factor < 1) for line in compared)
    assert "+100.0%" in out if factor < 1 else "-50.0%" in out


def _svg_texts(page: str) -> list[str]:
    """Every SVG <text> as it reads: its tspans joined."""
    return [re.sub(r"<[^>]+>", "", t) for t in re.findall(r"<text[^>]*>.*?</text>", page)]


def test_report_shows_long_labels_whole(farm_run, tmp_path):
    d, _, run, _, _ = farm_run

    def lengthen(plan):
        for a in plan["artifacts"]:
            a["model"], a["recipe"] = "keyword-spotting-release-candidate", "lenet5-latency"

    assert main(["report", str(_edited_run(d, tmp_path, lengthen)), "-o", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    texts = _svg_texts(page)
    assert "…" not in page
    for a in run.artifacts.values():
        label = f"keyword-spotting-release-candidate/lenet5-latency/{a.name}"
        assert sum(t.startswith(label) for t in texts) >= 2, label  # device plots and class legends


def test_mcu_class_plot_keeps_a_measured_latency_apart_from_an_estimate(farm_run, tmp_path):
    """mcu-2's modelled 50 ms must not stand in for what mcu-0 and mcu-1 measured."""
    d, _, run, _, _ = farm_run
    assert main(["report", str(d / "run"), "-o", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    section = page[page.index("<h3>mcu</h3>"):]
    section = section[:section.index("</svg>")]  # the size-latency plot
    for name in ("kws_ref_model", "micro_speech_quantized", "hello_world_int8"):
        sha = next(s for s, a in run.artifacts.items() if a.name == name)
        measured = max(m["latency_median_us"] for m in run.ok()
                       if m["artifact_sha256"] == sha and m["device"] in ("mcu-0", "mcu-1"))
        tips = re.findall(r"data-kind='(\w+)'><title>([^<]*)</title>", section)
        mine = {kind: tip for kind, tip in tips if tip.startswith(name + ":")}
        assert f"measured {measured / 1000:.3g} ms" in mine["measured"]
        assert "estimate 50 ms" in mine["estimate"]
    assert section.count(">est.</text>") == 3  # every estimate labelled in the plot
    winners = page[:page.index("<h2>Latency per device</h2>")]
    assert "<span class='badge measured'>measured</span>" in winners  # the winner shows both figures


def test_results_list_the_whole_store_after_a_select_rerun(farm_run, tmp_path, capsys):
    """A second `kit run --select host-0` plans 4 jobs; `kit results` still lists every stored row, the 4 marked.
    Memory is shown per kind: a process's peak and a board's tensor arena never share a column."""
    import shutil
    import time

    d, _, run, _, _ = farm_run
    shutil.copytree(d / "run", tmp_path / "run", ignore=shutil.ignore_patterns("*.lock"))
    shutil.copyfile(d / "farm.toml", tmp_path / "farm.toml")
    shutil.copyfile(d / "pipeline.toml", tmp_path / "pipeline.toml")
    capsys.readouterr()
    t0 = time.monotonic()
    assert main(["run", str(tmp_path / "pipeline.toml"), "--select", "host-0", "--quiet", "--no-export"]) == 0
    elapsed = time.monotonic() - t0
    out = capsys.readouterr().out
    assert "4 already measured, running 0" in out
    m = re.search(r"wall time ([\d.]+) s: compression ([\d.]+) s, profiling on the devices ([\d.]+) s", out)
    assert m, out
    wall, compress, profile = map(float, m.groups())
    assert compress + profile <= wall + 0.1 and wall <= elapsed + 0.05
    assert main(["results", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    total = len(run.measurements)
    assert f"{total} row(s); 4 of the latest run (marked *), {total - 4} from earlier runs" in out
    assert sum(line.startswith("* ") and " host-0 " in line for line in out.splitlines()) == 4
    assert "process peak B" in out and "TFLM arena B" in out and "peak mem" not in out
    assert main(["results", str(tmp_path / "run"), "--latest", "--csv", str(tmp_path / "r.csv")]) == 0
    assert len(list(csv.DictReader((tmp_path / "r.csv").open()))) == 4
    assert main(["results", str(tmp_path / "run"), "--status", "ok", "--csv", str(tmp_path / "all.csv")]) == 0
    for row in csv.DictReader((tmp_path / "all.csv").open()):
        if row["device"].startswith("mcu"):
            assert row["arena_bytes"] and not row["process_peak_bytes"], row
        else:
            assert row["process_peak_bytes"] and not row["arena_bytes"], row
