"""The demo's figures: tail cost as the pipeline shows it, beside the workload's truth.

`figures` computes them from an `Outcome` (the processor's rollups, the app's metrics);
`print_summary` prints them with rich. Quantiles of a histogram are interpolated inside
its bucket, as Prometheus's ``histogram_quantile`` does, so they match the dashboards.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from otel_llmcost import semconv as sc
from otel_llmcost.semconv import prometheus_label

if TYPE_CHECKING:
    from otel_llmcost.demo.run import Outcome

QUANTILES = (0.5, 0.9, 0.99)
DAY = "1d"


def quantile(q: float, bounds: Sequence[float], counts: Sequence[float]) -> float | None:
    """``histogram_quantile``: ``counts`` per bucket (the last one above every bound)."""
    total = sum(counts)
    if total <= 0:
        return None
    rank, seen = q * total, 0.0
    for index, count in enumerate(counts):
        if seen + count >= rank and count > 0:
            if index == len(bounds):  # above the last bound: the last bound is all we know
                return bounds[-1]
            lower = bounds[index - 1] if index else 0.0
            return lower + (bounds[index] - lower) * (rank - seen) / count
        seen += count
    return bounds[-1]


def _app_histogram(app: dict[str, list[tuple[dict[str, str], float]]], name: str
                   ) -> tuple[list[float], list[float]]:
    """Bounds and per-bucket counts of an app histogram, summed over its series."""
    cumulative: dict[float, float] = {}
    for labels, value in app.get(name + "_bucket", []):
        bound = float(labels["le"])
        cumulative[bound] = cumulative.get(bound, 0.0) + value
    bounds = sorted(b for b in cumulative if b != float("inf"))
    running = [cumulative[b] for b in bounds] + [cumulative.get(float("inf"), 0.0)]
    counts = [running[0]] + [running[i] - running[i - 1] for i in range(1, len(running))]
    return bounds, counts


def app_sum(app: dict[str, list[tuple[dict[str, str], float]]], name: str,
            **labels: str) -> float:
    """Sum of an app metric's samples over the series that have ``labels``."""
    wanted = {prometheus_label(k): v for k, v in labels.items()}
    return sum(value for found, value in app.get(name, [])
               if all(found.get(k) == v for k, v in wanted.items()))


def figures(outcome: Outcome) -> dict[str, Any]:
    """Every figure of the summary and the report, from the pipeline (and the truth)."""
    truth, app, h, g, c = (outcome.truth, outcome.app, outcome.histograms, outcome.gauges,
                           outcome.counters)

    def engine_quantiles(metric: sc.MetricDef, labels: tuple[str, ...] = ()) -> list[Any]:
        found = h.get((metric.name, labels))
        return [quantile(q, found.bounds, found.counts) if found else None for q in QUANTILES]

    bounds, counts = _app_histogram(app, sc.M_REQUEST_COST.prometheus)
    top = sorted(((labels[1], v) for (name, labels), v in g.items()
                  if name == sc.M_CUSTOMER_TOP_COST.name and labels[0] == DAY
                  and not labels[1].startswith("__")), key=lambda kv: -kv[1])
    shares = {labels[1]: v for (name, labels), v in g.items()
              if name == sc.M_CUSTOMER_SPEND_SHARE.name and labels[0] == DAY}
    by_turn = []
    for _, label in sc.TURN_BUCKETS:
        found = h.get((sc.M_TURN_COST.name, (label,)))
        if found and found.count:
            tokens = h[(sc.M_TURN_INPUT_TOKENS.name, (label,))]
            by_turn.append((label, found.sum / found.count, tokens.sum / tokens.count,
                            found.count))
    per_active = {labels[0]: v for (name, labels), v in g.items()
                  if name == sc.M_CUSTOMER_COST_PER_ACTIVE.name}
    night = [v for hour, v in per_active.items() if int(hour) < 6]
    daytime = [v for hour, v in per_active.items() if int(hour) >= 6]
    cost = sc.M_COST.prometheus
    spend = app_sum(app, cost)
    saving = app_sum(app, sc.M_CACHE_SAVINGS.prometheus,
                      **{sc.LLMCOST_CACHE_EFFECT: sc.CACHE_EFFECT_SAVING})
    premium = app_sum(app, sc.M_CACHE_SAVINGS.prometheus,
                       **{sc.LLMCOST_CACHE_EFFECT: sc.CACHE_EFFECT_PREMIUM})
    tokens = sc.M_TOKENS.prometheus
    read = app_sum(app, tokens, **{sc.LLMCOST_TOKEN_KIND: "cache_read"})
    all_input = read + sum(app_sum(app, tokens, **{sc.LLMCOST_TOKEN_KIND: kind})
                           for kind in ("input_uncached", "cache_write"))
    failed = sum(v for labels, v in app.get(sc.M_OPERATION_DURATION.prometheus + "_count", [])
                 if labels.get(prometheus_label(sc.ERROR_TYPE)))
    telemetry = app_sum(app, sc.M_TELEMETRY_COST.prometheus)
    seen = app_sum(app, sc.M_TELEMETRY_SPANS_SEEN.prometheus)
    exported = app_sum(app, sc.M_TELEMETRY_SPANS_EXPORTED.prometheus)
    return {
        "spend": spend, "truth_spend": truth.total,
        "top1_share": shares.get("1"), "truth_top1_share": truth.top_share(1.0),
        "lorenz": [(float(p), shares.get(f"{p:g}")) for p in sc.SPEND_SHARE_PERCENTS],
        "truth_lorenz": [(p, truth.top_share(p)) for p in sc.SPEND_SHARE_PERCENTS],
        "top_customers": top[:10],
        "truth_top_customers": sorted(truth.customers.items(), key=lambda kv: -kv[1])[:10],
        "per_call": [quantile(q, bounds, counts) for q in QUANTILES] if bounds else None,
        "per_conversation": engine_quantiles(sc.M_CONVERSATION_COST),
        "per_customer_day": engine_quantiles(sc.M_CUSTOMER_WINDOW_COST, (DAY,)),
        "per_trace": engine_quantiles(sc.M_TRACE_COST),
        "by_turn": by_turn,
        "per_active_by_hour": sorted(per_active.items()),
        "night_per_active": sum(night) / len(night) if night else None,
        "day_per_active": sum(daytime) / len(daytime) if daytime else None,
        "cache_saving": saving, "cache_premium": premium,
        "cache_hit_rate": read / all_input if all_input else None,
        "retries": c.get((sc.M_TRACE_RETRIES.name, ()), 0.0),
        "failed_calls": failed,
        "unpriced_calls": app_sum(app, sc.M_UNPRICED_CALLS.prometheus),
        "runaways": outcome.runaway_ids,
        "would_refuse": app_sum(app, sc.M_BUDGET_REFUSED.prometheus),
        "anomalies": [a for a in outcome.anomalies
                      if a[sc.LLMCOST_ANOMALY_STATE] == sc.ANOMALY_STARTED],
        "telemetry_cost": telemetry, "telemetry_share": telemetry / spend if spend else None,
        "spans_seen": seen, "spans_exported": exported, "sampled": exported < seen,
        "calls": outcome.calls, "truth_calls": truth.calls, "errors": outcome.errors,
        "customers": len(truth.customers), "wall_s": outcome.wall_s,
    }


def anomaly_line(anomaly: dict[str, Any]) -> str:
    """One started anomaly: kind, whose, when (UTC, event time) and how far off."""
    when = time.strftime("%H:%M", time.gmtime(anomaly["time_unix_ns"] / 1e9))
    who = anomaly[sc.LLMCOST_CUSTOMER_ID] or "all customers"
    if anomaly[sc.LLMCOST_ANOMALY_KIND] == sc.ANOMALY_RUNAWAY_TRACE:
        figure = f"{anomaly[sc.LLMCOST_ANOMALY_LLM_CALLS]} calls"
    else:
        figure = (f"{usd(anomaly[sc.LLMCOST_ANOMALY_RATE])}/h vs "
                  f"{usd(anomaly[sc.LLMCOST_ANOMALY_BASELINE])}/h")
    return f"{anomaly[sc.LLMCOST_ANOMALY_KIND]} {who} {when} ({figure})"


def usd(value: float | None) -> str:
    """Dollars, with cents above $1 and four decimals below (shared with the report)."""
    if value is None:
        return "—"
    return f"${value:,.2f}" if value >= 1 else f"${value:.4f}"


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def sampling_note(f: dict[str, Any]) -> str | None:
    """What a reader must know when traces were sampled (shared with the report)."""
    if not f["sampled"]:
        return None
    return (f"Traces were sampled: {f['spans_exported']:,.0f} of {f['spans_seen']:,.0f} spans "
            "exported. The processor's figures (shares, customers, conversations, traces) are "
            "estimates from the kept spans weighted by llmcost.sampling.adjusted_count; spend, "
            "tokens, cache and telemetry cost are metrics of every call, exact.")


def print_summary(outcome: Outcome, console: Console) -> dict[str, Any]:
    f = figures(outcome)
    console.print()
    console.print(f"[bold]A simulated day[/]: {f['calls']:,} LLM calls ({f['errors']} failed for "
                  f"good) by {f['customers']} customers, in {f['wall_s']:.0f} s.")
    note = sampling_note(f)
    if note:
        console.print(note)
    head = Table(title="Spend: what the pipeline shows, and the truth", show_header=True)
    head.add_column("figure")
    head.add_column("pipeline", justify="right")
    head.add_column("truth", justify="right")
    head.add_row("LLM spend (llmcost.cost)", usd(f["spend"]), usd(f["truth_spend"]))
    head.add_row("share of spend of the top 1 % of customers", pct(f["top1_share"]),
                 pct(f["truth_top1_share"]))
    for (p, got), (_, want) in zip(f["lorenz"], f["truth_lorenz"]):
        head.add_row(f"  … top {p:g} %", pct(got), pct(want))
    console.print(head)
    tail = Table(title="Tail cost: p50 / p90 / p99", show_header=True)
    tail.add_column("per")
    for q in QUANTILES:
        tail.add_column(f"p{round(q * 100)}", justify="right")
    for name, key in (("call", "per_call"), ("agent trace", "per_trace"),
                      ("conversation", "per_conversation"),
                      ("customer (the day)", "per_customer_day")):
        tail.add_row(name, *(usd(v) for v in (f[key] or [None] * 3)))
    console.print(tail)
    turns = Table(title="Cost by turn index (context grows every turn)", show_header=True)
    for column in ("turn", "mean cost", "mean input tokens (first call)", "turns"):
        turns.add_column(column, justify="right")
    for label, mean_cost, tokens, count in f["by_turn"]:
        turns.add_row(label, usd(mean_cost), f"{tokens:,.0f}", f"{count:,.0f}")
    console.print(turns)
    top = Table(title="Top customers (the day)", show_header=True)
    top.add_column("customer")
    top.add_column("pipeline", justify="right")
    top.add_column("truth", justify="right")
    truth = dict(outcome.truth.customers)
    for customer, value in f["top_customers"][:5]:
        top.add_row(customer, usd(value), usd(truth.get(customer)))
    console.print(top)
    other = Table(title="Cache, waste, runaways and the observability tax", show_header=False)
    other.add_column("figure")
    other.add_column("value", justify="right")
    other.add_row("cache: saved by reads / paid for writes",
                  f"{usd(f['cache_saving'])} / {usd(f['cache_premium'])}")
    other.add_row("cache hit rate (input tokens)", pct(f["cache_hit_rate"]))
    other.add_row("SDK retries / calls failed for good",
                  f"{f['retries']:,.0f} / {f['failed_calls']:,.0f}")
    other.add_row("unpriced calls (spend not counted)", f"{f['unpriced_calls']:,.0f}")
    other.add_row("spend per active customer, night (00-06 UTC) / day",
                  f"{usd(f['night_per_active'])} / {usd(f['day_per_active'])}")
    other.add_row("calls past a budget's hard limit (not enforced: sent)",
                  f"{f['would_refuse']:,.0f}")
    other.add_row("runaway agent traces", ", ".join(f["runaways"]) or "none")
    other.add_row("anomalies detected", "\n".join(map(anomaly_line, f["anomalies"])) or "none")
    other.add_row("spans exported / seen by the app",
                  f"{f['spans_exported']:,.0f} / {f['spans_seen']:,.0f}")
    other.add_row("telemetry cost / LLM spend",
                  f"{usd(f['telemetry_cost'])} / {usd(f['spend'])} "
                  f"({pct(f['telemetry_share'])})")
    console.print(other)
    return f
