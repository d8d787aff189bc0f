"""Every accuracy figure of report.md and `kit demo` names the split it was measured on, and a figure on fewer
samples says which ones (the report once gave one model two top-1s without saying they came from different
samples)."""
import re

import pytest

from tests.pipeline.test_frontier_pipeline import frontier_run  # noqa: F401  (the run both files read)


def _accuracy_lines(text: str) -> list[str]:
    """Lines that state or head a top-1 / top-5 figure (agreement between models is not an accuracy)."""
    return [line for line in text.splitlines()
            if re.search(r"top-[15]", line) and "agreement" not in line.split("top-", 1)[1][:12]]


@pytest.mark.slow
def test_the_report_names_the_split_next_to_each_top1(frontier_run):  # noqa: F811
    report = (frontier_run.out_dir / "report.md").read_text()
    lines = _accuracy_lines(report)
    assert len(lines) >= 6, lines
    for line in lines:
        if line.startswith("|"):  # a table: the header names the split of each accuracy column
            for cell in line.split("|"):
                if re.search(r"top-[15]", cell):
                    assert "split" in cell, (cell, line)
        else:
            assert "test split" in line or "validation split" in line, line
    n = frontier_run.baseline.checks[0].samples
    assert f"## Keras accuracy (test split, {n:,} samples)" in report
    for label, value in frontier_run.keras_accuracy.items():
        assert f"- {label}: top-1 {100 * value:.2f}% (test split, {n:,} samples)" in report
    # the metrics section scores fewer samples: it says which, and the Keras section says its figures differ
    assert f"top-1 (Keras, test split, first 100 of {n:,} samples)" in report
    assert "The Metrics section scores the first 100 of these samples" in report


@pytest.mark.slow
def test_the_demo_summary_names_the_split(frontier_run):  # noqa: F811
    from kit.commands.demo import summary

    text = summary(frontier_run, {"float32": 2.5}, 20)
    n = frontier_run.baseline.checks[0].samples
    assert "top-1 (test split)" in text.splitlines()[0]
    assert f"top-1: test split, {n:,} samples of {frontier_run.dataset}" in text
    assert "frontier us: the latency that chose what ships: LiteRT Interpreter, XNNPACK" in text
    assert "median us: the host profile of each shipped artifact" in text
    assert re.search(r"^float32 +default ", text, re.MULTILINE) and "default: float32 (" in text
