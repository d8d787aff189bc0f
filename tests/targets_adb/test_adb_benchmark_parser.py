"""The benchmark_model output parser, on the real outputs in ../shared and on damaged ones."""
from __future__ import annotations

import pytest

from tests.support.shared import shared_file
from targets.benchmark_model import parse_benchmark_output

REF = "reference/benchmark_model/"


def _read(name: str) -> str:
    return shared_file(REF + name).read_text()


def test_every_reference_file_is_covered(shared_dir):
    names = {p.name for p in (shared_dir / REF).iterdir()}
    assert names == {"android_cpu_yolov5s.txt", "android_logcat_percentiles.txt", "android_nnapi_gpu_yolov5s.txt",
                     "android_xnnpack_threads.txt", "linux_mobilenet_v1_op_profiling.txt"}


def test_android_cpu_plain_lines_and_old_peak_memory_line():
    out = parse_benchmark_output(_read("android_cpu_yolov5s.txt"))
    s = out.inference
    assert (s.count, s.first_us, s.curr_us, s.min_us, s.max_us, s.avg_us, s.std_us) == \
        (50, 249042, 250889, 247067, 254474, 249684, 1442)
    assert s.median_us is None and s.p5_us is None
    assert out.warmup is None  # no warm-up statistics line in this output
    t = out.timings
    assert (t.init_us, t.first_inference_us, t.warmup_avg_us, t.inference_avg_us) == (16242, 360262, 304586, 249684)
    assert (out.peak_memory_init_mb, out.peak_memory_overall_mb) == (4.92969, 138.809)
    assert out.memory_delta_overall_mb is None and out.periodic_peak_memory_mb is None
    assert out.op_profile is None and out.errors == []


def test_logcat_prefix_and_percentiles():
    out = parse_benchmark_output(_read("android_logcat_percentiles.txt"))
    s = out.inference
    assert (s.count, s.first_us, s.min_us, s.max_us, s.avg_us, s.std_us) == (25, 187533, 140071, 195121, 145528, 13583)
    assert (s.p5_us, s.median_us, s.p95_us) == (140545, 141253, 187533)
    assert out.timings.init_us == 92318 and out.timings.warmup_avg_us == 211669
    assert (out.memory_delta_init_mb, out.memory_delta_overall_mb) == (54.2852, 73.4102)


def test_nnapi_gpu_output():
    out = parse_benchmark_output(_read("android_nnapi_gpu_yolov5s.txt"))
    assert (out.inference.count, out.inference.avg_us, out.inference.std_us) == (50, 156669, 2352)
    assert out.timings.init_us == 404292 and out.timings.first_inference_us == 188086
    assert out.peak_memory_overall_mb is None and out.memory_delta_overall_mb is None


def test_summary_only_output_has_mean_but_no_statistics():
    out = parse_benchmark_output(_read("android_xnnpack_threads.txt"))
    assert out.inference is None  # no count= line: no min/max/std invented
    assert out.timings.warmup_avg_us == 59476.1
    assert out.inference_avg_us == 57819.2
    assert out.model_size_mb == 1.01603


def test_linux_op_profiling_scientific_numbers_and_tables():
    out = parse_benchmark_output(_read("linux_mobilenet_v1_op_profiling.txt"))
    assert out.warmup.count == 1 and out.warmup.avg_us == 3512391  # `count=1 curr=3512391`
    s = out.inference
    assert (s.count, s.min_us, s.max_us, s.std_us) == (50, 2727568, 3189954, 109798)
    assert s.avg_us == pytest.approx(2.95034e6)
    assert out.timings.warmup_avg_us == pytest.approx(3.51239e6) and out.timings.init_us == 17187
    assert (out.memory_delta_init_mb, out.memory_delta_overall_mb) == (4.21094, 46.0859)
    assert out.model_size_mb == 16.9008

    init = out.init_profile
    assert [r.node_type for r in init.run_order] == ["AllocateTensors"]
    assert init.run_order[0].avg_ms == 1.356 and init.timings.curr_us == 1356 and init.nodes_executed == 1

    ops = out.op_profile
    assert len(ops.run_order) == 31 and ops.nodes_executed == 31
    first, last = ops.run_order[0], ops.run_order[-1]
    assert (first.node_type, first.start_ms, first.first_ms, first.avg_ms, first.percent, first.cdf_percent) == \
        ("CONV_2D", 0.066, 87.754, 60.957, 2.066, 2.066)
    assert first.name == "[MobilenetV1/MobilenetV1/Conv2d_0/Relu6]:0" and first.times_called == 1
    assert (last.node_type, last.avg_ms, last.cdf_percent) == ("SOFTMAX", 0.233, 100.0)
    assert len(ops.top_by_time) == 10
    assert ops.top_by_time[0].name == "[MobilenetV1/MobilenetV1/Conv2d_5_pointwise/Relu6]:10"
    assert ops.top_by_time[0].avg_ms == 277.374 and ops.top_by_time[-1].cdf_percent == 74.508
    by_type = {r.node_type: r for r in ops.by_node_type}
    assert list(by_type) == ["CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "SOFTMAX", "SQUEEZE"]
    assert (by_type["CONV_2D"].count, by_type["CONV_2D"].avg_ms, by_type["CONV_2D"].percent) == (15, 2651.853, 89.897)
    assert by_type["DEPTHWISE_CONV_2D"].cdf_percent == 99.962 and by_type["CONV_2D"].name is None
    assert ops.timings.count == 50 and ops.timings.avg_us == pytest.approx(2.9499e6)


def test_info_and_threadtime_logcat_prefixes_read_the_same():
    plain = _read("linux_mobilenet_v1_op_profiling.txt")
    info = "".join(f"INFO: {line}\n" for line in plain.splitlines())
    logcat = "".join(f"11-28 01:40:00.123  4321  4321 I tflite  : {line}\n" for line in plain.splitlines())
    brief = "".join(f"I/tflite  ( 4321): {line}\n" for line in plain.splitlines())
    expected = parse_benchmark_output(plain)
    for text in (info, logcat, brief):
        assert parse_benchmark_output(text) == expected


def test_error_lines_are_collected():
    text = "INFO: STARTING!\nERROR: Failed to mmap model /data/local/tmp/x.tflite\nE tflite  : Benchmarking failed.\n"
    out = parse_benchmark_output(text)
    assert out.errors == ["Failed to mmap model /data/local/tmp/x.tflite", "Benchmarking failed."]
    assert out.inference is None and out.timings is None


def test_truncated_output_never_gives_a_cut_number():
    text = _read("android_cpu_yolov5s.txt")
    cut = text[: text.index("avg=249684") + len("avg=249")]  # the connection died mid-line
    out = parse_benchmark_output(cut)
    assert out.inference is None and out.timings is None
    cut = text[: text.index("Inference (avg): 249684") + len("Inference (avg): 24")]
    out = parse_benchmark_output(cut)
    assert out.timings is None  # not Inference (avg) = 24
    assert out.inference is None  # nothing says the count= line was the inference run


def test_truncated_after_warmup_does_not_pass_warmup_off_as_inference():
    text = _read("linux_mobilenet_v1_op_profiling.txt")
    cut = text[: text.index("count=50 first=2990275")]
    out = parse_benchmark_output(cut)
    assert out.warmup is None and out.inference is None
    assert out.timings is None


def test_garbage_and_malformed_lines():
    assert parse_benchmark_output("") == parse_benchmark_output("\x00\xff garbage\n\n")
    out = parse_benchmark_output("count=50 first=abc curr=1 min=1 max=2 avg=1.5 std=0\n"
                                 "Inference timings in us: Init: 1, First inference: x, Warmup (avg): 2, "
                                 "Inference (avg): 1.5\n")
    assert out.inference is None and out.timings is None
    # min > avg cannot come from the tool: rejected rather than reported
    out = parse_benchmark_output("Running benchmark for at least 1 iterations\ncount=1 curr=5\n"
                                 "Running benchmark for at least 5 iterations\n"
                                 "count=5 first=9 curr=9 min=9 max=9 avg=3 std=0\n")
    assert out.warmup is None and out.inference is None
    out = parse_benchmark_output("count=5 first=1 curr=2 min=1 max=2 avg=nan std=0\n"
                                 "Inference timings in us: Init: 1, First inference: 1, Warmup (avg): 1, "
                                 "Inference (avg): inf\n")
    assert out.inference is None and out.timings is None


def test_all_same_statistics_and_headers_order():
    out = parse_benchmark_output("Running benchmark for at least 2 iterations and at least 0.5 seconds\n"
                                 "count=2 curr=700(all same)\n"
                                 "Running benchmark for at least 3 iterations and at least 1 seconds\n"
                                 "count=3 first=510 curr=490 min=490 max=510 avg=500 std=8\n")
    assert (out.warmup.count, out.warmup.min_us, out.warmup.max_us, out.warmup.std_us) == (2, 700, 700, 0)
    assert (out.inference.count, out.inference.avg_us) == (3, 500)


def test_op_table_with_a_damaged_row_keeps_the_others():
    text = _read("linux_mobilenet_v1_op_profiling.txt")
    damaged = text.replace("\t       DEPTHWISE_CONV_2D\t           61.033\t   53.628\t   49.870\t",
                           "\t       DEPTHWISE_CONV_2D\t           61.033\t   53.628\t   4x9.870\t", 1)
    assert damaged != text
    ops = parse_benchmark_output(damaged).op_profile
    assert len(ops.run_order) == 30
    assert all(r.start_ms != 61.033 for r in ops.run_order)
