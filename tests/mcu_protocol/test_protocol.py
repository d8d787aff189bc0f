"""The host-side protocol parser, on the real NUCLEO-L4R5ZI runner log and on hand-made answers."""
from __future__ import annotations

import csv
import re

import pytest

from tests.support.shared import shared_file
from firmware_tools import protocol
from firmware_tools.protocol import ProtocolError
from kit.core.errors import TargetError

LOG = "reference/mlperf_tiny/nucleo_l4r5zi_kws_performance_log.txt"
CSV = "reference/mlperf_tiny/reference_results_v0.5_nucleo_l4r5zi.csv"


def _dut_lap_pairs(text: str) -> list[tuple[int, int]]:
    """The m-lap-us pairs of the device lines, read independently of the parser."""
    laps = [int(v) for v in re.findall(r"^\d+\.\d+ dut: m-lap-us-(\d+)$", text, re.M)]
    return list(zip(laps[1::2], laps[2::2]))  # the first lap answers `timestamp`


def test_nucleo_transcript_exchanges():
    text = shared_file(LOG).read_text()
    exchanges = protocol.runner_exchanges(text)
    assert [e.command for e in exchanges] == ["profile", "timestamp"] + ["infer 100 1"] * 5
    prof = protocol.parse_profile(exchanges[0].lines)
    assert prof == protocol.BoardProfile("ULPMark for tinyML Firmware V0.0.1", "kws01")
    assert protocol.parse_lap(exchanges[1].lines[0]) == 250900590
    for e in exchanges:
        # the runner's own `parser: m-ready-finished[dut]` lines must not count as device answers
        assert e.lines.count(protocol.READY) == 1 and e.lines[-1] == protocol.READY


def test_nucleo_transcript_latency_matches_the_file_and_the_published_result():
    text = shared_file(LOG).read_text()
    replies = [protocol.parse_infer(e.lines[:-1], iterations=100, warmup=1)
               for e in protocol.runner_exchanges(text) if e.command.startswith("infer")]
    pairs = _dut_lap_pairs(text)
    assert len(replies) == len(pairs) == 5
    for reply, (start, end) in zip(replies, pairs):
        assert reply.laps_us == (start, end)
        assert reply.per_inference_us == pytest.approx((end - start) / 100)
        assert len(reply.results) == 12 and sum(reply.results) == pytest.approx(1.0, abs=0.01)
    mean_ms = sum(r.per_inference_us for r in replies) / len(replies) / 1000
    published = {row["task"]: float(row["latency_ms"])
                 for row in csv.DictReader(ln for ln in shared_file(CSV).open() if not ln.startswith("#"))}
    assert mean_ms == pytest.approx(published["kws01"], abs=0.05)  # 181.92 ms vs 181.9 ms published
    assert replies[0].results[5] == pytest.approx(0.761)


def test_encode_and_chunks_round_trip():
    assert protocol.encode("infer 10 1") == b"infer 10 1%"
    for bad in ("name%", "na\nme", "caf\u00e9"):
        with pytest.raises(ValueError):
            protocol.encode(bad)
    data = bytes(range(256)) * 3 + b"\x07"
    cmds = protocol.chunk_commands("db", data)
    assert cmds[0] == f"db load {len(data)}"
    assert b"".join(bytes.fromhex(c.split()[1]) for c in cmds[1:]) == data
    assert all(len(protocol.encode(c)) <= protocol.REFERENCE_COMMAND_SIZE for c in cmds)


def test_clean_line_skips_garbage_glued_to_a_message():
    assert protocol.clean_line("\ufffd\x00#q~\ufffdzm-name-dut-[x]\r\n") == "m-name-dut-[x]"
    assert protocol.clean_line("qe-m-ready") == "m-ready"  # `e-m…` is not an error line
    assert protocol.clean_line("e-[Unknown command: x]") == "e-[Unknown command: x]"
    assert protocol.clean_line("Initialized") is None
    assert protocol.clean_line("\ufffd\ufffd") is None


def test_unknown_command_variants_and_boot_lines():
    assert protocol.is_unknown_command("e-[Unknown command: arena]")
    assert protocol.is_unknown_command("e-[Unknown command 'arena']")
    assert not protocol.is_unknown_command("e-[Inference iterations must be >0]")
    assert protocol.is_boot_line("m-init-done") and protocol.is_boot_line("m-timestamp-mode-energy")
    assert not protocol.is_boot_line("m-ready")


def test_names_and_extensions():
    assert protocol.parse_name(["m-name-dut-[unspecified]"]) == protocol.BoardName("dut", "unspecified")
    assert protocol.parse_arena(["m-arena-used-24272", "m-arena-size-524288"]) == (24272, 524288)
    assert protocol.parse_arena(["m-ready"]) is None
    assert protocol.parse_input_format(["m-input-format-[dtype=int8,shape=1x8,bytes=8]"]) == \
        {"dtype": "int8", "shape": "1x8", "bytes": "8"}
    with pytest.raises(ProtocolError):
        protocol.parse_profile(["m-profile-[x]"])
    assert protocol.model_id_matches(protocol.model_id("m", b"abc"), b"abc")
    assert not protocol.model_id_matches(protocol.model_id("m", b"abc"), b"abd")
    assert not protocol.model_id_matches("kws01", b"abc")


def _infer_lines(start: int, end: int, n: int = 10, w: int = 1) -> list[str]:
    return [f"m-warmup-start-{w}", "m-warmup-done", f"m-infer-start-{n}", f"m-lap-us-{start}",
            f"m-lap-us-{end}", "m-infer-done", "m-results-[0.25,0.75]"]


def test_infer_lap_wraparound():
    reply = protocol.parse_infer(_infer_lines(4294967000, 704), 10, 1)
    assert reply.elapsed_us == 1000 and reply.per_inference_us == 100.0
    assert reply.results == (0.25, 0.75)


@pytest.mark.parametrize("mutate, why", [
    (lambda ls: ls[:3] + ls[4:], "expected"),                      # a lost lap line
    (lambda ls: ls[:-1], "expected"),                              # results lost
    (lambda ls: [ls[1], ls[0], *ls[2:]], "expected"),              # out of order
    (lambda ls: ls[:3] + ["m-lap-us-5", "m-lap-us-5"] + ls[5:], "timer did not advance"),
    (lambda ls: ls[:2] + ["m-infer-start-9"] + ls[3:], "9 inferences"),
    (lambda ls: ls[:-1] + ["m-results-[0.1,zz]"], "malformed results"),
])
def test_incomplete_infer_answers_are_refused(mutate, why):
    with pytest.raises(ProtocolError, match=why):
        protocol.parse_infer(mutate(_infer_lines(1000, 2000)), 10, 1)


def test_board_errors_are_target_errors_not_retried_protocol_errors():
    with pytest.raises(TargetError, match="No input loaded") as info:
        protocol.parse_infer(["e-[No input loaded]"], 10, 1)
    assert not isinstance(info.value, ProtocolError)
