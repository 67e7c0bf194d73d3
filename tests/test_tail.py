"""The tail stage in process: whole-trace decisions, rules, bounds, re-weighting, tax.

End-to-end runs under ``opentelemetry-instrument`` are in test_tail_e2e.py; here the SDK
is wired by hand so that the clock and the policy can be set exactly.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from typing import Any, Iterator

import pytest
from google.protobuf.internal.encoder import _VarintBytes as encode_varint
from opentelemetry.exporter.otlp.proto.common._internal.trace_encoder import _encode_span
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

import otel_llmcost
from conftest import scenario
from otel_llmcost import semconv as sc
from otel_llmcost.instrumentation import _content, _wrappers
from otel_llmcost.sampling import LLMCostSampler, Policy, install
from otel_llmcost.sampling._rules import Facts, RateCap, Rules, TopPercent
from otel_llmcost.sampling._size import span_size


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Pipeline:
    """A TracerProvider with our sampler and tail stage, exporting to memory."""

    def __init__(self, policy: Policy, clock: Clock | None = None) -> None:
        self.exporter = InMemorySpanExporter()
        self.reader = InMemoryMetricReader()
        self.provider = TracerProvider(sampler=LLMCostSampler(policy.rate, policy))
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.stage = install(self.provider, MeterProvider(metric_readers=[self.reader]))
        if clock is not None:
            self.stage._clock = clock
        self.tracer = self.provider.get_tracer("app")
        self.llm = self.provider.get_tracer(sc.INSTRUMENTATION_SCOPE)

    def trace(self, cost: float = 0.0, error: bool = False, children: int = 2) -> int:
        """A root with ``children`` tool spans and one LLM span of ``cost``; its trace id."""
        with self.tracer.start_as_current_span("agent.run") as root:
            for _ in range(children):
                with self.tracer.start_as_current_span("tool"):
                    pass
            with self.llm.start_as_current_span("chat m", attributes={
                    sc.GEN_AI_OPERATION_NAME: sc.OP_CHAT,
                    sc.GEN_AI_USAGE_COST_AMOUNT: cost}) as llm:
                if error:
                    llm.set_status(Status(StatusCode.ERROR))
        return root.get_span_context().trace_id

    def by_trace(self) -> dict[int, list[Any]]:
        found: dict[int, list[Any]] = {}
        for span in self.exporter.get_finished_spans():
            found.setdefault(span.context.trace_id, []).append(span)
        return found

    def metrics(self) -> dict[str, dict[tuple, float]]:
        out: dict[str, dict[tuple, float]] = {}
        data = self.reader.get_metrics_data()
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    out[metric.name] = {tuple(sorted(p.attributes.items())): p.value
                                        for p in metric.data.data_points}
        return out


def test_rule_kept_traces_are_exported_whole_and_reweighted():
    pipe = Pipeline(Policy(rate=0.1, keep_cost_usd=1.0))
    expensive = {pipe.trace(cost=2.0) for _ in range(30)}
    failed = {pipe.trace(cost=0.001, error=True) for _ in range(30)}
    cheap = [pipe.trace(cost=0.001) for _ in range(600)]
    exported = pipe.by_trace()
    assert expensive | failed <= exported.keys()
    assert all(len(spans) == 4 for spans in exported.values())  # never a partial trace
    for tid in expensive | failed:
        for span in exported[tid]:
            assert span.attributes[sc.LLMCOST_SAMPLING_RULE] == (
                sc.SAMPLING_RULE_COST if tid in expensive else sc.SAMPLING_RULE_ERROR)
            assert span.attributes[sc.LLMCOST_SAMPLING_ADJUSTED_COUNT] == 1.0
            assert span.context.trace_flags.sampled
            assert "th:" not in (span.context.trace_state.get("ot") or "")
    kept_cheap = [tid for tid in cheap if tid in exported]
    sigma = math.sqrt(600 * 0.1 * 0.9)
    assert abs(len(kept_cheap) - 60) < 5 * sigma
    for tid in kept_cheap:
        for span in exported[tid]:
            assert span.attributes[sc.LLMCOST_SAMPLING_RULE] == sc.SAMPLING_RULE_PROBABILITY
            assert math.isclose(span.attributes[sc.LLMCOST_SAMPLING_ADJUSTED_COUNT], 10.0,
                                rel_tol=1e-5)
    # Re-weighting estimates the true total: rule traces count once, probability ones 1/p.
    # The sampler keeps the span's own start attributes (the SDK starts it with ours only).
    estimate = sum(s.attributes[sc.LLMCOST_SAMPLING_ADJUSTED_COUNT]
                   * s.attributes[sc.GEN_AI_USAGE_COST_AMOUNT]
                   for spans in exported.values() for s in spans if s.name == "chat m")
    true_total = 30 * 2.0 + 60 * 0.001 * 10
    assert 60 + 30 * 0.001 <= estimate <= true_total + 5 * sigma * 0.01


def test_a_rule_match_wins_over_probability_even_when_the_head_picked_the_trace():
    pipe = Pipeline(Policy(rate=0.5, keep_cost_usd=1.0))
    tids = [pipe.trace(cost=5.0) for _ in range(40)]
    exported = pipe.by_trace()
    assert set(tids) == exported.keys()
    rules = Counter(s.attributes[sc.LLMCOST_SAMPLING_RULE]
                    for spans in exported.values() for s in spans)
    assert rules == {sc.SAMPLING_RULE_COST: 160}


def test_without_rules_nothing_is_held_and_head_drops_are_counted():
    pipe = Pipeline(Policy(rate=0.25, keep_errors=False))
    assert not pipe.provider.sampler.record_unpicked
    for _ in range(400):
        pipe.trace(error=True)
    exported = pipe.exporter.get_finished_spans()
    metrics = pipe.metrics()
    seen = sum(metrics[sc.METRIC_TELEMETRY_SPANS_SEEN].values())
    kept = sum(metrics[sc.METRIC_TELEMETRY_SPANS_EXPORTED].values())
    dropped = sum(metrics[sc.METRIC_TELEMETRY_SPANS_DROPPED].values())
    assert seen == 1600 and kept == len(exported) and dropped == 1600 - kept


def test_top_percent_learns_its_threshold_online():
    top = TopPercent(1.0, window=2048)
    costs = [i / 1000 for i in range(1000)]  # 0.000 … 0.999
    for cost in costs:
        top.observe(cost)
    # About the 10th largest of 1000 (recomputed every 64 traces, so from the first 996).
    assert top.threshold == pytest.approx(0.99, abs=0.005)
    pipe = Pipeline(Policy(rate=0.0, keep_errors=False, keep_top_percent=5.0))
    costs = [(i % 100) / 100 for i in range(1000)]  # uniform costs 0.00 … 0.99
    random.Random(7).shuffle(costs)
    for cost in costs:
        pipe.trace(cost=cost)
    kept = pipe.by_trace()
    assert pipe.stage.top_threshold == pytest.approx(0.95, abs=0.015)
    # About 5 % of the traces seen after the threshold was learned (from 64 traces on).
    assert 0.04 * 936 <= len(kept) <= 0.075 * 936  # ties: costs come in steps of 0.01
    rules = {s.attributes[sc.LLMCOST_SAMPLING_RULE] for v in kept.values() for s in v}
    assert rules == {sc.SAMPLING_RULE_TOP_PERCENT}


def test_rate_cap_bounds_rule_keeps_and_counts_what_it_refuses():
    cap = RateCap(2.0)
    assert [cap.allow(10.0) for _ in range(3)] == [True, True, False]
    assert cap.allow(10.5) and not cap.allow(10.5)  # refills at 2 per second
    clock = Clock()
    pipe = Pipeline(Policy(rate=0.0, keep_max_per_second=5.0), clock)
    for _ in range(50):
        pipe.trace(error=True)  # a storm within one instant
    assert len(pipe.by_trace()) == 5
    dropped = pipe.metrics()[sc.METRIC_TELEMETRY_SPANS_DROPPED]
    assert dropped[((sc.LLMCOST_SAMPLING_DROP_REASON, sc.DROP_RATE_LIMITED),)] == 45 * 4
    clock.now += 1.0
    pipe.trace(error=True)
    assert len(pipe.by_trace()) == 6


def test_slow_rule_uses_the_local_trace_duration():
    rules = Rules(Policy(rate=0.0, keep_errors=False, keep_slow_ms=500))
    assert rules.match(Facts(head=False, start_ns=0, end_ns=600_000_000)) == \
        sc.SAMPLING_RULE_SLOW
    assert rules.match(Facts(head=False, start_ns=0, end_ns=400_000_000)) is None


def test_buffer_is_bounded_under_a_flood_of_never_ending_traces():
    pipe = Pipeline(Policy(rate=0.0, buffer_spans=100))
    for _ in range(5000):
        root = pipe.tracer.start_span("never ends")
        with pipe.tracer.start_as_current_span("child", context=_ctx(root)):
            pass
        assert pipe.stage._stats.buffered <= 100 and len(pipe.stage._traces) <= 100
    metrics = pipe.metrics()
    assert sum(metrics[sc.METRIC_SAMPLING_BUFFERED_SPANS].values()) <= 100
    assert sum(metrics[sc.METRIC_SAMPLING_OVERFLOWS].values()) == 4900
    assert len(pipe.stage._decided) <= 100


def test_a_trace_whose_root_never_ends_is_decided_after_the_timeout_and_late_spans_follow():
    clock = Clock()
    pipe = Pipeline(Policy(rate=0.0, timeout_s=30.0), clock)
    root = pipe.tracer.start_span("root never ends")
    with pipe.tracer.start_as_current_span("failed", context=_ctx(root)) as failed:
        failed.set_status(Status(StatusCode.ERROR))
    assert not pipe.exporter.get_finished_spans()  # waits for the root
    clock.now += 31
    pipe.trace()  # any activity runs the check
    assert [s.name for s in pipe.exporter.get_finished_spans()] == ["failed"]
    assert sum(pipe.metrics()[sc.METRIC_SAMPLING_TIMEOUTS].values()) == 1
    root.end()  # late: follows the decision (kept by the error rule)
    late = pipe.exporter.get_finished_spans()[-1]
    assert late.name == "root never ends"
    assert late.attributes[sc.LLMCOST_SAMPLING_RULE] == sc.SAMPLING_RULE_ERROR


def test_shutdown_decides_what_is_left_and_flushes_the_exporters():
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=LLMCostSampler(0.0, Policy(rate=0.0)))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    install(provider, MeterProvider())
    tracer = provider.get_tracer("app")
    root = tracer.start_span("open")
    with tracer.start_as_current_span("failed", context=_ctx(root)) as failed:
        failed.set_status(Status(StatusCode.ERROR))
    provider.shutdown()
    assert [s.name for s in exporter.get_finished_spans()] == ["failed"]


def test_estimated_bytes_are_close_to_the_real_otlp_encoding(telemetry, openai_client):
    for tokens in (10, 5000):
        openai_client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
            **scenario(input_tokens=tokens, cached_tokens=tokens // 2))
    spans = telemetry.finished()
    for span in spans:
        body = len(_encode_span(span).SerializeToString())
        real = body + 1 + len(encode_varint(body))  # as a field of ScopeSpans
        assert abs(span_size(span) - real) / real < 0.1, (span_size(span), real)


def test_telemetry_cost_uses_the_configured_prices_and_a_sampled_size_estimate():
    pipe = Pipeline(Policy(rate=1.0, usd_per_gb=0.5, usd_per_million_spans=2.0))
    for _ in range(1000):
        pipe.trace()
    metrics = pipe.metrics()
    size = sum(metrics[sc.METRIC_TELEMETRY_BYTES].values())
    # One span in 8 is sized and counted 8 times: unbiased; its standard error is ~5 %.
    exact = sum(span_size(s) for s in pipe.exporter.get_finished_spans())
    assert abs(size - exact) / exact < 0.2  # 4 standard errors
    assert sum(metrics[sc.METRIC_TELEMETRY_COST].values()) == pytest.approx(
        size * 0.5 / 1e9 + 4000 * 2.0 / 1e6)
    assert sc.METRIC_TELEMETRY_COST not in Pipeline(Policy()).metrics()


def test_policy_reads_every_variable_and_survives_nonsense(monkeypatch, caplog):
    for name, value in {sc.ENV_SAMPLE_RATE: "0.05", sc.ENV_KEEP_COST_USD: "0.25",
                        sc.ENV_KEEP_TOP_PERCENT: "1", sc.ENV_KEEP_ERRORS: "false",
                        sc.ENV_KEEP_SLOW_MS: "20000", sc.ENV_KEEP_MAX_PER_SECOND: "20",
                        sc.ENV_TAIL_BUFFER_SPANS: "100", sc.ENV_TAIL_TIMEOUT_S: "5",
                        sc.ENV_CAPTURE_CONTENT: "kept",
                        sc.ENV_TELEMETRY_USD_PER_GB: "0.3"}.items():
        monkeypatch.setenv(name, value)
    policy = Policy.from_env()
    assert policy == Policy(rate=0.05, keep_cost_usd=0.25, keep_top_percent=1.0,
                            keep_errors=False, keep_slow_ms=20000.0,
                            keep_max_per_second=20.0, buffer_spans=100, timeout_s=5.0,
                            capture=sc.CAPTURE_KEPT, usd_per_gb=0.3)
    assert policy.tail
    monkeypatch.setenv(sc.ENV_KEEP_TOP_PERCENT, "150")
    monkeypatch.setenv(sc.ENV_KEEP_ERRORS, "maybe")
    monkeypatch.setenv(sc.ENV_CAPTURE_CONTENT, "everything")
    policy = Policy.from_env()
    assert policy.keep_top_percent is None and policy.keep_errors
    assert policy.capture == sc.CAPTURE_OFF
    assert "LLMCOST_KEEP_TOP_PERCENT" in caplog.text and "everything" in caplog.text


@pytest.mark.parametrize("llmcost,standard,expected", [
    (None, None, sc.CAPTURE_OFF), (None, "true", sc.CAPTURE_ALL),
    (None, "SPAN_ONLY", sc.CAPTURE_ALL), (None, "EVENT_ONLY", sc.CAPTURE_OFF),
    ("kept", "true", sc.CAPTURE_KEPT), ("off", "true", sc.CAPTURE_OFF)])
def test_capture_mode_honours_the_standard_variable(monkeypatch, llmcost, standard, expected):
    for name, value in ((sc.ENV_CAPTURE_CONTENT, llmcost), (sc.ENV_OTEL_CAPTURE_CONTENT,
                                                            standard)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert Policy.from_env().capture == expected


def test_content_is_cut_to_the_budget_and_stays_valid_json():
    found = _content.attributes(
        [_content.text("be brief")],
        [{"role": "user", "parts": [_content.text("x" * 30), _content.text("y" * 30)]}],
        [{"role": "assistant", "parts": [_content.text("z" * 5)], "finish_reason": "stop"}],
        max_chars=40)
    inputs = json.loads(found[sc.GEN_AI_INPUT_MESSAGES])
    assert [p["content"] for p in inputs[0]["parts"]] == ["x" * 30, "y" * 10]
    assert json.loads(found[sc.GEN_AI_SYSTEM_INSTRUCTIONS]) == [
        {"type": "text", "content": "be brief"}]
    assert json.loads(found[sc.GEN_AI_OUTPUT_MESSAGES])[0]["finish_reason"] == "stop"


@pytest.fixture
def capture_all() -> Iterator[None]:
    """Content capture on for the session pipeline's instrumentation."""
    tel = _wrappers._telemetry_cache[0][2]
    saved = tel.capture
    tel.capture = sc.CAPTURE_ALL
    yield
    tel.capture = saved


def _messages(span: Any) -> tuple[list, list, list | None]:
    attrs = span.attributes
    system = attrs.get(sc.GEN_AI_SYSTEM_INSTRUCTIONS)
    return (json.loads(attrs[sc.GEN_AI_INPUT_MESSAGES]),
            json.loads(attrs[sc.GEN_AI_OUTPUT_MESSAGES]),
            json.loads(system) if system else None)


def test_content_of_openai_chat_streamed_and_not(telemetry, openai_client, capture_all):
    messages = [{"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "hello"},
                                             {"type": "image_url", "image_url": {"url": "x"}}]}]
    reply = openai_client.chat.completions.create(model="gpt-4o", messages=messages)
    for _ in openai_client.chat.completions.create(model="gpt-4o", messages=messages,
                                                   stream=True, **scenario(chunks=3)):
        pass
    plain, streamed = telemetry.finished()
    for span in (plain, streamed):
        inputs, outputs, _ = _messages(span)
        assert inputs == [
            {"role": "system", "parts": [{"type": "text", "content": "be brief"}]},
            {"role": "user", "parts": [{"type": "text", "content": "hello"},
                                       {"type": "image_url"}]}]
        assert outputs[0]["role"] == "assistant" and outputs[0]["finish_reason"] == "stop"
    assert _messages(plain)[1][0]["parts"] == [
        {"type": "text", "content": reply.choices[0].message.content}]


def test_content_of_openai_responses_and_anthropic(telemetry, openai_client, anthropic_client,
                                                  capture_all):
    response = openai_client.responses.create(model="gpt-4o", input="hello",
                                              instructions="be brief")
    message = anthropic_client.messages.create(
        model="claude-sonnet-4-5", max_tokens=50, system="be brief",
        messages=[{"role": "user", "content": "hello"}])
    responses_span, anthropic_span = telemetry.finished()
    for span, said in ((responses_span, response.output_text),
                       (anthropic_span, message.content[0].text)):
        inputs, outputs, system = _messages(span)
        assert system == [{"type": "text", "content": "be brief"}]
        assert inputs == [{"role": "user", "parts": [{"type": "text", "content": "hello"}]}]
        assert outputs[0]["parts"] == [{"type": "text", "content": said}]


def test_content_stays_off_by_default(telemetry, openai_client):
    openai_client.chat.completions.create(model="gpt-4o",
                                          messages=[{"role": "user", "content": "secret"}])
    assert sc.GEN_AI_INPUT_MESSAGES not in telemetry.span().attributes


def _ctx(span: Any) -> Any:
    from opentelemetry.trace import set_span_in_context
    return set_span_in_context(span)


def test_install_is_idempotent_and_only_counts_under_another_sampler():
    exporter = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    provider = TracerProvider()  # the SDK's default sampler: nothing is held back
    processor = SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    meters = MeterProvider(metric_readers=[reader])
    stage = install(provider, meters)
    assert install(provider, meters) is stage
    processors = provider._active_span_processor._span_processors
    assert processors[:2] == (processor, stage) and len(processors) == 3
    with provider.get_tracer("app").start_as_current_span("root"):
        pass
    assert len(exporter.get_finished_spans()) == 1
    points = {m.name: m.data.data_points for rm in reader.get_metrics_data().resource_metrics
              for sm in rm.scope_metrics for m in sm.metrics}
    assert [p.value for p in points[sc.METRIC_TELEMETRY_SPANS_EXPORTED]] == [1]


def test_the_attribution_scope_reaches_every_span_so_a_gateway_can_route_on_it():
    pipe = Pipeline(Policy(rate=1.0))
    with otel_llmcost.attributes(customer_id="acme", conversation_id="c-1"):
        pipe.trace()
    pipe.trace()  # outside the scope: nothing added
    # (The stand-in LLM span of `Pipeline.trace` has our scope name: our instrumentation
    # puts the ids on its real LLM spans itself, so they are skipped here.)
    first, second = ([s for s in spans if s.instrumentation_scope.name != sc.INSTRUMENTATION_SCOPE]
                     for spans in sorted(pipe.by_trace().values(),
                                         key=lambda spans: spans[0].start_time))
    assert {s.attributes.get(sc.LLMCOST_CUSTOMER_ID) for s in first} == {"acme"}
    assert {s.attributes.get(sc.GEN_AI_CONVERSATION_ID) for s in first} == {"c-1"}
    assert {s.attributes.get(sc.LLMCOST_CUSTOMER_ID) for s in second} == {None}
