"""Alert rules and the dashboards' tail-cost arithmetic, checked by a real ``promtool``.

``collector/alerts.yaml`` passes ``promtool check rules`` and its own unit tests
(``alerts_test.yaml``, ``alerts_monthly_test.yaml``), every alert has a test that fires it,
and every metric and label the rules name is one the code exports. Then the exact values
of the dashboards' tail-cost queries (the JSON Grafana runs, variables set to All and
``$__range`` to 1h) on synthetic series with known answers, through ``promtool test rules``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from _promql import assert_names_exported

ROOT = Path(__file__).resolve().parents[1]
COLLECTOR = ROOT / "collector"
RULES = COLLECTOR / "alerts.yaml"
RULE_TESTS = (COLLECTOR / "alerts_test.yaml", COLLECTOR / "alerts_monthly_test.yaml")
PROMTOOL = shutil.which("promtool")
# scripts/test.sh installs Debian's prometheus (promtool comes with it): fail, not skip.
assert PROMTOOL, "promtool not found: install Debian's prometheus package"


def promtool(*args: str, cwd: Path = COLLECTOR) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"]
            for rule in group["rules"]]


def test_the_rules_are_valid():
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_pass_their_unit_tests():
    result = promtool("test", "rules", *(str(path) for path in RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS)


def test_every_alert_and_severity_is_tested_firing():
    fired: set[tuple[str, str]] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                for alert in check["exp_alerts"]:
                    fired.add((check["alertname"], alert["exp_labels"]["severity"]))
    declared = {(rule["alert"], rule["labels"]["severity"]) for rule in rules()
                if "alert" in rule}
    assert declared == fired


def test_the_rules_name_only_exported_metrics_and_labels():
    recorded = frozenset(rule["record"] for rule in rules() if "record" in rule)
    for rule in rules():
        assert_names_exported(rule.get("alert") or rule["record"], rule["expr"], recorded)


# --- the dashboards' arithmetic -------------------------------------------------------

def panel_query(uid: str, title: str, ref: str = "A") -> str:
    """A panel's PromQL as Grafana sends it with every variable on All (processor
    variables on the test's job) and ``$__range`` = 1h."""
    dashboard = json.loads((ROOT / "grafana" / "dashboards" / f"{uid}.json").read_text())
    (panel,) = [p for p in dashboard["panels"] if p.get("title") == title]
    (target,) = [t for t in panel["targets"] if t["refId"] == ref]
    expr = target["expr"].replace("$__range", "1h").replace("$__rate_interval", "1m")
    expr = expr.replace('"$window"', '"1d"')
    for variable in ("job", "provider", "model", "feature", "processor"):
        expr = expr.replace(f"${variable}", ".*")
    return expr


# (dashboard, panel title, ref, input series, expected samples: labels → value). Series are
# sampled every minute for an hour: 'a+bx60' grows by b a minute, so its increase over
# the hour is 60 b.
CASES: list[tuple[str, str, str, list[tuple[str, str]], dict[str, float]]] = [
    # Top 1 % share of the chosen window (the hour window's gauge is not mixed in).
    ("otel-llmcost-tail", "Top 1 % of customers: share of spend", "A",
     [('llmcost_customer_spend_share_ratio{job="p", llmcost_window="1d", llmcost_top_percent="1"}',
       "0.42x60"),
      ('llmcost_customer_spend_share_ratio{job="p", llmcost_window="1h", llmcost_top_percent="1"}',
       "0.9x60")],
     {'{__name__="llmcost_customer_spend_share_ratio", job="p", llmcost_window="1d", '
      'llmcost_top_percent="1"}': 0.42}),
    # Mean turn cost by turn index: sum/count over the range; a bucket with no turns is
    # left out rather than shown as NaN.
    ("otel-llmcost-conversations", "Mean cost of a turn, by turn index", "A",
     [('llmcost_turn_cost_USD_sum{job="p", llmcost_turn_bucket="1"}', "0+0.5x60"),
      ('llmcost_turn_cost_USD_count{job="p", llmcost_turn_bucket="1"}', "0+10x60"),
      ('llmcost_turn_cost_USD_sum{job="p", llmcost_turn_bucket="5-8"}', "0+3x60"),
      ('llmcost_turn_cost_USD_count{job="p", llmcost_turn_bucket="5-8"}', "0+4x60"),
      ('llmcost_turn_cost_USD_sum{job="p", llmcost_turn_bucket="17+"}', "0x60"),
      ('llmcost_turn_cost_USD_count{job="p", llmcost_turn_bucket="17+"}', "0x60")],
     {'{llmcost_turn_bucket="1"}': 0.05, '{llmcost_turn_bucket="5-8"}': 0.75}),
    # Net cache savings: saving − premium over the range.
    ("otel-llmcost-cache", "Net cache savings", "A",
     [('llmcost_cache_savings_USD_total{job="a", llmcost_cache_effect="saving"}', "0+2x60"),
      ('llmcost_cache_savings_USD_total{job="a", llmcost_cache_effect="premium"}', "0+0.5x60")],
     {"{}": 90.0}),
    # Premium per dollar saved: the break-even is 1.
    ("otel-llmcost-cache", "Write premium per dollar saved", "A",
     [('llmcost_cache_savings_USD_total{job="a", llmcost_cache_effect="saving"}', "0+2x60"),
      ('llmcost_cache_savings_USD_total{job="a", llmcost_cache_effect="premium"}', "0+0.5x60")],
     {"{}": 0.25}),
    # Cache hit rate: cache reads over all input kinds (output excluded).
    ("otel-llmcost-cache", "Cache hit rate (input tokens)", "A",
     [('llmcost_tokens_total{job="a", llmcost_token_kind="input_uncached"}', "0+600x60"),
      ('llmcost_tokens_total{job="a", llmcost_token_kind="cache_read"}', "0+300x60"),
      ('llmcost_tokens_total{job="a", llmcost_token_kind="cache_write"}', "0+100x60"),
      ('llmcost_tokens_total{job="a", llmcost_token_kind="output"}', "0+5000x60")],
     {"{}": 0.3}),
    # Spend in range: every provider and component.
    ("otel-llmcost-overview", "Spend in range", "A",
     [('llmcost_cost_USD_total{job="a", gen_ai_provider_name="openai", '
       'gen_ai_request_model="gpt-4o", llmcost_cost_component="input"}', "0+0.25x60"),
      ('llmcost_cost_USD_total{job="a", gen_ai_provider_name="anthropic", '
       'gen_ai_request_model="claude", llmcost_cost_component="output"}', "0+0.5x60")],
     {"{}": 45.0}),
    # Unpriced calls: 0 when none, not "no data".
    ("otel-llmcost-overview", "Unpriced calls", "A", [], {"{}": 0.0}),
    # Conversation cost p90 from the histogram: 10 conversations closed in the hour, 9 in
    # the ($0.1, $0.2] bucket and 1 in ($1, $2]: the 9th of 10 is the top of ($0.1, $0.2].
    ("otel-llmcost-conversations", "Cost per conversation: p50, p90, p99", "B",
     [('llmcost_conversation_cost_USD_bucket{job="p", le="0.1"}', "0x60"),
      ('llmcost_conversation_cost_USD_bucket{job="p", le="0.2"}', "0 9x59"),
      ('llmcost_conversation_cost_USD_bucket{job="p", le="1.0"}', "0 9x59"),
      ('llmcost_conversation_cost_USD_bucket{job="p", le="2.0"}', "0 10x59"),
      ('llmcost_conversation_cost_USD_bucket{job="p", le="+Inf"}', "0 10x59")],
     {"{}": 0.2}),
    # Telemetry cost per dollar of LLM spend.
    ("otel-llmcost-tax", "Telemetry cost / LLM cost", "A",
     [('llmcost_telemetry_cost_USD_total{job="a"}', "0+0.0625x60"),
      ('llmcost_cost_USD_total{job="a", llmcost_cost_component="input"}', "0+1x60")],
     {"{}": 0.0625}),
]


def test_the_tail_cost_queries_compute_what_they_say(tmp_path):
    tests = []
    for uid, title, ref, series, expected in CASES:
        tests.append({
            "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in series],
            "promql_expr_test": [{
                "expr": panel_query(uid, title, ref), "eval_time": "60m",
                "exp_samples": [{"labels": labels, "value": value}
                                for labels, value in expected.items()]}],
        })
    path = tmp_path / "queries_test.yaml"
    path.write_text(yaml.safe_dump({"tests": tests}, sort_keys=False))
    result = promtool("test", "rules", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("uid, title", [("otel-llmcost-overview", "Month-end forecast (linear)")])
def test_the_forecast_is_month_to_date_plus_the_rate_times_what_is_left(tmp_path, uid, title):
    """At 1970-01-01 01:00 UTC, an hour into a 31-day month, after $10 in the hour: the
    month ends in 30 days and 23 hours at $10 an hour."""
    expr = panel_query(uid, title)
    case = {"interval": "1m",
            "input_series": [{"series": 'llmcost_cost_USD_total{job="a", '
                              'llmcost_cost_component="input"}', "values": "0+0.1666666666666667x60"}],
            "promql_expr_test": [{"expr": f"round({expr}, 0.01)", "eval_time": "60m",
                                  "exp_samples": [{"labels": "{}",
                                                   "value": 10 + 10 * (30 * 24 + 23)}]}]}
    path = tmp_path / "forecast_test.yaml"
    path.write_text(yaml.safe_dump({"tests": [case]}, sort_keys=False))
    result = promtool("test", "rules", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
