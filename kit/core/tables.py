"""Plain-text tables for the terminal and Markdown reports."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from kit.core.measurement import ProfileResult


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], markdown: bool = False) -> str:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    if markdown:
        lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |",
                 "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    else:
        lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip(),
                 "  ".join("-" * w for w in widths)]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines)


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.3g}"
        return f"{v:.4g}" if abs(v) < 10 else f"{v:,.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def profile_table(results: Sequence["ProfileResult"], markdown: bool = False) -> str:
    headers = ["model", "target", "runtime", "delegate", "thr", "mean us", "median us", "p90 us", "p99 us", "std us",
               "init us", "peak memory", "energy uJ/inf", ""]
    rows = []
    for r in results:
        lat = r.latency
        rows.append([
            r.artifact.path.rsplit("/", 1)[-1], r.target, f"{r.device.runtime or '-'} {r.device.runtime_version or ''}".strip(),
            r.settings.delegate, r.settings.threads,
            lat.mean_us if lat else None, lat.median_us if lat else None, lat.p90_us if lat else None, lat.p99_us if lat else None,
            lat.std_us if lat else None, r.init_us,
            _memory(r.peak_memory_bytes, r.memory_method), r.energy_uj_per_inference,
            "estimate" if r.estimate else "",
        ])
    return format_table(headers, rows, markdown)


def _memory(n: int | None, method: str | None) -> str | None:
    """A memory figure with what it measures: process RSS and a TFLM arena differ by orders of magnitude."""
    text = _bytes(n)
    m = (method or "").lower()
    kind = "process RSS" if "rss" in m else "arena" if "arena" in m else "process footprint" if "process" in m \
        else ""
    return f"{text} {kind}".rstrip() if text else text


def _bytes(n: int | None) -> str | None:
    if n is None:
        return None
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return None
