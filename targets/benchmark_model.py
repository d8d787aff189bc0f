"""Parser for the text output of TFLite/LiteRT's `benchmark_model` tool.

The tool prints human-readable lines, not JSON, and their prefixes differ by
build and by how the text was captured: plain (older builds), `INFO: ` (newer
LiteRT builds) or logcat's `I tflite  : ` with or without a timestamp and pids.
This module reads all of them into one `BenchmarkOutput`.

A number is only reported when it was read from a complete line: a last line
without its newline is treated as cut off and ignored, malformed lines are
skipped, and statistics lines are assigned to warm-up or inference only when
the output says which they are (the `Running benchmark for at least …`
headers, or the `Inference timings in us` summary whose averages match).
Everything else stays `None`.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")

# logcat "threadtime" (`11-28 01:40:00.123  1234  1234 I tflite  : `), "brief"
# (`I/tflite  ( 1234): `) and bare (`I tflite  : `) prefixes
_LOGCAT = re.compile(
    r"^(?:(?:\d{4}-)?\d{2}-\d{2}\s+\d{2}:\d{2}:\d{2}(?:\.\d+)?\s+(?:\d+\s+\d+\s+)?)?"
    r"(?P<level>[VDIWEF])(?:\s+|/)tflite\s*(?:\(\s*\d+\))?\s*: ?"
)
_LEVEL = re.compile(r"^(?P<level>INFO|WARNING|ERROR|VERBOSE|DEBUG|FATAL): ")

_STAT_KEYS = {"first", "curr", "min", "max", "avg", "std", "p5", "median", "p95"}
_TIMING_KEYS = {
    "init": "init_us",
    "first inference": "first_inference_us",
    "warmup (avg)": "warmup_avg_us",
    "inference (avg)": "inference_avg_us",
}
_TABLES = {"run order": "run_order", "top by computation time": "top_by_time", "summary by node type": "by_node_type"}
_PHASE_HEADER = re.compile(r"^Running benchmark for at least (\d+) iterations")


@dataclass
class RunStats:
    """One `count=… first=… curr=… min=… max=… avg=… std=…` line, in microseconds."""

    count: int
    first_us: float | None = None
    curr_us: float | None = None
    min_us: float | None = None
    max_us: float | None = None
    avg_us: float | None = None
    std_us: float | None = None
    p5_us: float | None = None
    median_us: float | None = None
    p95_us: float | None = None


@dataclass
class InferenceTimings:
    """The `Inference timings in us: Init: …, First inference: …, …` summary line."""

    init_us: float | None = None
    first_inference_us: float | None = None
    warmup_avg_us: float | None = None
    inference_avg_us: float | None = None


@dataclass
class OpRow:
    """One row of an op-profiling table; times in milliseconds, shares in percent.

    `name` is set for per-node tables (run order, top by time); `count` (nodes
    of that type) for the summary by node type.
    """

    node_type: str
    avg_ms: float
    percent: float
    cdf_percent: float
    name: str | None = None
    count: int | None = None
    start_ms: float | None = None
    first_ms: float | None = None
    mem_kb: float | None = None
    times_called: int | None = None


@dataclass
class OpProfile:
    """One `… Profiling Info for …` block of `--enable_op_profiling=true`."""

    run_order: list[OpRow] = field(default_factory=list)
    top_by_time: list[OpRow] = field(default_factory=list)
    by_node_type: list[OpRow] = field(default_factory=list)
    nodes_executed: int | None = None
    timings: RunStats | None = None


@dataclass
class BenchmarkOutput:
    """Everything one benchmark_model run printed that could be read with certainty."""

    warmup: RunStats | None = None
    inference: RunStats | None = None
    timings: InferenceTimings | None = None
    model_size_mb: float | None = None
    #: `Memory footprint delta from the start of the tool (MB)`: growth of the tool's peak RSS
    memory_delta_init_mb: float | None = None
    memory_delta_overall_mb: float | None = None
    #: `Peak memory footprint (MB): init=… overall=…` (older builds)
    peak_memory_init_mb: float | None = None
    peak_memory_overall_mb: float | None = None
    #: `Overall peak memory footprint (MB) via periodic monitoring`
    periodic_peak_memory_mb: float | None = None
    init_profile: OpProfile | None = None
    op_profile: OpProfile | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def inference_avg_us(self) -> float | None:
        if self.inference is not None and self.inference.avg_us is not None:
            return self.inference.avg_us
        return self.timings.inference_avg_us if self.timings else None


def parse_benchmark_output(text: str) -> BenchmarkOutput:
    """Read `benchmark_model` output; fields the text does not establish are `None`."""
    out = BenchmarkOutput()
    stats: list[tuple[int | None, RunStats]] = []
    phase: int | None = None
    profile: OpProfile | None = None
    table: list[OpRow] | None = None
    columns: list[str] | None = None

    for raw in _complete_lines(text):
        line, is_error = _strip_prefix(raw)
        stripped = line.strip()
        if is_error and stripped:
            out.errors.append(stripped)
        if not stripped:
            table, columns = None, None
            continue
        if "Profiling Info for Benchmark Initialization" in stripped:
            profile, table, columns = OpProfile(), None, None
            out.init_profile = profile
            continue
        if "Profiling Info for Regular Benchmark Runs" in stripped:
            profile, table, columns = OpProfile(), None, None
            out.op_profile = profile
            continue
        banner = re.fullmatch(r"=+\s*(.*?)\s*=+", stripped)
        if banner:
            key = _TABLES.get(banner.group(1).lower())
            table = getattr(profile, key) if profile is not None and key else None
            columns = None
            continue
        if table is not None:
            if columns is None:
                columns = _header_columns(line)
                if columns is not None:
                    continue
                table = None
            else:
                row = _op_row(line, columns)
                if row is not None:
                    table.append(row)
                if row is not None or line.startswith("\t"):
                    continue
                table, columns = None, None
        if stripped.startswith("count="):
            parsed = _parse_stats(stripped)
            if parsed is not None:
                stats.append((phase, parsed))
            continue
        m = _PHASE_HEADER.match(stripped)
        if m:
            phase = 0 if phase is None else phase + 1
            continue
        if profile is not None and stripped.startswith("Timings (microseconds):"):
            profile.timings = _parse_stats(stripped.split(":", 1)[1].strip())
            continue
        if profile is not None and stripped.startswith("Number of nodes executed:"):
            profile.nodes_executed = _int(stripped.split(":", 1)[1])
            continue
        if stripped.startswith("Inference timings in us:"):
            out.timings = _parse_timings(stripped.split(":", 1)[1])
            continue
        if stripped.startswith("The input model file size (MB):"):
            out.model_size_mb = _float(stripped.rsplit(":", 1)[1])
            continue
        if stripped.startswith("Memory footprint delta from the start of the tool (MB):"):
            init, overall = _init_overall(stripped)
            out.memory_delta_init_mb, out.memory_delta_overall_mb = init, overall
            continue
        if stripped.startswith("Peak memory footprint (MB):"):
            out.peak_memory_init_mb, out.peak_memory_overall_mb = _init_overall(stripped)
            continue
        if stripped.startswith("Overall peak memory footprint (MB) via periodic monitoring:"):
            out.periodic_peak_memory_mb = _float(stripped.rsplit(":", 1)[1])
            continue

    out.warmup, out.inference = _classify(stats, out.timings)
    return out


def _complete_lines(text: str) -> list[str]:
    """Lines of `text`; a last line without its newline may be cut off mid-number, so it is dropped."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return lines[:-1]


def _strip_prefix(line: str) -> tuple[str, bool]:
    """Remove logcat and log-level prefixes; say whether the line was logged as an error."""
    is_error = False
    m = _LOGCAT.match(line)
    if m:
        is_error = m.group("level") in "EF"
        line = line[m.end():]
    m = _LEVEL.match(line)
    if m:
        is_error = is_error or m.group("level") in ("ERROR", "FATAL")
        line = line[m.end():]
    if line.strip() == "Benchmarking failed.":
        is_error = True
    return line, is_error


def _float(text: str) -> float | None:
    text = text.strip()
    if not _NUMBER.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def _int(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isdigit() else None


def _parse_stats(text: str) -> RunStats | None:
    """`count=50 first=… avg=2.95e+06 std=…`; `None` if any value is malformed or inconsistent."""
    all_same = text.endswith("(all same)")
    if all_same:
        text = text[: -len("(all same)")].rstrip()
    values: dict[str, float] = {}
    count: int | None = None
    for token in text.split():
        key, sep, value = token.partition("=")
        if not sep:
            return None
        if key == "count":
            count = _int(value)
            if count is None:
                return None
            continue
        number = _float(value)
        if number is None:
            return None
        if key in _STAT_KEYS:
            values[key] = number
    if count is None or count < 1 or "curr" not in values:
        return None
    if set(values) == {"curr"}:
        # printed this way when every sample had the same value
        c = values["curr"]
        values.update(first=c, min=c, max=c, avg=c, std=0.0)
    if any(k not in values for k in ("min", "max", "avg")):
        return None
    if any(v < 0 for v in values.values()):
        return None
    # avg is printed with 6 significant digits, so it may round just past min or max
    slack = 1e-5 * values["max"]
    if not values["min"] - slack <= values["avg"] <= values["max"] + slack:
        return None
    return RunStats(count=count, **{f"{k}_us": v for k, v in values.items()})


def _parse_timings(text: str) -> InferenceTimings | None:
    timings = InferenceTimings()
    found = False
    for part in text.split(","):
        key, sep, value = part.partition(":")
        attr = _TIMING_KEYS.get(key.strip().lower())
        if not sep or attr is None:
            continue
        number = _float(value)
        if number is None:
            return None
        setattr(timings, attr, number)
        found = True
    return timings if found else None


def _init_overall(line: str) -> tuple[float | None, float | None]:
    body = line.rsplit(":", 1)[1]
    m = re.fullmatch(r"\s*init=(\S+)\s+overall=(\S+)\s*", body)
    if not m:
        return None, None
    return _float(m.group(1)), _float(m.group(2))


def _header_columns(line: str) -> list[str] | None:
    """`\t[node type]\t[start]\t…` (or space-aligned, as LiteRT's profile summary prints it) -> normalised
    column names, or None if not a header."""
    cells = [c.strip() for c in line.split("\t") if c.strip()]
    if len(cells) == 1 and "\t" not in line:
        cells = re.findall(r"\[[^\]]*\]", line) if re.fullmatch(r"(\s*\[[^\]]*\])+\s*", line) else cells
    if not cells or not all(c.startswith("[") and c.endswith("]") for c in cells):
        return None
    names = [re.sub(r"\s+", "", c[1:-1].lower()) for c in cells]
    return names if names[0] == "nodetype" else None


def _op_row(line: str, columns: list[str]) -> OpRow | None:
    if "\t" in line:
        cells = [c.strip() for c in line.split("\t")]
        if cells and cells[0] == "":
            cells = cells[1:]
    else:
        cells = _aligned_cells(line, columns)
        if cells is None:
            return None
    if len(cells) != len(columns):
        return None
    row = dict(zip(columns, cells))

    def num(*keys: str) -> float | None:
        for k in keys:
            if k in row:
                return _float(row[k].rstrip("%"))
        return None

    avg, pct, cdf = num("avgms"), num("%", "avg%"), num("cdf%")
    if not row["nodetype"] or avg is None or pct is None or cdf is None:
        return None
    times = num("timescalled")
    count = num("count")
    return OpRow(
        node_type=row["nodetype"],
        avg_ms=avg,
        percent=pct,
        cdf_percent=cdf,
        name=row.get("name"),
        count=int(count) if count is not None else None,
        start_ms=num("start"),
        first_ms=num("first"),
        mem_kb=num("memkb"),
        times_called=int(times) if times is not None else None,
    )


def _aligned_cells(line: str, columns: list[str]) -> list[str] | None:
    """Cells of a space-aligned row: the node type may hold spaces (`Delegate/Convolution (NHWC, QC8) IGEMM`),
    so the row is split at the first run of as many numbers as there are numeric columns."""
    tokens = line.split()
    numeric = len(columns) - 1 - (columns[-1] == "name")
    for i in range(1, len(tokens) - numeric + 1):
        if all(_float(t.rstrip("%")) is not None for t in tokens[i:i + numeric]):
            rest = tokens[i + numeric:]
            if (columns[-1] == "name") != bool(rest):
                continue
            return [" ".join(tokens[:i]), *tokens[i:i + numeric], *([" ".join(rest)] if rest else [])]
    return None


def parse_op_summary(text: str) -> OpProfile | None:
    """The op tables of LiteRT's profile summary (`LiteRtGetProfileSummary`, the same tables as
    `benchmark_model --enable_op_profiling`, space-aligned); None when it holds no table."""
    profile = parse_benchmark_output("Operator-wise Profiling Info for Regular Benchmark Runs:\n" + text + "\n").op_profile
    if profile is None or not (profile.run_order or profile.by_node_type):
        return None
    profile.timings = None  # its `Timings` line sums all profiled runs; the per-run figures are the tables
    return profile


def _classify(stats: list[tuple[int | None, RunStats]],
              timings: InferenceTimings | None) -> tuple[RunStats | None, RunStats | None]:
    """Which statistics line is warm-up and which is inference, when the output says so."""
    phased = [(p, s) for p, s in stats if p is not None]
    if phased and {p for p, _ in phased} <= {0, 1} and len(phased) == len({p for p, _ in phased}):
        by_phase = dict(phased)
        if 1 in by_phase:
            return by_phase.get(0), by_phase[1]
    if timings is None:
        return None, None
    warmup = _matching(stats, timings.warmup_avg_us)
    inference = _matching(stats, timings.inference_avg_us)
    if warmup is inference:
        warmup = None
    return warmup, inference


def _matching(stats: list[tuple[int | None, RunStats]], avg: float | None) -> RunStats | None:
    if avg is None:
        return None
    hits = [s for _, s in stats if s.avg_us is not None and math.isclose(s.avg_us, avg, rel_tol=1e-5)]
    return hits[-1] if len(hits) == 1 or (hits and all(h == hits[0] for h in hits)) else None
