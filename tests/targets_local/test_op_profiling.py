"""Per-op time on the host from LiteRT's own profiler (`--option op_profiling=true`), or a clear refusal."""
from __future__ import annotations

import json
import re

import pytest

from kit.cli import main
from targets.base import RunSettings
from targets.local import LocalTarget
from targets.uri import parse_target_uri
from tests.support.shared import shared_file

QUICK = RunSettings(runs=20, warmup=2, timeout_s=120)


@pytest.fixture(scope="module")
def model():
    return shared_file("models/mlperf-tiny/ad01_int8.tflite")  # the MLPerf Tiny autoencoder: Dense layers


def test_local_op_profile_comes_from_the_runtimes_profiler(model):
    result = LocalTarget(parse_target_uri("local"), op_profiling=True).profile(model, QUICK)
    ops = result.op_profile
    assert ops is not None and "unavailable" not in ops, ops
    assert "LiteRT" in ops["method"] and ops["runs"] == 20
    # XNNPACK runs them as fully connected nodes, each called once per run
    assert ops["by_node"] and all(n["times_called"] == 20 and n["avg_us"] >= 0 for n in ops["by_node"])
    assert any("Fully Connected" in n["op"] for n in ops["by_node"]), ops["by_node"]
    assert sum(t["percent"] for t in ops["by_type"]) == pytest.approx(100, abs=0.5)
    assert LocalTarget(parse_target_uri("local")).profile(model, QUICK).op_profile is None  # only when asked


def test_op_profiling_with_builtin_kernels_says_it_is_not_available(model):
    settings = RunSettings(runs=5, warmup=1, delegate="none", timeout_s=120)
    ops = LocalTarget(parse_target_uri("local"), op_profiling="true").profile(model, settings).op_profile
    assert "not available on this runtime" in ops["unavailable"] and "'none'" in ops["unavailable"]


def test_profile_command_op_profiling_prints_the_table_and_strict_json(model, capsys):
    assert main(["profile", str(model), "--runs", "10", "--warmup", "1", "--option", "op_profiling=true"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"\d[\d.,]* [KMG]iB process RSS", out), out  # the kind of memory is named
    assert "time by op type" in out and "Fully Connected" in out
    assert main(["profile", str(model), "--runs", "10", "--warmup", "1", "--op-profiling", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d[0]["op_profile"]["by_type"] and d[0]["latency"]["count"] == 10
