"""Every dashboard query against a real Prometheus that scraped a demo run.

Debian's ``prometheus`` scrapes the processor and the instrumented app every second while
``otel-llmcost demo`` plays a short day; then every panel target and every variable of
every dashboard in ``grafana/dashboards`` is run as Grafana would run it (its macros and
variables substituted) and must return data, and the top-1 % share and the top customers
Prometheus holds must be the workload's ground truth.

The demo compresses a day into seconds, so one instant cannot show both states a live
system shows at once: the day's windows still open (``day``: top customers, shares) and
closed (``closed``: the per-customer window distribution). An instant target is run at
both moments and must return finite data at one of them at least; a range target covers
the whole run.
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from otel_llmcost import semconv as sc
from otel_llmcost.demo.prometheus import SCRAPE_INTERVAL_S, LocalPrometheus
from otel_llmcost.demo.run import SERVICE, Hooks, Options, run_demo

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
RATE_INTERVAL = f"{4 * SCRAPE_INTERVAL_S}s"  # Grafana: max(interval + scrape, 4 × scrape)
SMALL = Options(seed=5, customers=80, sessions=160, duration_s=15.0, workers=6)


class Recording(Hooks):
    """Starts Prometheus on the demo's endpoints; at each pause, lets it scrape twice."""

    def __init__(self, directory: Path) -> None:
        self.prometheus = LocalPrometheus(directory)
        self.at: dict[str, float] = {}

    def endpoints(self, processor: str, app: str) -> None:
        self.prometheus.start({SERVICE: app, sc.PROCESSOR_COMMAND: processor})
        self.at["start"] = time.time()

    def pause(self, stage: str) -> None:
        time.sleep(2.5 * SCRAPE_INTERVAL_S)
        self.at[stage] = time.time()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    directory = tmp_path_factory.mktemp("live")
    hooks = Recording(directory / "prometheus")
    try:
        outcome = run_demo(Options(**{**SMALL.__dict__, "out": directory}), hooks=hooks)
        yield outcome, hooks
    finally:
        hooks.prometheus.stop()


def targets() -> Iterator[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                yield f"{path.stem}: {panel['title']} {target['refId']}", path.stem, \
                    dashboard, target


def substitute(expr: str, dashboard: dict[str, Any], span_s: int) -> str:
    expr = (expr.replace("$__rate_interval", RATE_INTERVAL)
            .replace("$__range", f"{span_s}s").replace("$__interval", f"{SCRAPE_INTERVAL_S}s"))
    expr = expr.replace('"$window"', '"1d"')
    for variable in dashboard["templating"]["list"]:
        expr = expr.replace(f"${variable['name']}", variable.get("allValue") or ".*")
    return expr


def whole_run_s(at: dict[str, float]) -> int:
    """$__range for a dashboard opened on the whole run."""
    return math.ceil(at["closed"] - at["start"]) + 5


def values(result: dict[str, Any]) -> list[float]:
    """Every sample value of a query answer (vector or matrix)."""
    found = []
    for series in result["result"]:
        samples = series.get("values") or [series["value"]]
        found.extend(float(v) for _, v in samples)
    return found


def test_every_panel_returns_finite_data(recorded):
    _, hooks = recorded
    prometheus, at = hooks.prometheus, hooks.at
    span_s = whole_run_s(at)
    empty = []
    for where, _, dashboard, target in targets():
        expr = substitute(target["expr"], dashboard, span_s)
        if target.get("instant"):
            answers = [prometheus.api("query", query=expr, time=at[stage])
                       for stage in ("day", "closed")]
            good = [a for a in answers if a["result"] and all(math.isfinite(v)
                                                              for v in values(a))]
            if not good:
                empty.append((where, expr, [values(a) for a in answers]))
        else:
            answer = prometheus.api("query_range", query=expr, start=at["start"],
                                    end=at["closed"], step=SCRAPE_INTERVAL_S)
            found = values(answer)
            finite_per_series = [any(math.isfinite(float(v)) for _, v in s["values"])
                                 for s in answer["result"]]
            if (not answer["result"] or not all(finite_per_series)
                    or any(math.isinf(v) for v in found)):
                empty.append((where, expr, found[:5]))
    assert not empty, "\n".join(f"{w}\n    {e}\n    {v}" for w, e, v in empty)


def test_every_variable_has_values(recorded):
    _, hooks = recorded
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for variable in dashboard["templating"]["list"]:
            if variable["type"] != "query":
                continue
            match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", variable["query"])
            assert match, variable["query"]
            selector = match.group(1)
            for other in dashboard["templating"]["list"]:
                selector = selector.replace(f"${other['name']}", ".*")
            found = hooks.prometheus.api(f"label/{match.group(2)}/values",
                                         **{"match[]": selector})
            assert found, (path.stem, variable["name"])


def test_prometheus_holds_the_ground_truth_of_the_tail(recorded):
    outcome, hooks = recorded
    truth, prometheus, when = outcome.truth, hooks.prometheus, hooks.at["day"]
    share = prometheus.api("query", time=when, query=(
        f'{sc.M_CUSTOMER_SPEND_SHARE.prometheus}{{llmcost_window="1d"}}'))
    by_percent = {s["metric"]["llmcost_top_percent"]: float(s["value"][1])
                  for s in share["result"]}
    for percent in sc.SPEND_SHARE_PERCENTS:
        assert math.isclose(by_percent[f"{percent:g}"], truth.top_share(percent),
                            rel_tol=1e-9), percent
    top = prometheus.api("query", time=when, query=(
        f'{sc.M_CUSTOMER_TOP_COST.prometheus}{{llmcost_window="1d", '
        f'llmcost_customer_id!~"__other__|__unattributed__"}}'))
    shown = {s["metric"]["llmcost_customer_id"]: float(s["value"][1]) for s in top["result"]}
    ranked = sorted(truth.customers.items(), key=lambda kv: -kv[1])[:len(shown)]
    assert len(shown) == min(20, len(truth.customers))  # the processor's top_k
    assert shown.keys() == dict(ranked).keys()
    for customer, spend in ranked:
        assert math.isclose(shown[customer], spend, rel_tol=1e-9), customer
    spend = prometheus.api("query", time=hooks.at["closed"],
                           query=f"sum({sc.M_COST.prometheus})")
    assert math.isclose(float(spend["result"][0]["value"][1]), truth.total, rel_tol=1e-9)


def test_the_runaway_panel_links_the_runaway_trace_ids(recorded):
    """The panel's exemplars, as Grafana reads them (query_exemplars on its own query), are
    the processor's runaway traces: the trace ids a reader clicks through to Tempo."""
    outcome, hooks = recorded
    panels = [(dashboard, target) for _, _, dashboard, target in targets()
              if target.get("exemplar")]
    assert panels, "no panel asks for exemplars"
    span_s = whole_run_s(hooks.at)
    for dashboard, target in panels:
        found = hooks.prometheus.api("query_exemplars",
                                     query=substitute(target["expr"], dashboard, span_s),
                                     start=hooks.at["start"], end=hooks.at["closed"] + 1)
        trace_ids = {e["labels"]["trace_id"] for series in found for e in series["exemplars"]}
        assert trace_ids == set(outcome.runaway_ids), target["expr"]
    assert len(outcome.runaway_ids) == outcome.truth.runaway_traces == 1
