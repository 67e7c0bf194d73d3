#!/usr/bin/env python3
"""otel-llmcost's Grafana dashboards, built with grafana-foundation-sdk from the metric catalogue.

    python grafana/dashboards.py           # (re)write grafana/dashboards/*.json
    python grafana/dashboards.py --check   # exit 1 if the committed JSON is not what this builds

Every metric and label name comes from `otel_llmcost.semconv` (the same `MetricDef`s the
instrumentation and the processor export through), so a renamed metric changes the
dashboards with it. The rules the tests hold every panel to: a unit and a description,
the `datasource` variable as its data source, `rate`/`increase` over `$__rate_interval`
(time series) or `$__range` (totals over the dashboard's range), `.*` as the All value.

Needs `grafana-foundation-sdk` at the exact version of `grafana/requirements.txt`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import (
    barchart,
    bargauge,
    common,
    prometheus,
    stat,
    table,
    timeseries,
)
from grafana_foundation_sdk.builders.dashboard import (
    Dashboard,
    DatasourceVariable,
    QueryVariable,
    Row,
)
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import VizOrientation
from grafana_foundation_sdk.models.dashboard import DataSourceRef, GridPos, VariableRefresh
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from otel_llmcost import semconv as sc
from otel_llmcost.semconv import MetricDef, prometheus_label

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"
DS = DataSourceRef(type_val="prometheus", uid="${datasource}")
USD, RATIO, COUNT = "currencyUSD", "percentunit", "short"
QUANTILES = (0.5, 0.9, 0.99)


def m(metric: MetricDef, suffix: str = "") -> str:
    """The Prometheus name of ``metric`` (+ ``_bucket``/``_sum``/``_count``)."""
    return metric.prometheus + suffix


def lb(attribute: str) -> str:
    return prometheus_label(attribute)


# Label names used in queries.
JOB, PROVIDER, MODEL, FEATURE = "job", lb(sc.GEN_AI_PROVIDER_NAME), lb(sc.GEN_AI_REQUEST_MODEL), \
    lb(sc.LLMCOST_FEATURE)
ERROR, COMPONENT, KIND = lb(sc.ERROR_TYPE), lb(sc.LLMCOST_COST_COMPONENT), lb(sc.LLMCOST_TOKEN_KIND)
EFFECT, WINDOW, CUSTOMER = lb(sc.LLMCOST_CACHE_EFFECT), lb(sc.LLMCOST_WINDOW), \
    lb(sc.LLMCOST_CUSTOMER_ID)
TOP_PERCENT, HOUR, TURN = lb(sc.LLMCOST_TOP_PERCENT), lb(sc.LLMCOST_HOUR_OF_DAY), \
    lb(sc.LLMCOST_TURN_BUCKET)
RULE, REASON, DROP = lb(sc.LLMCOST_SAMPLING_RULE), lb(sc.LLMCOST_RUNAWAY_REASON), \
    lb(sc.LLMCOST_SAMPLING_DROP_REASON)
BUDGET, LIMIT, ENFORCED = lb(sc.LLMCOST_BUDGET_NAME), lb(sc.LLMCOST_BUDGET_LIMIT), \
    lb(sc.LLMCOST_BUDGET_ENFORCED)
UNACCOUNTED, ANOMALY_KIND, ANOMALY_SEVERITY = lb(sc.LLMCOST_BUDGET_UNACCOUNTED_REASON), \
    lb(sc.LLMCOST_ANOMALY_KIND), lb(sc.LLMCOST_ANOMALY_SEVERITY)

# Selectors: the app's call metrics by service, provider, model and feature; the
# processor's rollups by processor job and customer window.
APP = (f'{JOB}=~"$job", {PROVIDER}=~"$provider", {MODEL}=~"$model", '
       f'{FEATURE}=~"$feature"')
SVC = f'{JOB}=~"$job"'
PROC = f'{JOB}=~"$processor"'
WIN = f'{PROC}, {WINDOW}="$window"'
NAMED = f'{CUSTOMER}!~"{sc.CUSTOMER_OTHER}|{sc.CUSTOMER_UNATTRIBUTED}"'


def quantile(q: float, metric: MetricDef, selector: str, by: str = "",
             window: str = "$__range") -> str:
    """The q-quantile of a histogram's observations over ``window``."""
    return (f"histogram_quantile({q}, sum by (le{', ' + by if by else ''}) "
            f"(increase({m(metric, '_bucket')}{{{selector}}}[{window}])))")


def total(series: str, window: str = "$__range") -> str:
    """How much counters grew over ``window``, summed."""
    return f"sum(increase({series}[{window}]))"


def share(part: str, whole: str) -> str:
    """``part / whole``, with no answer (not NaN or Inf) while ``whole`` is 0."""
    return f"{part} / ({whole} > 0)"


def mean(metric: MetricDef, selector: str, by: str, window: str = "$__range") -> str:
    """Sum ÷ count of a histogram over ``window``, by ``by``; groups with no observation
    are left out (0/0 would be NaN)."""
    count = f"sum by ({by}) (increase({m(metric, '_count')}{{{selector}}}[{window}]))"
    return (f"sum by ({by}) (increase({m(metric, '_sum')}{{{selector}}}[{window}])) "
            f"/ ({count} > 0)")


@dataclass(frozen=True)
class Q:
    """One query of a panel."""

    expr: str
    legend: str = ""
    instant: bool = False
    table: bool = False
    exemplar: bool = False

    def build(self, ref: str) -> prometheus.Dataquery:
        query = (prometheus.Dataquery().expr(self.expr).ref_id(ref).datasource(DS)
                 .legend_format(self.legend or "__auto"))
        if self.instant:
            query = query.instant()
        else:
            query = query.range()
        if self.table:
            query = query.format(PromQueryFormat.TABLE)
        if self.exemplar:
            query = query.exemplar(True)
        return query


@dataclass
class Board:
    """A dashboard in the making: panels flow left to right in rows of 24 columns."""

    uid: str
    title: str
    description: str
    variables: Sequence[Any]
    panels: list[Any] = field(default_factory=list)
    _x: int = 0
    _y: int = 0
    _row_h: int = 0
    _id: int = 0

    def _place(self, w: int, h: int) -> GridPos:
        if self._x + w > 24:
            self._x, self._y, self._row_h = 0, self._y + self._row_h, 0
        pos = GridPos(h=h, w=w, x=self._x, y=self._y)
        self._x += w
        self._row_h = max(self._row_h, h)
        return pos

    def _next_id(self) -> int:
        self._id += 1
        return self._id

    def row(self, title: str) -> None:
        self._x, self._y, self._row_h = 0, self._y + self._row_h, 0
        self.panels.append(Row(title).id(self._next_id()).grid_pos(self._place(24, 1)))
        self._x, self._y, self._row_h = 0, self._y + 1, 0

    def add(self, panel: Any, title: str, description: str, unit: str, queries: Sequence[Q],
            w: int = 12, h: int = 8, time_from: str | None = None) -> None:
        panel = (panel.id(self._next_id()).title(title).description(description).unit(unit)
                 .datasource(DS).grid_pos(self._place(w, h)))
        if time_from:
            panel = panel.time_from(time_from)
        for index, query in enumerate(queries):
            panel = panel.with_target(query.build(chr(ord("A") + index)))
        self.panels.append(panel)

    def build(self) -> Any:
        dashboard = (Dashboard(self.title).uid(self.uid).description(self.description)
                     .tags(["otel-llmcost", "llm-cost"]).time("now-6h", "now").refresh("1m")
                     .timezone("utc").editable())
        for variable in self.variables:
            dashboard = dashboard.with_variable(variable)
        for panel in self.panels:
            dashboard = (dashboard.with_row(panel) if isinstance(panel, Row)
                         else dashboard.with_panel(panel))
        return dashboard.build()


def datasource() -> DatasourceVariable:
    return DatasourceVariable("datasource").label("Data Source").type("prometheus")


def variable(name: str, label: str, query: str, description: str,
             multi: bool = True) -> QueryVariable:
    found = (QueryVariable(name).label(label).description(description).datasource(DS)
             .query(query).refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(1))
    if multi:
        found = found.multi(True).include_all(True).all_value(".*")
    return found


def app_variables() -> list[Any]:
    cost = m(sc.M_COST)
    return [
        datasource(),
        variable("job", "Service", f"label_values({cost}, {JOB})",
                 "The Prometheus job of the instrumented app (its service name)."),
        variable("provider", "Provider", f"label_values({cost}{{{SVC}}}, {PROVIDER})",
                 "gen_ai.provider.name"),
        variable("model", "Model",
                 f'label_values({cost}{{{SVC}, {PROVIDER}=~"$provider"}}, {MODEL})',
                 "gen_ai.request.model"),
        variable("feature", "Feature", f"label_values({cost}{{{SVC}}}, {FEATURE})",
                 "llmcost.feature, from the attribution scope (All includes calls without one)."),
    ]


def processor_variables(window: bool) -> list[Any]:
    active = m(sc.M_CUSTOMER_ACTIVE)
    found = [datasource(),
             variable("processor", "Processor", f"label_values({active}, {JOB})",
                      "The Prometheus job of otel-llmcost-processor (all its replicas).")]
    if window:
        found.append(variable("window", "Window", f"label_values({active}{{{PROC}}}, {WINDOW})",
                              "Customer spend window: the current UTC hour (1h) or day (1d).",
                              multi=False))
    return found


def stat_panel() -> stat.Panel:
    return stat.Panel().reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))


def bars() -> bargauge.Panel:
    return bargauge.Panel().reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))


# ------------------------------------------------------------------------------ Overview


def overview() -> Board:
    cost = m(sc.M_COST)
    b = Board("otel-llmcost-overview", "LLM cost: overview",
              "Where LLM money goes: spend rate and month to date, by provider, model and "
              "feature; cost per call; tokens; calls no price covers.", app_variables())
    spent = f"sum(increase({cost}{{{APP}}}[$__range]))"
    seconds_left = ("((days_in_month() - day_of_month()) * 86400 "
                    "+ 86400 - hour() * 3600 - minute() * 60)")
    b.row("Spend")
    b.add(stat_panel(), "Spend in range", "LLM spend over the dashboard's time range "
          "(increase of the llmcost.cost counter).", USD, [Q(spent, "spend", instant=True)], w=6,
          h=5)
    b.add(stat_panel(), "Month to date", "Spend since the start of this calendar month "
          "(the panel's time range is this month so far).", USD,
          [Q(spent, "month to date", instant=True)], w=6, h=5, time_from="now/M")
    b.add(stat_panel(), "Month-end forecast (linear)",
          "Month to date plus the month's average spend rate so far times the seconds left "
          "in the month: a straight-line forecast.", USD,
          [Q(f"{spent} + sum(rate({cost}{{{APP}}}[$__range])) * {seconds_left}",
             "forecast", instant=True)], w=6, h=5, time_from="now/M")
    b.add(stat_panel(), "Unpriced calls", "Calls whose model has no known price: their cost is "
          "missing from every spend figure here (0 is good).", COUNT,
          [Q(f"sum(increase({m(sc.M_UNPRICED_CALLS)}{{{APP}}}[$__range])) or vector(0)",
             "unpriced", instant=True)], w=6, h=5)
    b.add(timeseries.Panel(), "Spend rate by provider and model",
          "USD per hour, by gen_ai.provider.name and gen_ai.request.model.", USD,
          [Q(f"sum by ({PROVIDER}, {MODEL}) (rate({cost}{{{APP}}}[$__rate_interval])) * 3600",
             f"{{{{{PROVIDER}}}}} {{{{{MODEL}}}}}")])
    b.add(timeseries.Panel(), "Spend rate by feature",
          "USD per hour, by llmcost.feature (empty: calls outside any feature scope).", USD,
          [Q(f"sum by ({FEATURE}) (rate({cost}{{{APP}}}[$__rate_interval])) * 3600",
             f"{{{{{FEATURE}}}}}")])
    b.add(timeseries.Panel(), "Spend rate by cost component",
          "USD per hour for uncached input, cache reads, cache writes and output.", USD,
          [Q(f"sum by ({COMPONENT}) (rate({cost}{{{APP}}}[$__rate_interval])) * 3600",
             f"{{{{{COMPONENT}}}}}")])
    b.add(table.Panel(), "Spend by provider, model and feature",
          "Spend over the dashboard's time range.", USD,
          [Q(f"sort_desc(sum by ({PROVIDER}, {MODEL}, {FEATURE}) "
             f"(increase({cost}{{{APP}}}[$__range])))", instant=True, table=True)])
    b.row("Calls")
    b.add(timeseries.Panel(), "Cost per call: p50, p90, p99",
          "Quantiles of llmcost.request.cost (1-2-5 buckets per decade, so a $0.001 call and "
          "a $2 call do not share a bucket).", USD,
          [Q(quantile(q, sc.M_REQUEST_COST, APP, window="$__rate_interval"),
             f"p{round(q * 100)}") for q in QUANTILES])
    b.add(timeseries.Panel(), "Tokens per second by kind",
          "llmcost.tokens: uncached input, cache reads, cache writes and output (a partition: "
          "the kinds add up without double counting).", "short",
          [Q(f"sum by ({KIND}) (rate({m(sc.M_TOKENS)}{{{APP}}}[$__rate_interval]))",
             f"{{{{{KIND}}}}}")])
    b.add(timeseries.Panel(), "Calls per second by provider and model",
          "Completed GenAI calls (gen_ai.client.operation.duration count).", "reqps",
          [Q(f"sum by ({PROVIDER}, {MODEL}) "
             f"(rate({m(sc.M_OPERATION_DURATION, '_count')}{{{APP}}}[$__rate_interval]))",
             f"{{{{{PROVIDER}}}}} {{{{{MODEL}}}}}")])
    b.add(timeseries.Panel(), "Call duration: p50, p90, p99",
          "gen_ai.client.operation.duration.", "s",
          [Q(quantile(q, sc.M_OPERATION_DURATION, APP, window="$__rate_interval"),
             f"p{round(q * 100)}") for q in QUANTILES])
    return b


# ------------------------------------------------------------------------------ Tail cost


def tail_cost() -> Board:
    share, top = m(sc.M_CUSTOMER_SPEND_SHARE), m(sc.M_CUSTOMER_TOP_COST)
    b = Board("otel-llmcost-tail", "LLM cost: the tail",
              "Which customers carry the spend: top spenders, the share of the top 0.1-50 %, "
              "the Lorenz curve, per-customer spend, and the off-hours cohort. From "
              "otel-llmcost-processor's rollups.", processor_variables(window=True))
    b.row("Concentration")
    b.add(stat_panel(), "Top 1 % of customers: share of spend",
          "Share of this window's attributed spend that the top 1 % of customers account for. "
          "Shares do not add up across processor replicas: with several, each shows its own "
          "shard of customers.", RATIO,
          [Q(f'{share}{{{WIN}, {TOP_PERCENT}="1"}}', "{{instance}}", instant=True)], w=6, h=5)
    b.add(stat_panel(), "Active customers", "Customers with spend in this window.", COUNT,
          [Q(f"sum({m(sc.M_CUSTOMER_ACTIVE)}{{{WIN}}})", "customers", instant=True)], w=6, h=5)
    b.add(stat_panel(), "Spend outside the top K",
          "__other__: this window's spend of every customer outside the top K, so that "
          "the top K plus this add up to the window's total.", USD,
          [Q(f'sum({top}{{{WIN}, {CUSTOMER}="{sc.CUSTOMER_OTHER}"}})', "others",
             instant=True)], w=6, h=5)
    b.add(stat_panel(), "Unattributed spend",
          "Spend of calls with no llmcost.customer.id in this window.", USD,
          [Q(f'sum({top}{{{WIN}, {CUSTOMER}="{sc.CUSTOMER_UNATTRIBUTED}"}})', "unattributed",
             instant=True)], w=6, h=5)
    b.add(barchart.Panel().x_field(TOP_PERCENT), "Lorenz curve: share of spend of the top N %",
          "Share of the window's spend that the top 0.1, 1, 5, 10, 20 and 50 % of customers "
          "account for; the further above N % each bar is, the more concentrated the spend "
          "(per processor replica: each shows its shard of customers).",
          RATIO, [Q(f"sort({share}{{{WIN}}})", f"{{{{{TOP_PERCENT}}}}}", instant=True,
                    table=True)])
    b.add(timeseries.Panel(), "Share of spend of the top 0.1, 1, 5 and 10 %",
          "How concentrated spend is, over time (the current window at each point).", RATIO,
          [Q(f'{share}{{{WIN}, {TOP_PERCENT}=~"0.1|1|5|10"}}', f"top {{{{{TOP_PERCENT}}}}} %")])
    b.row("Customers")
    b.add(bars().orientation(VizOrientation.HORIZONTAL), "Top customers this window",
          "The top K spenders of the current window (K: the processor's top_k).", USD,
          [Q(f"sort_desc({top}{{{WIN}, {NAMED}}})", f"{{{{{CUSTOMER}}}}}", instant=True)],
          h=10)
    b.add(timeseries.Panel(), "Top customers' spend over time",
          "Each top-K customer's spend in the window current at each point.", USD,
          [Q(f"{top}{{{WIN}, {NAMED}}}", f"{{{{{CUSTOMER}}}}}")], h=10)
    b.add(bars(), "Per-customer spend in a window: p50, p90, p99",
          "Distribution of each customer's spend in the windows that closed during the "
          "dashboard's time range (every customer, not only the top K).", USD,
          [Q(quantile(q, sc.M_CUSTOMER_WINDOW_COST, WIN), f"p{round(q * 100)}", instant=True)
           for q in QUANTILES])
    b.add(barchart.Panel().x_field(HOUR), "Spend per active customer by hour of day (UTC)",
          "Each closed hourly window's spend divided by its active customers, by the hour of "
          "day it covered: an off-hours cohort that spends more per head stands out.", USD,
          [Q(f"sort_desc(sum by ({HOUR}) ({m(sc.M_CUSTOMER_COST_PER_ACTIVE)}{{{PROC}}}))",
             f"{{{{{HOUR}}}}}", instant=True, table=True)])
    return b


# --------------------------------------------------------------- Conversations & agents


def conversations() -> Board:
    runaway = m(sc.M_TRACE_RUNAWAY)
    b = Board("otel-llmcost-conversations", "LLM cost: conversations and agents",
              "Conversations whose turns cost more as their context grows, agent traces that "
              "fan out, and runaway traces, from otel-llmcost-processor's rollups.",
              processor_variables(window=False))
    b.row("Conversations")
    b.add(bars(), "Cost per conversation: p50, p90, p99",
          "Distribution of closed conversations' total cost over the time range.", USD,
          [Q(quantile(q, sc.M_CONVERSATION_COST, PROC), f"p{round(q * 100)}", instant=True)
           for q in QUANTILES], w=8)
    b.add(barchart.Panel().x_field(TURN), "Mean cost of a turn, by turn index",
          "A turn is one trace's calls in a conversation; index buckets 1, 2, 3-4, 5-8, 9-16, "
          "17+. A rising curve is context growth paid for at every turn.", USD,
          [Q(mean(sc.M_TURN_COST, PROC, TURN), f"{{{{{TURN}}}}}", instant=True, table=True)],
          w=8)
    b.add(barchart.Panel().x_field(TURN), "Input tokens of a turn's first call, by turn index",
          "Context growth: the input tokens of each turn's first LLM call, by turn index.",
          "short", [Q(mean(sc.M_TURN_INPUT_TOKENS, PROC, TURN), f"{{{{{TURN}}}}}",
                      instant=True, table=True)], w=8)
    b.add(timeseries.Panel(), "p90 cost of a turn, by turn index",
          "The 90th percentile of turn cost per turn-index bucket, over time.", USD,
          [Q(f"{quantile(0.9, sc.M_TURN_COST, PROC, TURN, '$__rate_interval')} "
             f"and on ({TURN}) (sum by ({TURN}) (increase("
             f"{m(sc.M_TURN_COST, '_count')}{{{PROC}}}[$__rate_interval])) > 0)",
             f"turn {{{{{TURN}}}}}")])
    b.add(stat_panel(), "Conversations closed", "Conversations that went idle and were rolled "
          "up over the time range (weighted by sampling).", COUNT,
          [Q(f"sum(increase({m(sc.M_CONVERSATION_COST, '_count')}{{{PROC}}}[$__range]))",
             "conversations", instant=True)], w=6)
    b.add(stat_panel(), "Turns per conversation (mean)",
          "Mean number of turns of the conversations closed over the time range.", COUNT,
          [Q(share(total(f"{m(sc.M_CONVERSATION_TURNS, '_sum')}{{{PROC}}}"),
                   total(f"{m(sc.M_CONVERSATION_TURNS, '_count')}{{{PROC}}}")),
             "turns", instant=True)], w=6)
    b.row("Agent traces")
    b.add(bars(), "Cost per agent trace: p50, p90, p99",
          "Distribution of closed traces' total cost over the time range.", USD,
          [Q(quantile(q, sc.M_TRACE_COST, PROC), f"p{round(q * 100)}", instant=True)
           for q in QUANTILES], w=8)
    b.add(bars(), "Fan-out: LLM and tool calls per trace (p90, p99)",
          "How many LLM calls and execute_tool calls one agent trace makes.", COUNT,
          [Q(quantile(q, metric, PROC), f"{what} p{round(q * 100)}", instant=True)
           for metric, what in ((sc.M_TRACE_LLM_CALLS, "LLM calls"),
                                (sc.M_TRACE_TOOL_CALLS, "tool calls"))
           for q in (0.9, 0.99)], w=8)
    b.add(bars(), "Trace duration and depth (p90)",
          "How long agent traces last (seconds) and how deep their span trees go.", COUNT,
          [Q(quantile(0.9, sc.M_TRACE_DURATION, PROC), "duration p90 (s)", instant=True),
           Q(quantile(0.9, sc.M_TRACE_DEPTH, PROC), "depth p90", instant=True)], w=8)
    b.add(stat_panel(), "Runaway traces",
          "Traces over the processor's runaway limits (LLM calls or cost) in the time range. "
          "Their trace ids: the exemplars of the next panel, or GET /runaways on the "
          "processor's metrics port.", COUNT,
          [Q(f"sum(increase({runaway}{{{PROC}}}[$__range]))", "runaways", instant=True)], w=6)
    b.add(timeseries.Panel(), "Runaway traces, with trace ids",
          "Runaway traces by reason; each point's exemplar carries the trace id (Prometheus "
          "needs --enable-feature=exemplar-storage and an OpenMetrics scrape).", COUNT,
          [Q(f"sum by ({REASON}) (increase({runaway}{{{PROC}}}[$__rate_interval]))",
             f"{{{{{REASON}}}}}", exemplar=True)], w=18)
    return b


# -------------------------------------------------------------------------- Cache & waste


def cache_and_waste() -> Board:
    tokens, savings, cost = m(sc.M_TOKENS), m(sc.M_CACHE_SAVINGS), m(sc.M_COST)
    b = Board("otel-llmcost-cache", "LLM cost: cache and waste",
              "What prompt caching saves against what cache writes cost, and the spend that "
              "buys nothing: failed calls and retries.", app_variables())
    effect = (lambda which: total(f'{savings}{{{APP}, {EFFECT}="{which}"}}'))
    failed = total(f'{cost}{{{APP}, {ERROR}!=""}}')  # spend on calls that failed
    b.row("Prompt cache")
    b.add(stat_panel(), "Cache hit rate (input tokens)",
          "Cache-read input tokens as a share of all input tokens (uncached, cache reads and "
          "cache writes), over the time range.", RATIO,
          [Q(share(total(f'{tokens}{{{APP}, {KIND}="cache_read"}}'),
                   total(f'{tokens}{{{APP}, {KIND}=~"input_uncached|cache_read|cache_write"}}')),
             "hit rate", instant=True)], w=6, h=5)
    b.add(stat_panel(), "Net cache savings",
          "What caching saved (cheaper cache reads) minus what it cost (cache-write "
          "premiums), over the time range.", USD,
          [Q(f"({effect('saving')} or vector(0)) - ({effect('premium')} or vector(0))",
             "net", instant=True)], w=6, h=5)
    b.add(stat_panel(), "Write premium per dollar saved",
          "Cache-write premium divided by read savings: below 1 caching pays for itself, "
          "above 1 the cache is written more than it is read (the break-even is 1).", COUNT,
          [Q(f"({effect('premium')} or vector(0)) / ({effect('saving')} > 0)", "premium/saving",
             instant=True)], w=6, h=5)
    b.add(stat_panel(), "Cache reads: share of input spend",
          "Spend on cache reads as a share of all input spend (uncached, reads, writes).",
          RATIO, [Q(share(total(f'{cost}{{{APP}, {COMPONENT}="cache_read"}}'),
                          total(f'{cost}{{{APP}, {COMPONENT}=~"input|cache_read|cache_write"}}')),
                    "reads", instant=True)], w=6, h=5)
    b.add(timeseries.Panel(), "Savings against write premium",
          "USD per hour saved by cache reads and paid as cache-write premium.", USD,
          [Q(f"sum by ({EFFECT}) (rate({savings}{{{APP}}}[$__rate_interval])) * 3600",
             f"{{{{{EFFECT}}}}}")])
    b.add(timeseries.Panel(), "Cache hit rate over time",
          "Cache-read share of input tokens.", RATIO,
          [Q(f'sum(rate({tokens}{{{APP}, {KIND}="cache_read"}}[$__rate_interval])) / '
             f'(sum(rate({tokens}{{{APP}, {KIND}=~"input_uncached|cache_read|cache_write"}}'
             f"[$__rate_interval])) > 0)", "hit rate")])
    b.row("Waste")
    b.add(stat_panel(), "Spend on failed calls",
          "Cost of calls that ended in an error after tokens were billed (e.g. a stream "
          "broken mid-way), over the time range.", USD,
          [Q(f"{failed} or vector(0)", "failed", instant=True)], w=6, h=5)
    b.add(stat_panel(), "Failed calls: share of spend",
          "Spend on failed calls as a share of all spend.", RATIO,
          [Q(share(f"({failed} or vector(0))", total(f"{cost}{{{APP}}}")), "share",
             instant=True)],
          w=6, h=5)
    b.add(stat_panel(), "SDK retries",
          "Provider calls the SDKs retried (rate limits, 5xx), from the processor's agent "
          "traces, over the time range.", COUNT,
          [Q(f"sum(increase({m(sc.M_TRACE_RETRIES)}[$__range])) or vector(0)", "retries",
             instant=True)], w=6, h=5)
    b.add(stat_panel(), "Failed calls",
          "Calls that ended with an error (the SDK gave up or the stream broke), over the "
          "time range.", COUNT,
          [Q(f'sum(increase({m(sc.M_OPERATION_DURATION, "_count")}{{{APP}, {ERROR}!=""}}'
             f"[$__range])) or vector(0)", "failed", instant=True)], w=6, h=5)
    b.add(timeseries.Panel(), "Failed calls per second by error type",
          "Calls that ended with an error, by error.type.", "reqps",
          [Q(f'sum by ({ERROR}) (rate({m(sc.M_OPERATION_DURATION, "_count")}'
             f'{{{APP}, {ERROR}!=""}}[$__rate_interval]))', f"{{{{{ERROR}}}}}")])
    b.add(bars(), "Max-tokens headroom: output ÷ max_tokens",
          "p50, p90 and p99 of each call's output tokens divided by its max_tokens, over the "
          "time range (from otel-llmcost-processor, all services). Near 1, answers are cut "
          "short; far below 1, max_tokens reserves budget (and rate-limit quota) it never "
          "uses.", RATIO,
          [Q(quantile(q, sc.M_OUTPUT_MAX_TOKENS_RATIO, ""), f"p{round(q * 100)}", instant=True)
           for q in QUANTILES])
    return b


# ---------------------------------------------------------------------- Observability tax


def observability_tax() -> Board:
    seen, exported = m(sc.M_TELEMETRY_SPANS_SEEN), m(sc.M_TELEMETRY_SPANS_EXPORTED)
    b = Board("otel-llmcost-tax", "LLM cost: the observability tax",
              "What watching costs: spans and bytes exported against spans seen, by sampling "
              "rule, and telemetry spend against LLM spend.",
              [datasource(), variable("job", "Service",
                                      f"label_values({seen}, {JOB})",
                                      "The Prometheus job of the instrumented app.")])
    b.row("Telemetry volume")
    b.add(stat_panel(), "Spans exported / seen",
          "Share of the spans the app made that were exported, over the time range.", RATIO,
          [Q(share(total(f"{exported}{{{SVC}}}"), total(f"{seen}{{{SVC}}}")), "kept",
             instant=True)],
          w=6, h=5)
    b.add(stat_panel(), "Telemetry cost / LLM cost",
          "What the exported telemetry costs at your backend's prices "
          "(LLMCOST_TELEMETRY_USD_PER_GB, _PER_MILLION_SPANS) per dollar of LLM spend.", RATIO,
          [Q(share(total(f"{m(sc.M_TELEMETRY_COST)}{{{SVC}}}"), total(f"{m(sc.M_COST)}{{{SVC}}}")),
             "tax", instant=True)],
          w=6, h=5)
    b.add(stat_panel(), "Telemetry cost", "Telemetry spend over the time range.", USD,
          [Q(f"sum(increase({m(sc.M_TELEMETRY_COST)}{{{SVC}}}[$__range]))", "telemetry",
             instant=True)], w=6, h=5)
    b.add(stat_panel(), "Bytes exported", "Estimated OTLP bytes exported over the time range.",
          "bytes", [Q(f"sum(increase({m(sc.M_TELEMETRY_BYTES)}{{{SVC}}}[$__range]))", "bytes",
                      instant=True)], w=6, h=5)
    b.add(timeseries.Panel(), "Spans per second: seen, exported, dropped",
          "Spans the app made, exported, and dropped by the sampler.", "short",
          [Q(f"sum(rate({seen}{{{SVC}}}[$__rate_interval]))", "seen"),
           Q(f"sum(rate({exported}{{{SVC}}}[$__rate_interval]))", "exported"),
           Q(f"sum(rate({m(sc.M_TELEMETRY_SPANS_DROPPED)}{{{SVC}}}[$__rate_interval]))",
             "dropped")])
    b.add(timeseries.Panel(), "Spans exported per second by sampling rule",
          "Which rule kept the exported spans: cost, top_percent, error, slow or probability.",
          "short", [Q(f"sum by ({RULE}) (rate({exported}{{{SVC}}}[$__rate_interval]))",
                      f"{{{{{RULE}}}}}")])
    b.add(timeseries.Panel(), "Telemetry and LLM spend per hour",
          "USD per hour on telemetry and on LLM calls.", USD,
          [Q(f"sum(rate({m(sc.M_TELEMETRY_COST)}{{{SVC}}}[$__rate_interval])) * 3600",
             "telemetry"),
           Q(f"sum(rate({m(sc.M_COST)}{{{SVC}}}[$__rate_interval])) * 3600", "LLM")])
    b.add(timeseries.Panel(), "Bytes exported per second", "Estimated OTLP bytes per second.",
          "Bps", [Q(f"sum(rate({m(sc.M_TELEMETRY_BYTES)}{{{SVC}}}[$__rate_interval]))",
                    "bytes")])
    return b


# ----------------------------------------------------------------------------- Guardrails


def budget_use(selector: str, by: str) -> str:
    """Spend ÷ hard limit of the budgets' current periods. Every process of an app reports
    the shared budgets it touched (the same figures with a SQLite or Redis store): max."""
    spent = f"max by ({by}) ({m(sc.M_BUDGET_SPENT)}{{{selector}}})"
    hard = (f'max by ({BUDGET}) ({m(sc.M_BUDGET_LIMIT)}{{{SVC}, {BUDGET}=~"$budget", '
            f'{LIMIT}="hard"}})')
    return f"{spent} / on ({BUDGET}) group_left {hard}"


def guardrails() -> Board:
    refused, anomaly = m(sc.M_BUDGET_REFUSED), m(sc.M_ANOMALY)
    shared = f'{SVC}, {BUDGET}=~"$budget", {CUSTOMER}=""'
    each = f'{SVC}, {BUDGET}=~"$budget", {CUSTOMER}!=""'
    b = Board("otel-llmcost-guardrails", "LLM cost: budgets and anomalies",
              "Budgets that reserve a call's worst case before it is sent (utilisation, "
              "refusals, reservations in flight) and the processor's anomalies: spend rising "
              "faster than its baseline, agent traces that never stop.",
              [datasource(),
               variable("job", "Service", f"label_values({m(sc.M_BUDGET_LIMIT)}, {JOB})",
                        "The Prometheus job of the instrumented app (its service name)."),
               variable("budget", "Budget",
                        f"label_values({m(sc.M_BUDGET_LIMIT)}{{{SVC}}}, {BUDGET})",
                        "llmcost.budget.name, from the budgets file."),
               variable("processor", "Processor",
                        f"label_values({m(sc.M_CUSTOMER_ACTIVE)}, {JOB})",
                        "The Prometheus job of otel-llmcost-processor (all its replicas).")])
    b.row("Budgets")
    b.add(bars(), "Shared budgets: spent ÷ hard limit",
          "Tier, feature and global budgets (one counter for every call they cover): actual "
          "spend of the current day or month divided by the hard limit. At 1, enforced "
          "budgets refuse calls.", RATIO,
          [Q(budget_use(shared, BUDGET), f"{{{{{BUDGET}}}}}", instant=True)], w=12)
    b.add(bars(), "Per-customer budgets: the 20 most used",
          "Budgets with one counter per customer: the customers closest to their hard limit "
          "(each process reports its top K spenders).", RATIO,
          [Q(f"topk(20, {budget_use(each, f'{BUDGET}, {CUSTOMER}')})",
             f"{{{{{BUDGET}}}}} {{{{{CUSTOMER}}}}}", instant=True)], w=12)
    b.add(stat_panel(), "Calls refused",
          "Calls an enforced budget refused before sending anything, over the time range.",
          COUNT, [Q(f'sum(increase({refused}{{{SVC}, {BUDGET}=~"$budget", {ENFORCED}="true"}}'
                    f"[$__range])) or vector(0)", "refused", instant=True)], w=6, h=5)
    b.add(stat_panel(), "Would have been refused",
          "Calls past a hard limit of a budget that is not enforced (enforce: false): what "
          "enforcing it would refuse, over the time range.", COUNT,
          [Q(f'sum(increase({refused}{{{SVC}, {BUDGET}=~"$budget", {ENFORCED}="false"}}'
             f"[$__range])) or vector(0)", "would refuse", instant=True)], w=6, h=5)
    b.add(stat_panel(), "Soft-limit notifications",
          "80 % and 100 % of soft limits crossed (each once per budget, customer and period), "
          "over the time range.", COUNT,
          [Q(f"sum(increase({m(sc.M_BUDGET_NOTIFICATIONS)}"
             f'{{{SVC}, {BUDGET}=~"$budget"}}[$__range])) or vector(0)', "notifications",
             instant=True)], w=6, h=5)
    b.add(stat_panel(), "Calls not accounted",
          "Calls allowed without a reservation: the budget store was unavailable (and budgets "
          "fail open) or the model has no price, over the time range.", COUNT,
          [Q(f"sum(increase({m(sc.M_BUDGET_UNACCOUNTED)}{{{SVC}}}[$__range])) or vector(0)",
             "unaccounted", instant=True)], w=6, h=5)
    b.add(timeseries.Panel(), "Refused calls per second, by budget",
          "Refused (enforced) and would-be-refused (not enforced) calls.", "reqps",
          [Q(f'sum by ({BUDGET}, {ENFORCED}) (rate({refused}{{{SVC}, {BUDGET}=~"$budget"}}'
             "[$__rate_interval]))", f"{{{{{BUDGET}}}}} enforced={{{{{ENFORCED}}}}}")])
    b.add(timeseries.Panel(), "Reservations outstanding, by budget",
          "Worst-case cost reserved by calls in flight and not yet replaced by their actual "
          "cost. It should fall back to 0 between bursts; a floor that stays up means "
          "reservations of processes that died (they lapse after reservation_ttl_s).", USD,
          [Q(f"sum by ({BUDGET}) (max by ({BUDGET}, {CUSTOMER}) "
             f'({m(sc.M_BUDGET_RESERVED)}{{{SVC}, {BUDGET}=~"$budget"}}))',
             f"{{{{{BUDGET}}}}}")])
    b.row("Anomalies")
    b.add(stat_panel(), "Anomalies in progress",
          "Spend anomalies (global, per customer) and runaway agent traces active now.",
          COUNT, [Q(f"sum({anomaly}{{{PROC}}}) or vector(0)", "active", instant=True)],
          w=6, h=5)
    b.add(stat_panel(), "Anomalies started",
          "Anomalies the processor detected over the time range (all kinds).", COUNT,
          [Q(f"sum(increase({m(sc.M_ANOMALY_DETECTED)}{{{PROC}}}[$__range])) or vector(0)",
             "started", instant=True)], w=6, h=5)
    b.add(bars(), "Anomalies started, by kind and severity",
          "global_spend and customer_spend: spend rising faster than its own baseline, "
          "sustained; runaway_trace: an agent trace past the runaway limits while still open. "
          "Details, customer ids and example trace ids: the processor's OTLP log records "
          "(event llmcost.anomaly) or GET /anomalies.", COUNT,
          [Q(f"sum by ({ANOMALY_KIND}, {ANOMALY_SEVERITY}) "
             f"(increase({m(sc.M_ANOMALY_DETECTED)}{{{PROC}}}[$__range]))",
             f"{{{{{ANOMALY_KIND}}}}} {{{{{ANOMALY_SEVERITY}}}}}", instant=True)], w=12, h=5)
    b.add(timeseries.Panel(), "Anomalies started per hour, by kind",
          "How often each kind of anomaly starts. An anomaly lasts minutes: the processor's "
          "OTLP log records (event llmcost.anomaly) say whose it was, with example trace ids.",
          COUNT, [Q(f"sum by ({ANOMALY_KIND}) (rate({m(sc.M_ANOMALY_DETECTED)}{{{PROC}}}"
                    "[$__rate_interval])) * 3600", f"{{{{{ANOMALY_KIND}}}}}")], w=24)
    return b


BOARDS = (overview, tail_cost, conversations, cache_and_waste, observability_tax, guardrails)


def render() -> dict[str, str]:
    """File name → JSON text of every dashboard."""
    encoder = JSONEncoder(sort_keys=True, indent=2)
    return {f"{board.uid}.json": encoder.encode(board.build()) + "\n"
            for board in (make() for make in BOARDS)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="compare with the committed JSON instead of writing it")
    args = parser.parse_args(argv)
    rendered = render()
    if args.check:
        stale = [name for name, text in rendered.items()
                 if not (OUT / name).exists() or (OUT / name).read_text() != text]
        extra = sorted({p.name for p in OUT.glob("*.json")} - set(rendered))
        for name in stale + extra:
            print(f"grafana/dashboards/{name} is stale: run python grafana/dashboards.py",
                  file=sys.stderr)
        return 1 if stale or extra else 0
    OUT.mkdir(exist_ok=True)
    for name, text in rendered.items():
        (OUT / name).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
