"""The processor as a service: an instrumented app's real OTLP exports in, rollups out.

The app (tests/apps/rollup_workload.py) runs under the real ``opentelemetry-instrument``
with the real OTLP exporters (HTTP, then gRPC) against a `Processor` with both
receivers; the processor forwards every request to a sink, and the test derives the
expected rollups from exactly the spans the processor saw, then compares them with a
Prometheus scrape of the processor.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import pytest
from otlp_sink import OtlpSink
from prometheus_client.parser import text_string_to_metric_families

from otel_llmcost import semconv as sc
from otel_llmcost.processor.engine import Config, turn_bucket
from otel_llmcost.processor.service import Processor
from otel_llmcost.processor.settings import Settings

INSTRUMENT = Path(sys.executable).with_name("opentelemetry-instrument")
APP = Path(__file__).with_name("apps") / "rollup_workload.py"
WAIT_S = 120  # only against a hang


def wait_for(condition: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def run_app(provider_url: str, protocol: str, endpoint: str, prefix: str, seed: int) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLMCOST_"))}
    env.update(OTEL_SERVICE_NAME="rollup-app", OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
               OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, OTEL_METRICS_EXPORTER="none",
               OTEL_LOGS_EXPORTER="none", OTEL_BSP_SCHEDULE_DELAY="100",
               OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="llmcost_anthropic",
               WORKLOAD_PROVIDER_URL=provider_url, WORKLOAD_PREFIX=prefix,
               WORKLOAD_SEED=str(seed), WORKLOAD_CONVERSATIONS="6")
    out = subprocess.run([str(INSTRUMENT), sys.executable, str(APP)], env=env, cwd="/",
                         capture_output=True, text=True, timeout=WAIT_S)
    assert out.returncode == 0, out.stderr


def scrape(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def samples(families: dict[str, Any], metric: sc.MetricDef, suffix: str = "",
            **labels: str) -> dict[tuple, float]:
    name = metric.prometheus.removesuffix("_total")
    wanted = {sc.prometheus_label(k): v for k, v in labels.items()}
    return {tuple(sorted(s.labels.items())): s.value for s in families[name].samples
            if s.name == metric.prometheus + suffix
            and all(s.labels.get(k) == v for k, v in wanted.items())}


@pytest.fixture(scope="module")
def rolled_up(provider, tmp_path_factory):
    sink = OtlpSink().__enter__()
    settings = Settings(grpc_endpoint="127.0.0.1:0", http_endpoint="127.0.0.1:0",
                        metrics_endpoint="127.0.0.1:0", forward_endpoint=sink.endpoint,
                        state_path=str(tmp_path_factory.mktemp("state") / "state.db"),
                        checkpoint_s=0.5,
                        engine=Config(trace_wait_s=0.3, conversation_idle_s=2.0,
                                      runaway_llm_calls=2))
    processor = Processor(settings)
    processor.start()
    http, grpc = processor.receivers
    try:
        run_app(provider.url, "http/protobuf", f"http://127.0.0.1:{http.port}", "h", 1)
        run_app(provider.url, "grpc", f"http://127.0.0.1:{grpc.port}", "g", 2)
        spans = wait_for(lambda: sink.spans if len(sink.spans) == sum(
            processor.stats.snapshot().received_spans.values()) else None, "forwarding")
        llm = [s for s in spans if sc.LLMCOST_PRICING_STATUS in s["attributes"]]
        conversations = {s["attributes"][sc.GEN_AI_CONVERSATION_ID] for s in llm}
        port = processor.metrics_server.port
        families = wait_for(lambda: (f := scrape(port)) and sum(samples(
            f, sc.M_CONVERSATION_COST, "_count").values()) == len(conversations) and f,
            "every conversation to close")
        yield spans, llm, families, processor
    finally:
        processor.stop()
        sink.__exit__(None, None, None)


def test_both_transports_delivered_and_everything_was_forwarded(rolled_up):
    spans, _, families, processor = rolled_up
    received = {dict(k)["llmcost_transport"]: v for k, v in
                samples(families, sc.M_PROCESSOR_RECEIVED_SPANS).items()}
    assert received["http"] > 0 and received["grpc"] > 0
    assert sum(received.values()) == len(spans)  # the sink got every span, unchanged
    requests = samples(families, sc.M_PROCESSOR_REQUESTS, llmcost_request_outcome="accepted")
    assert sum(samples(families, sc.M_PROCESSOR_FORWARDED).values()) == sum(requests.values())


def test_customer_spend_matches_the_spans_exactly(rolled_up):
    _, llm, families, _ = rolled_up
    truth: dict[str, float] = defaultdict(float)
    for span in llm:
        truth[span["attributes"][sc.LLMCOST_CUSTOMER_ID]] += span["attributes"][
            sc.GEN_AI_USAGE_COST_AMOUNT]
    for window in ("1h", "1d"):
        got = {dict(k)["llmcost_customer_id"]: v for k, v in samples(
            families, sc.M_CUSTOMER_TOP_COST, llmcost_window=window).items()}
        assert got.pop(sc.CUSTOMER_OTHER) == 0 and got.pop(sc.CUSTOMER_UNATTRIBUTED) == 0
        assert got == pytest.approx(dict(truth))
        active = samples(families, sc.M_CUSTOMER_ACTIVE, llmcost_window=window)
        assert list(active.values()) == [len(truth)]


def test_turns_traces_and_conversations_match_the_spans(rolled_up):
    _, llm, families, _ = rolled_up
    traces: dict[str, list] = defaultdict(list)
    for span in llm:
        traces[span["trace_id"]].append(span)
    turns: dict[str, list[tuple[int, float, int]]] = defaultdict(list)
    for spans in traces.values():
        first = min(spans, key=lambda s: s["start_ns"])
        turns[first["attributes"][sc.GEN_AI_CONVERSATION_ID]].append(
            (first["start_ns"], sum(s["attributes"][sc.GEN_AI_USAGE_COST_AMOUNT] for s in spans),
             first["attributes"][sc.GEN_AI_USAGE_INPUT_TOKENS]))
    by_bucket: dict[str, list[float]] = defaultdict(list)
    for conversation in turns.values():
        for index, (_, cost, _) in enumerate(sorted(conversation), 1):
            by_bucket[turn_bucket(index)].append(cost)
    for bucket, costs in by_bucket.items():
        count = samples(families, sc.M_TURN_COST, "_count", llmcost_turn_bucket=bucket)
        total = samples(families, sc.M_TURN_COST, "_sum", llmcost_turn_bucket=bucket)
        assert list(count.values()) == [len(costs)]
        assert math.isclose(list(total.values())[0], sum(costs), rel_tol=1e-9)
    trace_count = samples(families, sc.M_TRACE_COST, "_count")
    assert list(trace_count.values()) == [len(traces)]
    llm_calls = samples(families, sc.M_TRACE_LLM_CALLS, "_sum")
    assert list(llm_calls.values()) == [len(llm)]
    conversation_cost = samples(families, sc.M_CONVERSATION_COST, "_sum")
    assert math.isclose(list(conversation_cost.values())[0],
                        sum(c for conv in turns.values() for _, c, _ in conv), rel_tol=1e-9)
    turns_total = samples(families, sc.M_CONVERSATION_TURNS, "_sum")
    assert list(turns_total.values()) == [len(traces)]


def test_runaway_traces_are_counted_and_listed_for_drill_down(rolled_up):
    _, llm, families, processor = rolled_up
    calls: dict[str, int] = defaultdict(int)
    for span in llm:
        calls[span["trace_id"]] += 1
    runaway = {trace_id for trace_id, n in calls.items() if n > 2}
    assert runaway  # the workload makes turns of up to three calls
    counted = samples(families, sc.M_TRACE_RUNAWAY, llmcost_runaway_reason=sc.RUNAWAY_LLM_CALLS)
    assert list(counted.values()) == [len(runaway)]
    with urllib.request.urlopen(
            f"http://127.0.0.1:{processor.metrics_server.port}/runaways", timeout=10) as response:
        listed = json.loads(response.read())
    assert {entry["trace_id"] for entry in listed} == runaway
