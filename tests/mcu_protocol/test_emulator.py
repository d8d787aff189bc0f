"""SerialTarget against the emulated board: real TFLM runtime, real pyserial over a real pty."""
from __future__ import annotations

import numpy as np
import pytest

from tests.support.shared import shared_file
from firmware_tools import protocol
from kit.core.errors import ModelError, TargetError
from kit.core.tflite_file import read_tflite
from .mcu_boards import KWS, MLPERF, bmp_as_int8_npy, emulated, power_meter, tflm_outputs
from targets.base import RunSettings
from targets.registry import get_target
from targets.serial import SerialTarget, _input_data


@pytest.mark.slow
@pytest.mark.parametrize("name", ["kws_ref_model", "ad01_int8", "pretrainedResnet_quant", "vww_96_int8"])
def test_mlperf_models_over_serial_match_a_direct_tflm_run(name, tmp_path):
    """Each model is sent with `model load`, its input with `db`, and the board's m-results must equal
    the outputs of the same input run directly in TFLM: no byte lost or reordered on the way."""
    model = shared_file(f"{MLPERF}/{name}.tflite")
    flashed = shared_file(f"{MLPERF}/ad01_int8.tflite" if name == "kws_ref_model" else KWS)
    with emulated(flashed) as (board, url), get_target(url) as target:
        result = target.profile(model, RunSettings(runs=3, warmup=1))
        expected = tflm_outputs(model, _input_data(read_tflite(model), RunSettings(), 0))
    assert result.device.runtime == "tflite-micro" and result.device.name == "prunekit-emulator"
    assert result.device.extra["results"] == pytest.approx(expected, rel=1e-5, abs=1e-5)
    assert result.latency.count == 3 and result.latency.mean_us > 0
    assert any("model sent over serial" in n for n in result.notes)
    assert 0 < result.peak_memory_bytes < board.arena_bytes
    assert not result.estimate


@pytest.mark.parametrize("image, label", [("person.bmp", 1), ("no_person.bmp", 0)])
def test_person_detect_predicts_the_right_class(image, label, tmp_path):
    model = shared_file("models/tflm-examples/person_detect.tflite")
    npy = bmp_as_int8_npy(shared_file(f"models/tflm-examples/{image}"), tmp_path / "x.npy")
    with emulated(model) as (_, url), get_target(url) as target:
        result = target.profile(model, RunSettings(runs=2, warmup=0, input_path=str(npy)))
    scores = result.device.extra["results"]
    assert len(scores) == 2 and int(np.argmax(scores)) == label  # index 1 = person
    assert any("flashed model matches" in n for n in result.notes)


def test_modelled_latency_is_reported_exactly_and_flagged_as_estimate(tmp_path):
    """With a virtual clock the true per-inference time is known, so the host's number must equal it."""
    model = shared_file(KWS)
    with emulated(model, modelled_latency_us=181924) as (_, url), get_target(url, batches="3") as target:
        result = target.profile(model, RunSettings(runs=10, warmup=2))
    assert result.latency.count == 3  # three `infer` batches: three real samples
    assert result.latency.mean_us == result.latency.min_us == result.latency.max_us == 181924.0
    assert result.estimate


def test_several_batches_by_default():
    model = shared_file(KWS)
    with emulated(model, modelled_latency_us=2500) as (_, url), get_target(url) as target:
        result = target.profile(model, RunSettings(runs=10, warmup=1))
    assert result.latency.count == 5  # five `infer` batches of two: five real samples
    assert result.raw_output.count("infer 2 ") == 5 and not any("not a distribution" in n for n in result.notes)


def test_single_batch_is_not_passed_off_as_a_distribution():
    model = shared_file(KWS)
    with emulated(model, modelled_latency_us=2500) as (_, url), get_target(url, batches="1") as target:
        result = target.profile(model, RunSettings(runs=7, warmup=0))
    lat = result.latency
    assert lat.count == 7 and lat.mean_us == 2500.0 and lat.p90_us is None and lat.p99_us is None
    assert any("not a distribution" in n for n in result.notes)
    assert "infer 7 0" in result.raw_output


def test_reference_firmware_board_without_extensions():
    """A board that answers model/arena/input-format with e-[Unknown command…] still profiles."""
    model = shared_file(KWS)
    other = shared_file(f"{MLPERF}/ad01_int8.tflite")
    with emulated(model, extensions=False) as (_, url):
        with get_target(url) as target:
            result = target.profile(model, RunSettings(runs=2, warmup=0))
            assert result.peak_memory_bytes is None
            assert any("does not report tensor arena" in n for n in result.notes)
            assert "e-[Unknown command: input-format]" in result.raw_output
            with pytest.raises(TargetError, match="cannot load models over serial") as info:
                target.profile(other, RunSettings(runs=1, warmup=0))
            assert "kit firmware" in info.value.hint
        board_model = protocol.model_id("kws_ref_model", model.read_bytes())
        with get_target(url, board_model=board_model) as target:
            # the user vouches for a wrong model: the board itself refuses the 640-byte input
            with pytest.raises(TargetError, match="Input has 640 bytes, the model takes 490"):
                target.profile(other, RunSettings(runs=1, warmup=0))
            result = target.profile(model, RunSettings(runs=1, warmup=0))
            assert any("flashed model matches" in n for n in result.notes)
    with emulated(model, extensions=False) as (_, url), get_target(url, board_model="wrong") as target:
        with pytest.raises(TargetError, match="cannot load models"):
            target.profile(other, RunSettings(runs=1, warmup=0))


def test_board_limits_refuse_models_that_do_not_fit():
    vww = shared_file(f"{MLPERF}/vww_96_int8.tflite")
    with pytest.raises(ModelError, match="flash holds 100000"):
        emulated(vww, flash_bytes=100_000).__enter__()
    with pytest.raises(ModelError, match="4096-byte TFLM arena"):
        emulated(vww, arena_bytes=4096).__enter__()
    with emulated(shared_file(KWS), flash_bytes=100_000) as (_, url), get_target(url) as target:
        with pytest.raises(TargetError, match="exceeds the 100000 bytes of flash"):
            target.deploy(vww)


def test_socket_transport():
    from firmware_tools.emulator import EmulatedBoard

    model = shared_file(KWS)
    with EmulatedBoard(model, modelled_latency_us=1000) as board:
        host, port = board.start_tcp()
        with get_target(f"socket://{host}:{port}") as target:
            result = target.profile(model, RunSettings(runs=4, warmup=0))
    assert result.latency.mean_us == 1000.0


def test_serial_url_mapping():
    from targets.serial import _pyserial_url
    from targets.uri import parse_target_uri

    assert _pyserial_url(parse_target_uri("serial:///dev/ttyACM0?baud=9600")) == ("/dev/ttyACM0", 9600)
    assert _pyserial_url(parse_target_uri("rfc2217://lab:4000?baud=57600")) == ("rfc2217://lab:4000", 57600)
    assert _pyserial_url(parse_target_uri("socket://h:1")) == ("socket://h:1", 115200)
    with pytest.raises(TargetError, match="unknown option"):
        _pyserial_url(parse_target_uri("serial:///dev/ttyACM0?speed=1"))
    with pytest.raises(Exception, match="not a int"):
        SerialTarget(parse_target_uri("loop://"), retries="many")


def test_energy_from_a_serial_power_meter():
    """A constant 2.5 W supply: energy per inference must be 2.5 W x the board's per-inference time."""
    model = shared_file(KWS)
    with power_meter(0.5, 5.0, 0.002) as meter, emulated(model) as (_, url), \
            get_target(url, meter=meter, batches="2") as target:
        result = target.profile(model, RunSettings(runs=60, warmup=1))
    assert result.energy_method == "serial-meter"
    assert result.energy_uj_per_inference == pytest.approx(2.5 * result.latency.mean_us, rel=1e-6)
    assert "mean of 2 batch(es)" in result.energy_note


def test_too_few_meter_samples_give_no_energy_and_say_why():
    model = shared_file(KWS)
    with power_meter(0.5, 5.0, 0.5) as meter, emulated(model) as (_, url), \
            get_target(url, meter=meter) as target:
        result = target.profile(model, RunSettings(runs=2, warmup=0))
    assert result.energy_uj_per_inference is None and "use more --runs" in result.energy_note
    with emulated(model) as (_, url), get_target(url) as target:
        assert "no energy meter" in target.profile(model, RunSettings(runs=1, warmup=0)).energy_note
