"""Consistent probability head sampling (``OTEL_TRACES_SAMPLER=llmcost``)."""

from __future__ import annotations

import json
import logging
import math
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from otel_llmcost import semconv as sc
from otel_llmcost.sampling import LLMCostSampler, _threshold as th, sampler_from_env

INSTRUMENT = Path(sys.executable).with_name("opentelemetry-instrument")


@pytest.mark.parametrize("rate,encoded,adjusted", [
    (1.0, "0", 1.0), (0.5, "8", 2.0), (0.25, "c", 4.0), (0.01, "fd70a4", 100.0)])
def test_threshold_encoding_follows_the_specification(rate, encoded, adjusted):
    t = th.threshold(rate)
    assert th.encode(t) == encoded
    assert th.decode(encoded) == t
    assert math.isclose(th.adjusted_count(t), adjusted, rel_tol=1e-5)


def kept(sampler, trace_ids):
    return {tid for tid in trace_ids if sampler.should_sample(
        None, tid, "root").decision is Decision.RECORD_AND_SAMPLE}


def test_kept_share_is_within_binomial_bounds_and_nested():
    rng = random.Random(2026)
    ids = [rng.getrandbits(128) for _ in range(20_000)]
    tenth, quarter = kept(LLMCostSampler(0.1), ids), kept(LLMCostSampler(0.25), ids)
    for found, p in ((tenth, 0.1), (quarter, 0.25)):
        sigma = math.sqrt(len(ids) * p * (1 - p))
        assert abs(len(found) - len(ids) * p) < 5 * sigma
    assert tenth <= quarter  # a lower rate keeps a subset: decisions are consistent


def test_root_writes_th_and_children_follow_across_a_process_boundary():
    """Two tracer providers stand for two services; context crosses as W3C headers."""
    def provider():
        exporter = InMemorySpanExporter()
        tp = TracerProvider(sampler=LLMCostSampler(0.5))
        tp.add_span_processor(SimpleSpanProcessor(exporter))
        return tp.get_tracer("t"), exporter

    (front, front_spans), (back, back_spans) = provider(), provider()
    propagator = TraceContextTextMapPropagator()
    for _ in range(200):
        with front.start_as_current_span("request") as root:
            headers: dict[str, str] = {}
            propagator.inject(headers)
        with back.start_as_current_span("llm", context=propagator.extract(headers)) as child:
            assert child.get_span_context().trace_flags.sampled == \
                root.get_span_context().trace_flags.sampled
    assert front_spans.get_finished_spans()
    assert len(back_spans.get_finished_spans()) == len(front_spans.get_finished_spans())
    for span in back_spans.get_finished_spans():
        assert span.context.trace_state.get("ot") == "th:8"
        assert span.attributes[sc.LLMCOST_SAMPLING_ADJUSTED_COUNT] == 2.0
        assert span.attributes[sc.LLMCOST_SAMPLING_RULE] == sc.SAMPLING_RULE_PROBABILITY


def test_explicit_randomness_in_tracestate_wins_over_the_trace_id():
    from opentelemetry.trace import TraceState
    sampler = LLMCostSampler(0.5)
    high = TraceState([("ot", "rv:ffffffffffffff")])
    low = TraceState([("ot", "rv:00000000000001")])
    assert sampler.should_sample(None, 0, "r", trace_state=high).decision is \
        Decision.RECORD_AND_SAMPLE
    assert sampler.should_sample(None, (1 << 56) - 1, "r", trace_state=low).decision is \
        Decision.DROP
    kept_state = sampler.should_sample(None, 0, "r", trace_state=high).trace_state
    assert th.parse_ot(kept_state.get("ot")) == {"th": "8", "rv": "ffffffffffffff"}


def test_factory_reads_arg_then_env_and_rejects_nonsense(monkeypatch, caplog):
    monkeypatch.setenv(sc.ENV_SAMPLE_RATE, "0.25")
    assert sampler_from_env(None).rate == 0.25  # OTEL_TRACES_SAMPLER_ARG unset: None
    assert sampler_from_env("0.5").rate == 0.5
    monkeypatch.delenv(sc.ENV_SAMPLE_RATE)
    assert sampler_from_env(None).rate == 1.0  # sampling is opt-in
    with caplog.at_level(logging.WARNING, logger="otel_llmcost"):
        assert sampler_from_env("lots").rate == 1.0
    assert "not a number" in caplog.text


@pytest.mark.parametrize("env,expected_th,expected_count", [
    ({"OTEL_TRACES_SAMPLER_ARG": "0.5"}, "th:8", 2.0),
    ({sc.ENV_SAMPLE_RATE: "0.25"}, "th:c", 4.0)])
def test_selected_by_name_under_opentelemetry_instrument(env, expected_th, expected_count):
    app = textwrap.dedent("""
        from opentelemetry import trace
        tracer = trace.get_tracer("app")
        for _ in range(400):
            with tracer.start_as_current_span("root", attributes={"app.route": "/chat"}):
                with tracer.start_as_current_span("child", attributes={"app.step": 1}):
                    pass
    """)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLMCOST_"))}
    full_env.update(OTEL_TRACES_SAMPLER=sc.ENTRY_POINT_SAMPLER, **env)
    out = subprocess.run([str(INSTRUMENT), "--traces_exporter", "console", "--metrics_exporter",
                          "none", sys.executable, "-c", app], capture_output=True, text=True,
                         timeout=120, env=full_env, cwd="/")
    assert out.returncode == 0, out.stderr
    decoder, spans, pos = json.JSONDecoder(), [], 0
    while (start := out.stdout.find("{", pos)) != -1:
        span, pos = decoder.raw_decode(out.stdout, start)
        spans.append(span)
    roots = [s for s in spans if s["name"] == "root"]
    children = [s for s in spans if s["name"] == "child"]
    p = 1 / expected_count
    assert abs(len(roots) - 400 * p) < 5 * math.sqrt(400 * p * (1 - p))
    assert len(children) == len(roots)  # whole traces: children follow their root
    for span in spans:
        assert expected_th in span["context"]["trace_state"]
        assert span["attributes"][sc.LLMCOST_SAMPLING_ADJUSTED_COUNT] == expected_count
        # The span's own start attributes survive next to ours.
        assert span["attributes"].get("app.route" if span["name"] == "root" else "app.step")
