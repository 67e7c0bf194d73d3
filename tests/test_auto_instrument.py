"""End to end under the real ``opentelemetry-instrument`` command, as a user runs it."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from otel_llmcost import semconv as sc

INSTRUMENT = Path(sys.executable).with_name("opentelemetry-instrument")


def run_example(**env: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    """Run the example app auto-instrumented with console exporters; parse what it prints."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    full_env.update(OTEL_SERVICE_NAME="llmcost-e2e", **env)
    out = subprocess.run(
        [str(INSTRUMENT), "--traces_exporter", "console", "--metrics_exporter", "console",
         sys.executable, "-m", "otel_llmcost.demo.example"],
        capture_output=True, text=True, timeout=180, env=full_env, cwd="/")
    assert out.returncode == 0, out.stderr
    spans, metrics = [], []
    decoder = json.JSONDecoder()
    text, pos = out.stdout, 0
    while (start := text.find("\n{", pos)) != -1:
        obj, pos = decoder.raw_decode(text, start + 1)
        (metrics if "resource_metrics" in obj else spans).append(obj)
    return spans, metrics, out.stderr


def our_spans(spans: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Our LLM spans, keyed by name plus customer (they are unique in the example)."""
    found = {}
    for span in spans:
        attrs = span["attributes"]
        if sc.LLMCOST_PRICING_STATUS in attrs:
            key = f'{span["name"]}/{attrs.get(sc.LLMCOST_CUSTOMER_ID)}/{span["context"]["span_id"]}'
            found[key] = attrs
    return found


def metric_sum(metrics: list[dict[str, Any]], name: str) -> float:
    total = 0.0
    for batch in metrics:
        for rm in batch["resource_metrics"]:
            for sm in rm["scope_metrics"]:
                for metric in sm["metrics"]:
                    if metric["name"] == name:
                        total += sum(p["value"] for p in metric["data"]["data_points"])
    return total


@pytest.fixture(scope="module")
def example_run():
    return run_example()


def test_spans_printed_by_the_console_exporter_carry_cost(example_run):
    spans, _, _ = example_run
    ours = our_spans(spans)
    assert len(ours) == 8
    gpt4o = [a for k, a in ours.items() if k.startswith("chat gpt-4o/acme")
             and a[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 10240]
    (cached,) = gpt4o
    # 1,760 uncached × $2.50/M + 10,240 cached × $1.25/M + 350 output × $10/M
    assert math.isclose(cached[sc.GEN_AI_USAGE_COST_AMOUNT], 0.0207)
    assert cached[sc.GEN_AI_USAGE_COST_CURRENCY] == "USD"
    claude_writes = [a for k, a in ours.items() if "claude" in k
                     and a[sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] == 50000]
    (writes,) = claude_writes
    # 900 input × $3/M + 20,000 5m writes × $3.75/M + 30,000 1h writes × $6/M + 700 × $15/M
    assert math.isclose(writes[sc.GEN_AI_USAGE_COST_AMOUNT],
                        900 * 3e-6 + 20000 * 3.75e-6 + 30000 * 6e-6 + 700 * 15e-6)
    statuses = sorted(a[sc.LLMCOST_PRICING_STATUS] for a in ours.values())
    assert statuses.count(sc.STATUS_UNKNOWN) == 1


def test_cost_metrics_match_the_spans(example_run):
    spans, metrics, _ = example_run
    span_total = sum(a.get(sc.GEN_AI_USAGE_COST_AMOUNT, 0.0) for a in our_spans(spans).values())
    assert math.isclose(metric_sum(metrics, sc.METRIC_COST), span_total, rel_tol=1e-9)
    assert metric_sum(metrics, sc.METRIC_UNPRICED_CALLS) == 1


def test_disabling_our_entry_point_removes_our_spans():
    spans, _, _ = run_example(OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=sc.ENTRY_POINT_OPENAI)
    names = {span["name"] for span in spans
             if sc.LLMCOST_PRICING_STATUS in span["attributes"]}
    assert names and all("claude" in name for name in names)


def test_prices_file_prices_a_self_hosted_model(tmp_path):
    prices = tmp_path / "prices.yaml"
    prices.write_text("- {provider: openai, model: in-house-llm-7b, input_mtok: 0.5, "
                      "output_mtok: 1.5}\n")
    spans, metrics, _ = run_example(**{sc.ENV_PRICES_FILE: str(prices)})
    (attrs,) = [a for a in our_spans(spans).values()
                if a[sc.GEN_AI_REQUEST_MODEL] == "in-house-llm-7b"]
    assert attrs[sc.LLMCOST_PRICING_STATUS] == sc.STATUS_EXACT
    assert "+overrides:" in attrs[sc.LLMCOST_PRICING_VERSION]
    expected = (attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] * 0.5e-6
                + attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] * 1.5e-6)
    assert math.isclose(attrs[sc.GEN_AI_USAGE_COST_AMOUNT], expected)
    assert metric_sum(metrics, sc.METRIC_UNPRICED_CALLS) == 0
