import shutil

import numpy as np
import pytest

from kit.core.errors import KitError, TargetError
from targets.base import LatencyStats, RunSettings
from targets.profiles import load_profile
from targets.registry import get_target
from targets.uri import parse_target_uri


def test_profile_on_host(tiny_tflite):
    with get_target("local") as t:
        r = t.profile(tiny_tflite, RunSettings(runs=50, warmup=5))
    assert r.latency.count == 50
    assert 0 < r.latency.min_us <= r.latency.median_us <= r.latency.p99_us <= r.latency.max_us
    assert r.init_us > 0 and r.first_inference_us > 0
    assert r.device.runtime == "ai_edge_litert" and r.device.runtime_version
    assert r.peak_memory_bytes > 10_000_000 and "getrusage" in r.memory_method
    assert r.energy_uj_per_inference is None and r.energy_note
    assert r.artifact.bytes == tiny_tflite.stat().st_size
    again = type(r).from_dict(r.to_dict())
    assert again.latency == r.latency and again.settings == r.settings


def test_runs_split_over_fresh_interpreters(tiny_tflite):
    r = get_target("local").profile(tiny_tflite, RunSettings(runs=31, warmup=2, instances=4))
    assert r.latency.count == 31 and r.settings.instances == 4
    note = next(n for n in r.notes if "fresh interpreters" in n)
    medians = [float(m) for m in note.split(": ")[1].removesuffix(" us").split(", ")]
    assert len(medians) == 4 and all(m > 0 for m in medians)
    single = get_target("local").profile(tiny_tflite, RunSettings(runs=5))
    assert not any("fresh interpreters" in n for n in single.notes)


def test_builtin_kernels_and_threads(tiny_tflite):
    r = get_target("local").profile(tiny_tflite, RunSettings(runs=10, warmup=1, delegate="none", threads=2))
    assert r.latency.count == 10 and r.settings.delegate == "none" and r.settings.threads == 2


def test_unavailable_delegate_is_refused(tiny_tflite):
    with pytest.raises(TargetError, match="not available on the local target"):
        get_target("local").profile(tiny_tflite, RunSettings(delegate="gpu"))


def test_corrupt_model_reports_runtime_error(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x10\x00\x00\x00TFL3" + b"\x00" * 64)
    with pytest.raises(TargetError, match="does not load"):
        get_target("local").profile(bad, RunSettings(runs=1))


@pytest.mark.skipif(shutil.which("taskset") is None, reason="taskset (util-linux) is not installed")
def test_core_mask(tiny_tflite):
    r = get_target("local").profile(tiny_tflite, RunSettings(runs=5, core_mask="1"))
    assert r.latency.count == 5


@pytest.mark.parametrize("kwargs", [{"delegate": "tpu"}, {"threads": 0}, {"core_mask": "zz"}, {"instances": 0},
                                    {"runs": 3, "instances": 4}])
def test_bad_settings(kwargs):
    with pytest.raises(KitError):
        RunSettings(**kwargs)


def test_latency_stats_match_numpy():
    rng = np.random.default_rng(1)
    samples = list(rng.gamma(2.0, 50.0, size=501))
    s = LatencyStats.from_samples(samples)
    assert s.median_us == pytest.approx(np.median(samples))
    assert s.p90_us == pytest.approx(np.percentile(samples, 90))
    assert s.p99_us == pytest.approx(np.percentile(samples, 99))
    assert s.std_us == pytest.approx(np.std(samples))


def test_uri_parsing():
    u = parse_target_uri("adb://R5CT%2041@lab-host:5037")
    assert (u.scheme, u.user, u.host, u.port) == ("adb", "R5CT 41", "lab-host", 5037)
    s = parse_target_uri("serial:///dev/ttyACM0?baud=115200")
    assert s.path == "/dev/ttyACM0" and s.query == {"baud": "115200"}
    e = parse_target_uri("edgetpu+ssh://mendel@coral")
    assert e.accelerator == "edgetpu" and e.base_scheme == "ssh"
    assert parse_target_uri("local").scheme == "local"
    with pytest.raises(KitError, match="invalid port"):
        parse_target_uri("ssh://pi@host:99999")
    with pytest.raises(KitError):
        parse_target_uri("not a uri")


def test_unknown_scheme_and_profile(tmp_path):
    with pytest.raises(KitError, match="known targets"):
        get_target("ftp://x")
    with pytest.raises(KitError, match="no device profile"):
        load_profile("no-such-board")
    p = tmp_path / "board.toml"
    p.write_text('name = "b"\nformats = ["int8"]\ncolour = "red"\n')
    with pytest.raises(KitError, match="unknown key"):
        load_profile(p)


def test_input_file_is_used(tiny_tflite, tmp_path):
    zeros, ones = tmp_path / "zeros.npy", tiny_tflite.with_suffix(".npy")
    np.save(zeros, np.zeros((1, 16), np.float32))
    t = get_target("local")
    a = t.run(t.deploy(tiny_tflite), RunSettings(runs=1, input_path=str(zeros)))["result"]["output_checksum"]
    b = t.run(t.deploy(tiny_tflite), RunSettings(runs=1, input_path=str(ones)))["result"]["output_checksum"]
    assert a != b
