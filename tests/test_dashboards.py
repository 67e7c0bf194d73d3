"""The Grafana dashboards: built from the metric catalogue, and held to rules a broken
dashboard breaks (the defects users report in other LLM-cost dashboards).

Structural lint of every committed dashboard JSON: unique panel ids and refIds, a unit and
a description on every panel, one ``datasource`` variable used by every panel and query,
query variables refreshed on time-range change with ``.*`` for All, ``rate``/``increase``
only over ``$__rate_interval`` or ``$__range``; every PromQL expression parses (after
Grafana's macros and variables are substituted) and names only metrics and labels the
code exports. The committed JSON is what ``grafana/dashboards.py`` builds.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from _promql import EXPORTED, assert_names_exported
from otel_llmcost import semconv as sc

ROOT = Path(__file__).resolve().parents[1]
GRAFANA = ROOT / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}
# What Grafana puts in place of its macros and a variable's All value when it queries.
MACROS = {"$__rate_interval": "1m", "$__range": "6h", "$__interval": "15s"}
RANGE = re.compile(r"\[([^\]]+)\]")
RANGE_FUNCTIONS = re.compile(r"\b(rate|increase|irate|delta|idelta|\w+_over_time)\(")
ALLOWED_RANGES = {"$__rate_interval", "$__range"}


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels included (rows themselves too)."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every panel target and query variable."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            yield f"variable {variable['name']}", query if isinstance(query, str) else \
                query["query"]


def substitute(expr: str, dashboard: dict[str, Any]) -> str:
    """The query as Grafana sends it: macros by durations, variables by their All value."""
    for macro, value in MACROS.items():
        expr = expr.replace(macro, value)
    for variable in dashboard["templating"]["list"]:
        expr = expr.replace(f"${variable['name']}", variable.get("allValue") or ".*")
    return expr


def promql(expr: str) -> str:
    """A variable query's PromQL: ``label_values(selector, label)`` → ``selector``."""
    found = re.fullmatch(r"label_values\((.*),\s*\w+\)", expr.strip())
    return found.group(1) if found else expr


@pytest.fixture(params=DASHBOARDS, ids=[p.stem for p in DASHBOARDS])
def dashboard(request) -> dict[str, Any]:
    return load(request.param)


def test_there_are_the_six_dashboards():
    titles = {load(path)["title"] for path in DASHBOARDS}
    assert len(DASHBOARDS) == 6 and len(titles) == 6
    assert {load(path)["uid"] for path in DASHBOARDS} == {p.stem for p in DASHBOARDS}


def test_the_committed_json_is_what_the_builder_makes():
    result = subprocess.run([sys.executable, str(GRAFANA / "dashboards.py"), "--check"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_ids_and_ref_ids_are_unique(dashboard):
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) and i > 0 for i in ids)
    for panel in panels(dashboard):
        refs = [target["refId"] for target in panel.get("targets", [])]
        assert len(refs) == len(set(refs)) and all(refs), panel["title"]


def test_every_panel_has_a_unit_a_description_and_queries(dashboard):
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel.get("description", "").strip(), panel["title"]
        assert panel["fieldConfig"]["defaults"].get("unit"), panel["title"]
        assert panel.get("targets"), panel["title"]


def test_one_datasource_variable_used_by_every_panel_and_query(dashboard):
    variables = dashboard["templating"]["list"]
    sources = [v for v in variables if v["type"] == "datasource"]
    assert [(v["name"], v["query"]) for v in sources] == [("datasource", "prometheus")]
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE_REF, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE_REF, panel["title"]
    for variable in variables:
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE_REF, variable["name"]


def test_query_variables_refresh_with_the_time_range_and_match_all(dashboard):
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        assert variable["refresh"] == 2, variable["name"]  # on time range change
        if variable.get("includeAll"):
            assert variable["allValue"] == ".*", variable["name"]


def test_rates_and_increases_use_grafana_intervals(dashboard):
    for where, expr in queries(dashboard):
        ranges = set(RANGE.findall(expr))
        assert ranges <= ALLOWED_RANGES, (where, ranges)
        if RANGE_FUNCTIONS.search(expr):
            assert ranges, where


def test_every_query_parses_and_names_only_exported_metrics_and_labels(dashboard):
    for where, expr in queries(dashboard):
        assert_names_exported(where, promql(substitute(expr, dashboard)))


def test_no_id_ever_becomes_a_label():
    """Conversation and trace ids stay off metrics. Customer ids only where their number is
    bounded: the top K spenders, per-customer budgets' top K, customers in an anomaly."""
    for metric in EXPORTED.values():
        assert sc.GEN_AI_CONVERSATION_ID not in metric.attributes
    with_customer = {m for m in EXPORTED.values() if sc.LLMCOST_CUSTOMER_ID in m.attributes}
    assert with_customer == {sc.M_CUSTOMER_TOP_COST, sc.M_ANOMALY, sc.M_BUDGET_SPENT,
                             sc.M_BUDGET_RESERVED}


def test_provisioning_points_grafana_at_the_dashboards_and_prometheus():
    provisioning = GRAFANA / "provisioning"
    sources = yaml.safe_load((provisioning / "datasources" / "otel-llmcost.yaml").read_text())
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus" and source["uid"]
    assert source["jsonData"]["timeInterval"]  # feeds $__rate_interval
    providers = yaml.safe_load((provisioning / "dashboards" / "otel-llmcost.yaml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]
