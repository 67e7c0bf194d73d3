"""The demo's HTML report: the summary's figures as plots, in one self-contained file.

Inline SVG and CSS only (no script, no font or library fetched), so it opens offline and
anywhere. `write_report` takes the figures of `otel_llmcost.demo.summary.figures`.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from otel_llmcost.demo.summary import QUANTILES, pct, sampling_note, usd

W, H, PAD = 640, 300, 56
COLORS = ("#2f6fb3", "#e07b39", "#4a9a5b", "#9b59b6")


def _scale(values: Sequence[float], log: bool) -> tuple[float, float]:
    finite = [v for v in values if v is not None and v > (0 if log else -math.inf)]
    if not finite:
        return (0.0, 1.0)
    low, high = (min(finite), max(finite)) if log else (0.0, max(finite))
    if log:
        low, high = math.log10(low) - 0.2, math.log10(high) + 0.2
    return (low, high if high > low else low + 1)


def _y(value: float, bounds: tuple[float, float], log: bool) -> float:
    low, high = bounds
    v = math.log10(value) if log else value
    return H - PAD - (v - low) / (high - low) * (H - 2 * PAD)


def chart(title: str, labels: Sequence[str], series: Sequence[tuple[str, Sequence[Any]]],
          kind: str = "bars", log: bool = False, fmt: Any = usd) -> str:
    """An SVG chart: grouped bars or lines over categorical ``labels``."""
    every = [v for _, vs in series for v in vs if v is not None]
    bounds = _scale(every, log)
    slot = (W - 2 * PAD) / max(1, len(labels))
    parts = [f'<svg viewBox="0 0 {W} {H}" role="img" aria-label="{html.escape(title)}">',
             f'<text x="{PAD}" y="20" class="t">{html.escape(title)}</text>',
             f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" class="axis"/>']
    for index, label in enumerate(labels):
        x = PAD + slot * (index + 0.5)
        parts.append(f'<text x="{x:.1f}" y="{H - PAD + 16}" class="l">{html.escape(label)}</text>')
    for number, (name, values) in enumerate(series):
        color = COLORS[number % len(COLORS)]
        points = []
        for index, value in enumerate(values):
            if value is None or (log and value <= 0):
                continue
            y = _y(value, bounds, log)
            if kind == "bars":
                width = slot * 0.8 / len(series)
                x = PAD + slot * index + slot * 0.1 + width * number
                parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" '
                             f'height="{H - PAD - y:.1f}" fill="{color}">'
                             f'<title>{html.escape(name)} {html.escape(labels[index])}: '
                             f'{html.escape(fmt(value))}</title></rect>')
            else:
                points.append(f"{PAD + slot * (index + 0.5):.1f},{y:.1f}")
        if points:
            parts.append(f'<polyline points="{" ".join(points)}" fill="none" '
                         f'stroke="{color}" stroke-width="2.5"/>')
            parts.extend(f'<circle cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="3.5" '
                         f'fill="{color}"/>' for p in points)
        parts.append(f'<text x="{PAD + 130 * number}" y="40" class="k" '
                     f'fill="{color}">■ {html.escape(name)}</text>')
    top = 10 ** bounds[1] if log else bounds[1]
    parts.append(f'<text x="{W - PAD}" y="{PAD - 2}" class="l" style="text-anchor:end">'
                 f'top of scale: {html.escape(fmt(top))}{" (log)" if log else ""}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _rows(rows: Sequence[tuple[str, str]]) -> str:
    return "".join(f"<tr><td>{html.escape(a)}</td><td>{html.escape(b)}</td></tr>"
                   for a, b in rows)


def render(f: dict[str, Any]) -> str:
    percents = [f"top {p:g} %" for p, _ in f["lorenz"]]
    quantile_labels = [f"p{round(q * 100)}" for q in QUANTILES]
    per = [(name, f[key] or [None] * 3) for name, key in (
        ("call", "per_call"), ("agent trace", "per_trace"), ("conversation", "per_conversation"),
        ("customer-day", "per_customer_day"))]
    hours = dict(f["per_active_by_hour"])
    hour_labels = [f"{h:02d}" for h in range(24)]
    charts = [
        chart("Lorenz curve: share of spend of the top N % of customers", percents,
              [("pipeline", [v for _, v in f["lorenz"]]),
               ("truth", [v for _, v in f["truth_lorenz"]])], kind="lines", fmt=pct),
        chart("Mean cost of a turn, by turn index", [b for b, *_ in f["by_turn"]],
              [("mean cost", [c for _, c, _, _ in f["by_turn"]])], kind="lines"),
        chart("Cost distributions: p50, p90, p99 (log scale)", quantile_labels, per, log=True),
        chart("Spend per active customer by hour of day (UTC)", hour_labels,
              [("spend per active customer", [hours.get(h) for h in hour_labels])]),
    ]
    headline = [
        ("LLM spend (pipeline / truth)", f"{usd(f['spend'])} / {usd(f['truth_spend'])}"),
        ("top 1 % of customers: share of spend (pipeline / truth)",
         f"{pct(f['top1_share'])} / {pct(f['truth_top1_share'])}"),
        ("LLM calls", f"{f['calls']:,}"), ("customers", f"{f['customers']:,}"),
        ("cache: saved by reads / paid for writes",
         f"{usd(f['cache_saving'])} / {usd(f['cache_premium'])}"),
        ("cache hit rate (input tokens)", pct(f["cache_hit_rate"])),
        ("SDK retries / calls failed for good",
         f"{f['retries']:,.0f} / {f['failed_calls']:,.0f}"),
        ("unpriced calls", f"{f['unpriced_calls']:,.0f}"),
        ("runaway agent traces", ", ".join(f["runaways"]) or "none"),
        ("spans exported / seen by the app",
         f"{f['spans_exported']:,.0f} / {f['spans_seen']:,.0f}"),
        ("telemetry cost / LLM spend",
         f"{usd(f['telemetry_cost'])} / {usd(f['spend'])} ({pct(f['telemetry_share'])})"),
    ]
    top = [(customer, usd(value)) for customer, value in f["top_customers"]]
    note = sampling_note(f)
    sampling = f"<p><b>{html.escape(note)}</b></p>" if note else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>otel-llmcost demo: where the money went</title>
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1360px; color: #222; }}
h1 {{ font-size: 1.5em; }} table {{ border-collapse: collapse; margin: 1em 0; }}
td {{ padding: 3px 14px 3px 0; border-bottom: 1px solid #eee; }}
.grid {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 16px; }}
svg {{ width: 100%; background: #fafafa; border: 1px solid #e5e5e5; }}
.t {{ font-size: 14px; font-weight: 600; }} .l {{ font-size: 11px; text-anchor: middle; fill: #555; }}
.k {{ font-size: 12px; }} .axis {{ stroke: #999; }}
</style></head><body>
<h1>otel-llmcost demo: where the money went on one simulated day</h1>
<p>Figures read from the pipeline (the rollup processor and the app's metrics), next to the
workload's ground truth.</p>{sampling}
<table>{_rows(headline)}</table>
<div class="grid">{"".join(charts)}</div>
<h2>Top customers (the day)</h2>
<table>{_rows(top)}</table>
</body></html>
"""


def write_report(figures: dict[str, Any], path: Path) -> Path:
    path.write_text(render(figures), encoding="utf-8")
    return path
