"""`kit report RUN`: one self-contained HTML page (inline CSS, SVG and a few lines of script; nothing fetched).

Sections: the winner per device class and why; per-device latency
distributions (min, median, p90, p99, max of each measurement); per class,
size vs latency and accuracy (a non-classifier: its MSE or ROC AUC) vs latency with the Pareto front; energy where a
device measured it; every measurement; failures with their causes, one entry
per device and cause. Figures from an estimate (a modelled clock, an energy
model) are drawn hollow and dashed and badged "estimate"; measured ones are
solid. Where a class has both, each artifact is plotted twice (measured and
estimated), so a modelled figure never hides a measured one. Labels are shown
whole, wrapped at their `/` separators, never cut.
"""
from __future__ import annotations

import html
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from kit.core.metrics import FIGURE_NAMES, higher_is_better
from kit.farm.rundata import MEMORY_KINDS, RunData, memory_kind
from kit.farm.choose import ClassChoice, choose

_PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22"]

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#222;
padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}.meta{color:#555}
table{border-collapse:collapse;margin:8px 0;font-size:13px}th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;
vertical-align:top}th{background:#f4f4f4;cursor:pointer;user-select:none}td.num{text-align:right;
font-variant-numeric:tabular-nums}
.badge{display:inline-block;border-radius:3px;padding:0 5px;font-size:11px;font-weight:600;margin-left:4px}
.measured{background:#dff3df;color:#185c18;border:1px solid #9ccf9c}
.estimate{background:#fff;color:#8a4b00;border:1px dashed #c77800}
.ok{color:#185c18}.bad{color:#a00}.none{color:#a00;font-weight:600}
.plots{display:flex;flex-wrap:wrap;gap:16px}.note{color:#555;font-size:12px}
svg text{font:11px system-ui,sans-serif;fill:#333}svg .axis{stroke:#999}svg .grid{stroke:#eee}
pre.cause{white-space:pre-wrap;margin:0;font:12px ui-monospace,monospace}
"""

_SCRIPT = """
document.querySelectorAll('table.sortable th').forEach(function (th, col) {
  th.addEventListener('click', function () {
    var table = th.closest('table'), body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var dir = th.dataset.dir === 'asc' ? -1 : 1;
    th.dataset.dir = dir === 1 ? 'asc' : 'desc';
    rows.sort(function (a, b) {
      var x = a.cells[col].dataset.v !== undefined ? a.cells[col].dataset.v : a.cells[col].textContent;
      var y = b.cells[col].dataset.v !== undefined ? b.cells[col].dataset.v : b.cells[col].textContent;
      var nx = parseFloat(x), ny = parseFloat(y);
      if (!isNaN(nx) && !isNaN(ny)) { return dir * (nx - ny); }
      return dir * String(x).localeCompare(String(y));
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""


def write_report(run: RunData, out: str | Path, choices: list[ClassChoice] | None = None) -> Path:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(run, choices if choices is not None else choose(run)), encoding="utf-8")
    return path


@dataclass
class HtmlInput:
    """What every section of the farm report may read."""

    run: RunData
    choices: list[ClassChoice]
    colors: dict[str, str]  # artifact sha256 -> plot colour, the same in every plot


def _header(r: HtmlInput) -> str:
    e, run = html.escape, r.run
    ok, failed = run.ok(), run.failed()
    planned = len(run.jobs)  # one measurement per job, whichever device of the job takes it
    return "\n".join([
        f"<h1>Farm run <code>{e(run.name)}</code></h1>",
        f"<p class='meta'>{len(run.artifacts)} artifact(s) on {len(run.devices)} device(s) in "
        f"{len(run.classes())} class(es); {len(ok)} measurement(s), {len(failed)} failed job(s), "
        f"{max(0, planned - len(ok) - len(failed))} not run; {_invocations(run)}. Report generated "
        f"{e(time.strftime('%Y-%m-%d %H:%M'))} from <code>{e(str(run.dir))}</code>.</p>",
        "<p class='note'>Legend: <span class='badge measured'>measured</span> on the device; "
        "<span class='badge estimate'>estimate</span> from a model (e.g. an emulated board's modelled clock), "
        "drawn hollow and dashed in the plots. Latency figures are per inference.</p>",
    ])


def _latency(r: HtmlInput) -> str:
    return "\n".join([
        "<h2>Latency per device</h2>",
        "<p class='note'>Each bar: thin line min to max, thick bar median to p90, tick at p99, dot at the median "
        "(log scale). A serial board that times one batch reports its mean only.</p>",
        "<div class='plots'>",
        *(_device_plot(r.run, name, r.colors) for name in sorted(r.run.devices)),
        "</div>",
    ])


def _classes(r: HtmlInput) -> str:
    return "\n".join([
        "<h2>Size, accuracy and latency per device class</h2>",
        "<p class='note'>Latency is the worst device's median: circles over the devices that measured it, hollow "
        "dashed diamonds labelled <i>est.</i> over the devices that estimated it (both are drawn when a class has "
        "both, joined by a thin line). Filled circles are on the Pareto front of the measured figures (no other "
        "artifact is smaller, faster and at least as accurate); the class's winner is ringed at the figure the "
        "choice used.</p>",
        *(_class_plots(choice, r.colors) for choice in r.choices),
    ])


#: the report, top to bottom: a section is a function of the HtmlInput returning HTML
SECTIONS: list[Callable[[HtmlInput], str]] = [
    _header,
    lambda r: _winners(r.choices),
    _latency,
    _classes,
    lambda r: _energy(r.run),
    lambda r: _measurements(r.run),
    lambda r: _failures(r.run),
]


def render(run: RunData, choices: list[ClassChoice]) -> str:
    labels = sorted(a.label for a in run.artifacts.values())
    colors = {sha: _PALETTE[labels.index(a.label) % len(_PALETTE)] for sha, a in run.artifacts.items()}
    r = HtmlInput(run, choices, colors)
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        f"<title>prunekit farm run {html.escape(run.name)}</title><style>{_CSS}</style></head><body>",
        *(section(r) for section in SECTIONS),
        f"<script>{_SCRIPT}</script></body></html>",
    ]
    return "\n".join(parts)


# -- sections ----------------------------------------------------------------------------------------

def _winners(choices: list[ClassChoice]) -> str:
    e = html.escape
    rows = []
    for c in choices:
        limits = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v:,}" for k, v in c.constraints.items())
        if c.winner:
            w = c.winner
            result = (f"<span class='ok'>{e(w.artifact.label)}</span> ({e(w.artifact.format.name)}, "
                      f"{w.artifact.bytes:,} B, {_latencies(w)}, {e(w.artifact.score_text())})")
        else:
            result = (f"<span class='none'>none</span>: "
                      f"{e(c.why_none if not c.candidates else 'no artifact meets the constraints (see why, right)')}")
        same: dict[str, list[str]] = {}  # one line per reason, naming every artifact it applies to
        for x in c.candidates:
            if x is not c.winner:
                same.setdefault("; ".join(x.problems) or "meets the constraints", []).append(x.artifact.label)
        others = "<br>".join(f"{e(', '.join(labels))}: {e(why)}" for why, labels in same.items())
        rows.append(f"<tr><td>{e(c.device_class)}</td><td>{e(', '.join(c.devices))}</td><td>{e(limits or '-')}"
                    f"<br><span class='note'>objective: {e(c.objective)}</span></td><td>{result}</td>"
                    f"<td class='note'>{others}</td></tr>")
    return ("<h2>Chosen model per device class</h2><table><thead><tr><th>class</th><th>devices</th>"
            "<th>constraints</th><th>winner</th><th>other artifacts</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def _device_plot(run: RunData, device: str, colors: dict[str, str]) -> str:
    rows = [m for m in run.ok() if m["device"] == device]
    d = run.devices[device]
    title = f"{device} ({d['class']}, {d['profile']})"
    if not rows:
        return f"<div><h3>{html.escape(title)}</h3><p class='note'>no measurement</p></div>"
    items = [(run.artifacts[m["artifact_sha256"]].label, m, colors[m["artifact_sha256"]])
             for m in sorted(rows, key=lambda m: run.artifacts[m["artifact_sha256"]].label)]
    return f"<div><h3>{html.escape(title)}</h3>{_range_svg(items)}</div>"


def _class_plots(choice: ClassChoice, colors: dict[str, str]) -> str:
    e = html.escape
    measured = [c for c in choice.candidates if c.latency_us is not None]
    if not measured:
        return f"<h3>{e(choice.device_class)}</h3><p class='note'>nothing measured</p>"
    # the front is drawn through measured figures; through estimates only in a class that measured nothing
    on_device = [c for c in measured if c.measured_latency_us is not None]
    front = _pareto(on_device, lambda c: c.measured_latency_us) if on_device else _pareto(measured)
    size_pts = [(c.artifact.bytes / 1024, ms, c, c in front and not (est and on_device), est, chosen)
                for c in measured for ms, est, chosen in _latency_points(c)]
    out = [f"<h3>{e(choice.device_class)}</h3><div class='plots'>",
           _scatter_svg(size_pts, "model size (KiB)", "latency (ms)", choice.winner, colors)]
    scored = [c for c in measured if c.artifact.score() is not None]
    metrics = sorted({c.artifact.score()[0] for c in scored})
    if len(metrics) == 1:  # one figure for all (top-1, or a non-classifier's MSE or ROC AUC): plotted with its name
        metric = metrics[0]
        scale = 100.0 if metric == "top1" else 1.0
        fig_pts = [(c.artifact.score()[1] * scale, ms, c, c in front and not (est and on_device), est, chosen)
                   for c in scored for ms, est, chosen in _latency_points(c)]
        x_label = "accuracy (%)" if metric == "top1" else FIGURE_NAMES[metric] + (" (lower is better)"
                                                                                  if metric == "mse" else "")
        out.append(_scatter_svg(fig_pts, x_label, "latency (ms)", choice.winner, colors, log_x=False))
    elif metrics:
        out.append(f"<p class='note'>no accuracy plot: the artifacts are scored by different figures "
                   f"({e(', '.join(FIGURE_NAMES[m] for m in metrics))})</p>")
    else:
        out.append("<p class='note'>no accuracy figures: the artifacts were given without one</p>")
    out.append("</div>")
    return "".join(out)


def _latency_points(c) -> list[tuple[float, bool, bool]]:
    """(latency ms, is an estimate, is the figure the choice used) for each kind of figure the candidate has."""
    points = [(us / 1000, est, us == c.latency_us)
              for us, est in ((c.measured_latency_us, False), (c.estimated_latency_us, True)) if us is not None]
    return points or [(c.latency_us / 1000, c.estimate, True)]


def _latencies(c) -> str:
    """The winner's latency: measured and estimated figures side by side when it has both."""
    if c.measured_latency_us is not None and c.estimated_latency_us is not None:
        return (f"{_ms(c.measured_latency_us)}{_badge_measured()}, {_ms(c.estimated_latency_us)}"
                f"{_badge(True)}")
    return f"{_ms(c.latency_us)}{_badge(c.estimate)}"


def _energy(run: RunData) -> str:
    e = html.escape
    rows = [m for m in run.ok() if m["energy_uj"] is not None]
    if not rows:
        notes = sorted({m["energy_note"] for m in run.ok() if m["energy_note"]})
        return ("<h2>Energy</h2><p>No device measured energy in this run.</p>"
                + "".join(f"<p class='note'>{e(n)}</p>" for n in notes[:8]))
    body = "".join(
        f"<tr><td>{e(run.artifacts[m['artifact_sha256']].label)}</td><td>{e(m['device'])}</td>"
        f"<td class='num'>{m['energy_uj']:.4g}</td><td>{e(m['energy_method'] or '')}"
        f"{_badge(bool(m['estimate']))}</td><td class='note'>{e(m['energy_note'] or '')}</td></tr>"
        for m in rows)
    return ("<h2>Energy</h2><table class='sortable'><thead><tr><th>artifact</th><th>device</th><th>µJ/inference</th>"
            "<th>method</th><th>note</th></tr></thead><tbody>" + body + "</tbody></table>")


def _measurements(run: RunData) -> str:
    e = html.escape
    rows = []
    kinds = [k for k in MEMORY_KINDS if any(memory_kind(m["memory_method"]) == k for m in run.ok())]
    for m in run.ok():
        a = run.artifacts[m["artifact_sha256"]]
        cells = [f"<td class='num'>{_num(m[k])}</td>"
                 for k in ("latency_median_us", "latency_p90_us", "latency_p99_us", "latency_mean_us")]
        rows.append(
            f"<tr><td>{e(a.label)}</td><td>{e(a.format.name)}</td><td class='num' data-v='{a.bytes}'>{a.bytes:,}</td>"
            f"{_figure_cell(a)}<td>{e(m['device'])}</td><td>{e(m['device_class'] or '')}</td>"
            + "".join(cells)
            + f"<td class='num'>{_num(m['init_us'])}</td>"
            + "".join(_memory_cell(m, k) for k in kinds) +
            f"<td>{_badge(bool(m['estimate'])) if m['estimate'] else _badge_measured()}</td>"
            f"<td class='num'>{m['seconds']:.1f}</td></tr>")
    memory_note = "".join(f" <b>{e(MEMORY_KINDS[k][0])}</b>: {e(MEMORY_KINDS[k][1])}." for k in kinds)
    return ("<h2>All measurements</h2><p class='note'>Click a column to sort. Latencies in µs." + memory_note
            + "</p><table class='sortable'><thead><tr><th>artifact</th><th>format</th><th>bytes</th>"
            f"<th>{_figure_header(run)}</th>"
            "<th>device</th><th>class</th><th>median</th><th>p90</th><th>p99</th><th>mean</th><th>init</th>"
            + "".join(f"<th>{e(MEMORY_KINDS[k][0])}</th>" for k in kinds)
            + "<th>kind</th><th>job s</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _memory_cell(m: dict[str, Any], kind: str) -> str:
    value = m["peak_memory_bytes"] if memory_kind(m["memory_method"]) == kind else None
    title = f" title='{html.escape(m['memory_method'])}'" if value is not None else ""
    return f"<td class='num' data-v='{value or 0}'{title}>{_bytes(value)}</td>"


def _failures(run: RunData) -> str:
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(', '.join(g.devices))}</td><td>"
        f"{'device unreachable, dropped out' if g.device_lost else 'the artifact failed'}</td>"
        f"<td>{g.jobs}: {e(', '.join(g.artifacts))}</td>"
        f"<td class='bad'><pre class='cause'>{e(g.cause)}</pre></td></tr>" for g in run.failure_groups())
    skipped = "".join(f"<tr><td>{e(n['name'])}</td><td>{e(n['class'])}</td><td>{e(n['reason'])}</td></tr>"
                      for n in run.plan.get("not_planned", []))
    out = ["<h2>Failures</h2>"]
    out.append("<p class='note'>One row per cause, naming every device it happened on.</p><table><thead><tr>"
               "<th>device</th><th>kind</th><th>jobs</th><th>cause</th></tr></thead><tbody>" + rows + "</tbody></table>"
               if rows else "<p>No job failed.</p>")
    if skipped:
        out.append("<h3>Not profiled</h3><table><thead><tr><th>artifact</th><th>class</th><th>why</th></tr></thead>"
                   "<tbody>" + skipped + "</tbody></table>")
    return "".join(out)


# -- plots -------------------------------------------------------------------------------------------

def _range_svg(items: list[tuple[str, dict[str, Any], str]]) -> str:
    """One row per measurement: min..max line, median..p90 bar, p99 tick, median dot; log-scaled µs."""
    values = [v for _, m, _ in items for v in (m["latency_min_us"], m["latency_max_us"], m["latency_mean_us"])
              if v is not None and v > 0]
    lo, hi = _log_bounds(values)
    label_w, plot_w, top = 190, 330, 10
    labels = [_wrap(label + (" (est.)" if m["estimate"] else ""), 30) for label, m, _ in items]
    heights = [max(22, 13 * len(lines) + 8) for lines in labels]
    bottom = top + sum(heights)
    width, height = label_w + plot_w + 20, bottom + 34
    x = _log_scale(lo, hi, label_w, label_w + plot_w)
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img'>"]
    out += _x_ticks(lo, hi, x, top, bottom, "latency (µs)")
    row_top = top
    for (label, m, color), lines, row_h in zip(items, labels, heights):
        y = row_top + row_h / 2
        row_top += row_h
        estimate = bool(m["estimate"])
        median = m["latency_median_us"] if m["latency_median_us"] is not None else m["latency_mean_us"]
        dash = " stroke-dasharray='3,2'" if estimate else ""
        out.append(_text_lines(label_w - 6, y + 4 - 6.5 * (len(lines) - 1), lines, "end"))
        if m["latency_min_us"] and m["latency_max_us"]:
            out.append(f"<line x1='{x(m['latency_min_us']):.1f}' x2='{x(m['latency_max_us']):.1f}' y1='{y}' "
                       f"y2='{y}' stroke='{color}' stroke-width='1.5'{dash}/>")
        if m["latency_p90_us"] and median:
            fill = "none" if estimate else color
            bar = max(1.0, x(m["latency_p90_us"]) - x(median))
            out.append(f"<rect x='{x(median):.1f}' y='{y - 5}' width='{bar:.1f}'"
                       f" height='10' fill='{fill}' fill-opacity='0.5' stroke='{color}'{dash}/>")
        if m["latency_p99_us"]:
            out.append(f"<line x1='{x(m['latency_p99_us']):.1f}' x2='{x(m['latency_p99_us']):.1f}' y1='{y - 7}' "
                       f"y2='{y + 7}' stroke='{color}' stroke-width='2'/>")
        if median:
            fill = "white" if estimate else color
            out.append(f"<circle cx='{x(median):.1f}' cy='{y}' r='4' fill='{fill}' stroke='{color}' stroke-width='1.5'>"
                       f"<title>{html.escape(label)}: median {median:.1f} µs</title></circle>")
    out.append("</svg>")
    return "".join(out)


def _scatter_svg(points: list[tuple[float, float, Any, bool, bool, bool]], x_label: str, y_label: str, winner: Any,
                 colors: dict[str, str], log_x: bool = True) -> str:
    """points: (x, y, candidate, on the Pareto front, is an estimate, is the figure the choice used); a candidate
    may have a measured and an estimated point. The legend names every candidate in full."""
    left, right, top, bottom = 60, 190, 12, 44
    plot_w, plot_h = 300, 220
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    ylo, yhi = _log_bounds(ys)
    y = _log_scale(ylo, yhi, top + plot_h, top)
    if log_x:
        xlo, xhi = _log_bounds(xs)
        x = _log_scale(xlo, xhi, left, left + plot_w)
    else:
        xlo, xhi = _linear_bounds(xs)
        x = _linear_scale(xlo, xhi, left, left + plot_w)
    legend: dict[str, tuple[Any, set[bool]]] = {}
    for _, _, cand, _, est, _ in points:
        legend.setdefault(cand.artifact.sha256, (cand, set()))[1].add(est)
    legend_lines = [_wrap(c.artifact.label + (" (measured, est.)" if kinds == {True, False} else
                                              " (est.)" if kinds == {True} else ""), 28)
                    for c, kinds in legend.values()]
    legend_h = sum(13 * len(lines) + 4 for lines in legend_lines)
    width, height = left + plot_w + right, max(top + plot_h + bottom, top + legend_h + 10)
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img'>",
           f"<rect x='{left}' y='{top}' width='{plot_w}' height='{plot_h}' fill='none' class='axis'/>"]
    out += _x_ticks(xlo, xhi, x, top, top + plot_h, x_label, log=log_x)
    for value in _ticks(ylo, yhi, log=True):
        yy = y(value)
        out.append(f"<line x1='{left}' x2='{left + plot_w}' y1='{yy:.1f}' y2='{yy:.1f}' class='grid'/>"
                   f"<text x='{left - 4}' y='{yy + 4:.1f}' text-anchor='end'>{_tick_text(value)}</text>")
    out.append(f"<text transform='translate(14,{top + plot_h / 2}) rotate(-90)' text-anchor='middle'>"
               f"{html.escape(y_label)}</text>")
    front = sorted((p for p in points if p[3]), key=lambda p: p[0])
    if len(front) > 1:
        path = " ".join(f"{x(px):.1f},{y(py):.1f}" for px, py, *_ in front)
        out.append(f"<polyline points='{path}' fill='none' stroke='#555' stroke-dasharray='4,3'/>")
    pairs: dict[str, list[tuple[float, float]]] = {}
    for px, py, cand, *_ in points:
        pairs.setdefault(cand.artifact.sha256, []).append((x(px), y(py)))
    for sha, xy in pairs.items():  # an artifact's measured and estimated figures, joined
        if len(xy) == 2:
            out.append(f"<line x1='{xy[0][0]:.1f}' y1='{xy[0][1]:.1f}' x2='{xy[1][0]:.1f}' y2='{xy[1][1]:.1f}' "
                       f"stroke='{colors[sha]}' stroke-opacity='0.5'/>")
    for px, py, cand, on_front, est, chosen in points:
        color = colors[cand.artifact.sha256]
        cx, cy = x(px), y(py)
        fill = color if on_front and not est else "white"
        dash = " stroke-dasharray='2,2'" if est else ""
        if cand is winner and chosen:
            out.append(f"<circle cx='{cx:.1f}' cy='{cy:.1f}' r='9' fill='none' stroke='#111' stroke-width='1.5'/>")
        shape = (f"<rect x='{cx - 4.5:.1f}' y='{cy - 4.5:.1f}' width='9' height='9' transform='rotate(45 {cx:.1f} "
                 f"{cy:.1f})'" if est else f"<circle cx='{cx:.1f}' cy='{cy:.1f}' r='5'")
        kind = "estimate" if est else "measured"
        tip = f"{cand.artifact.label}: {cand.artifact.bytes:,} B, {kind} {_ms(py * 1000)}, {cand.artifact.score_text()}"
        out.append(f"{shape} fill='{fill}' stroke='{color}' stroke-width='2'{dash} data-kind='{kind}'>"
                   f"<title>{html.escape(tip)}</title>{'</rect>' if est else '</circle>'}")
        if est:
            out.append(f"<text x='{cx + 7:.1f}' y='{cy + 4:.1f}' class='est'>est.</text>")
    ly = top + 10
    for (cand, kinds), lines in zip(legend.values(), legend_lines):
        color = colors[cand.artifact.sha256]
        out.append(f"<circle cx='{left + plot_w + 14}' cy='{ly - 4}' r='4' fill='{color}' stroke='{color}'/>"
                   + _text_lines(left + plot_w + 22, ly, lines, "start"))
        ly += 13 * len(lines) + 4
    out.append("</svg>")
    return "".join(out)


def _wrap(text: str, width: int) -> list[str]:
    """Lines of at most `width` characters, broken after `/` (else `-`, `_` or a space) where possible: a label
    shown whole."""
    pieces = [p for p in re.split(r"(?<=/)", text) if p]
    pieces = [q for p in pieces for q in ([p] if len(p) <= width else re.split(r"(?<=[-_ ])", p)) if q]
    lines: list[str] = []
    for piece in pieces:
        if lines and len(lines[-1]) + len(piece) <= width:
            lines[-1] += piece
            continue
        while len(piece) > width:  # one segment longer than a line: continued on the next
            lines.append(piece[:width])
            piece = piece[width:]
        if piece:
            lines.append(piece)
    return lines or [""]


def _text_lines(x: float, y: float, lines: list[str], anchor: str) -> str:
    """A <text> of several lines (tspans); the first line's baseline at `y`."""
    spans = "".join(f"<tspan x='{x:.1f}' dy='{0 if i == 0 else 13}'>{html.escape(line)}</tspan>"
                    for i, line in enumerate(lines))
    return f"<text x='{x:.1f}' y='{y:.1f}' text-anchor='{anchor}'>{spans}</text>"


def _signed_score(a) -> float:
    """The artifact's figure with higher = better (minus an MSE); unknown: lowest."""
    score = a.score()
    if score is None:
        return -math.inf
    return score[1] if higher_is_better(score[0]) else -score[1]


def _pareto(cands: list, latency: Callable[[Any], float] = lambda c: c.latency_us) -> list:
    """Non-dominated on (size smaller, latency lower, figure better: top-1 or ROC AUC higher, MSE lower;
    an unknown figure counts as the worst)."""
    def acc(c) -> float:
        return _signed_score(c.artifact)

    front = []
    for c in cands:
        dominated = any(o is not c and o.artifact.bytes <= c.artifact.bytes and latency(o) <= latency(c)
                        and acc(o) >= acc(c) and (o.artifact.bytes < c.artifact.bytes or latency(o) < latency(c)
                                                  or acc(o) > acc(c)) for o in cands)
        if not dominated:
            front.append(c)
    return front


# -- scales and formatting -----------------------------------------------------------------------------

def _log_bounds(values: Iterable[float]) -> tuple[float, float]:
    vs = [v for v in values if v and v > 0] or [1.0]
    lo, hi = min(vs) / 1.25, max(vs) * 1.25  # keep markers off the frame
    lo, hi = 10 ** math.floor(math.log10(lo)), 10 ** math.ceil(math.log10(hi))
    return (lo, hi * 10) if lo == hi else (lo, hi)


def _linear_bounds(values: list[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.1 or 1.0
    return lo - pad, hi + pad


def _log_scale(lo: float, hi: float, a: float, b: float):
    span = math.log10(hi) - math.log10(lo)
    return lambda v: a + (math.log10(max(v, lo)) - math.log10(lo)) / span * (b - a)


def _linear_scale(lo: float, hi: float, a: float, b: float):
    return lambda v: a + (v - lo) / (hi - lo) * (b - a)


def _ticks(lo: float, hi: float, log: bool) -> list[float]:
    if log:
        decades = int(round(math.log10(hi / lo)))
        steps = (1, 2, 5) if decades <= 2 else (1,)
        return [m * 10 ** e for e in range(int(round(math.log10(lo))), int(round(math.log10(hi))) + 1)
                for m in steps if lo <= m * 10 ** e <= hi]
    raw = (hi - lo) / 5
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step + 1e-9) + 1)]


def _x_ticks(lo: float, hi: float, x, top: float, bottom: float, label: str, log: bool = True) -> list[str]:
    out = []
    for value in _ticks(lo, hi, log):
        xx = x(value)
        out.append(f"<line x1='{xx:.1f}' x2='{xx:.1f}' y1='{top}' y2='{bottom}' class='grid'/>"
                   f"<text x='{xx:.1f}' y='{bottom + 14}' text-anchor='middle'>{_tick_text(value)}</text>")
    out.append(f"<text x='{(x(lo) + x(hi)) / 2:.1f}' y='{bottom + 30}' text-anchor='middle'>"
               f"{html.escape(label)}</text>")
    return out


def _tick_text(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:g}M"
    if v >= 1e3:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


def _invocations(run: RunData) -> str:
    """How the run came about: one invocation, or resumed after an interruption or a crash."""
    n = len(run.invocations)
    unfinished = sum(1 for i in run.invocations if i["status"] != "finished")
    if n <= 1:
        return "measured in one invocation of kit run"
    return f"measured over {n} invocations of kit run ({unfinished} interrupted or killed, then resumed)"


def _badge(estimate: bool) -> str:
    return "<span class='badge estimate'>estimate</span>" if estimate else ""


def _badge_measured() -> str:
    return "<span class='badge measured'>measured</span>"


def _ms(us: float | None) -> str:
    return "-" if us is None else f"{us / 1000:.3g} ms"


def _figure_cell(a) -> str:
    """A classifier's top-1 as a percentage; another model's task figure with its name (`MSE 0.0123`), sorted
    by its value."""
    if a.classifier:
        return f"<td class='num'>{_pct(a.accuracy)}</td>"
    score = a.score()
    value = "" if score is None else f" data-v='{score[1]:.6g}'"
    return f"<td class='num'{value}>{html.escape(a.score_text())}</td>"


def _figure_header(run: RunData) -> str:
    """`accuracy` when every artifact is a classifier; `accuracy / figure` when some carry their task's figure."""
    return "accuracy" if all(a.classifier for a in run.artifacts.values()) else "accuracy / figure"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:,.1f}"


def _bytes(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1024:,.1f} KiB" if n >= 1024 else f"{n} B"
