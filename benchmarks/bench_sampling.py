#!/usr/bin/env python3
"""The observability tax: what each sampling policy exports, what it keeps, what it costs.

A fixed, seeded agent workload (traces of 1-4 OpenAI chat calls and tool spans, a
heavy-tailed cost distribution, ~1.2 % failing calls, a few slow traces) runs through the
real `openai` SDK on a mocked in-process transport, once per configuration, each in its own
subprocess with its own environment. Reported per configuration: exported spans and bytes
(measured by encoding exactly what the exporter receives as OTLP/protobuf), the self-metric
estimate, the telemetry bill at illustrative prices, how many of the traces the rules exist
for were exported whole, and the CPU the sampling adds per LLM call (callgrind instructions
from the difference of N1- and N2-call runs; CPU time as medians of alternating rounds).
See README.md beside this file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.sdk.environment_variables import (
    OTEL_TRACES_SAMPLER,
    OTEL_TRACES_SAMPLER_ARG,
)

from otel_llmcost import semconv as sc

import _results  # beside this script

HERE = Path(__file__).resolve().parent
RESULTS = _results.RESULTS
SECTION = "Sampling: the observability tax"
RAW = "bench_sampling.json"  # raw results, in --out

# ---------------------------------------------------------------------------- policies

# The three README policies ("Three policies"), as environment blocks. Edit here only.
POLICIES: dict[str, dict[str, str]] = {
    "development": {
        OTEL_TRACES_SAMPLER: sc.ENTRY_POINT_SAMPLER,
        sc.ENV_SAMPLE_RATE: "1",
        sc.ENV_CAPTURE_CONTENT: sc.CAPTURE_ALL,
    },
    "production": {
        OTEL_TRACES_SAMPLER: sc.ENTRY_POINT_SAMPLER,
        sc.ENV_SAMPLE_RATE: "0.02",
        sc.ENV_KEEP_COST_USD: "0.25",
        sc.ENV_KEEP_TOP_PERCENT: "1",
        sc.ENV_KEEP_ERRORS: "true",
        sc.ENV_KEEP_SLOW_MS: "20000",
        sc.ENV_KEEP_MAX_PER_SECOND: "20",
    },
    "strict": {
        OTEL_TRACES_SAMPLER: sc.ENTRY_POINT_SAMPLER,
        sc.ENV_SAMPLE_RATE: "0.01",
        sc.ENV_KEEP_COST_USD: "1",
        sc.ENV_KEEP_ERRORS: "true",
        sc.ENV_KEEP_MAX_PER_SECOND: "2",
    },
}
# Not a fourth policy: what prompts and completions on rule-kept traces add to production.
POLICIES["production-content"] = {**POLICIES["production"],
                                  sc.ENV_CAPTURE_CONTENT: sc.CAPTURE_KEPT}
PRODUCTION = "production"  # the policy the CPU target is judged on
TARGET_US = 20.0  # µs per LLM call the production policy may add (sampling machinery)

# Telemetry prices, given to every configuration so that llmcost.telemetry.cost is recorded.
# ILLUSTRATIVE, modelled on Datadog APM's published list prices (datadoghq.com/pricing:
# ingested spans $0.10 per GB, indexed spans $1.70 per million with 15-day retention) as if
# every exported span were ingested and indexed. Your vendor's prices differ: change them here.
TELEMETRY_PRICES: dict[str, str] = {
    sc.ENV_TELEMETRY_USD_PER_GB: "0.10",
    sc.ENV_TELEMETRY_USD_PER_MILLION_SPANS: "1.70",
}

PLAIN = "plain-otel"  # default sampler, install() NOT called: OpenTelemetry as it comes
KEEP_ALL = "keep-everything"  # default sampler + install(): what opentelemetry-instrument does
CONFIGS: tuple[str, ...] = (PLAIN, KEEP_ALL, *POLICIES)
ENCODE, NULL = "otlp", "null"  # exporters: encode-and-count, or drop
QUEUE = 1 << 20  # BatchSpanProcessor max_queue_size
EXPORTERS = (ENCODE, NULL)

# Nothing inherited may change what a configuration does.
CHILD_ENV = {"PYTHONHASHSEED": "0"}
_DROPPED_ENV_PREFIXES = ("OTEL_", "LLMCOST_", "TRACELOOP_")

# ---------------------------------------------------------------------------- workload

SEED = 20_251_124
SERVICE_NAME = "support-agent"
APP_SCOPE = "bench.agent"
# Attribute names of the app's own spans (GenAI agent/tool conventions; not ours).
ATTR_AGENT_NAME = "gen_ai.agent.name"
ATTR_TOOL_NAME = "gen_ai.tool.name"
ATTR_TOOL_CALL_ID = "gen_ai.tool.call.id"
OP_INVOKE_AGENT, OP_EXECUTE_TOOL = "invoke_agent", "execute_tool"
OT_KEY = "ot"  # the OpenTelemetry tracestate key (W3C trace context); th: its threshold

TOP_WINDOW = 2_048  # README: top_percent learns from the last 2,048 traces with an LLM call
TOP_RECOMPUTE = 64  # the implementation recomputes the threshold every 64 traces
FAIL_RATE = 0.012  # per call: provider 500, max_retries=0, the app catches it
SLOW_RATE = 0.003  # per trace: the root span started 25 s earlier (queued job)
SLOW_BACKDATE_S = 25.0
# Heavy tail: (share of traces, model, median input tokens, sigma, median output, sigma).
TIERS = (
    (0.64, "gpt-4o-mini", 1_800, 1.0, 220, 0.8),
    (0.28, "gpt-4.1", 5_000, 1.1, 450, 0.9),
    (0.07, "o3", 14_000, 1.0, 2_500, 0.8),
    (0.01, "o1", 30_000, 0.8, 4_000, 0.7),
)
MAX_INPUT, MAX_OUTPUT = 200_000, 32_000
FEATURES = ("support-chat", "ticket-triage", "research", "code-review")
TOOLS = ("search_kb", "lookup_order", "fetch_url", "run_sql", "read_file")
_PROSE = ("the order was shipped on monday but the customer says it never arrived and wants a "
         "refund or a replacement please check the carrier status the warehouse log and the "
         "payment record before answering policy allows one free replacement within thirty "
         "days error timeout retry invoice account subscription plan upgrade cancel")
WORDS = tuple(_PROSE.split())
SYSTEM_PROMPTS = {f: f"You are the {f} agent of Acme. " + " ".join(
    random.Random(f).choices(WORDS, k=90)) for f in FEATURES}


@dataclass(frozen=True)
class Call:
    """One planned LLM call: what the app sends and what the mocked provider answers."""

    model: str
    messages: tuple[dict[str, str], ...]
    max_tokens: int
    status: int  # 200 or 500
    body: bytes
    input_tokens: int
    cached_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class Tool:
    name: str
    call_id: str


@dataclass(frozen=True)
class Trace:
    """One agent run: a root span, then LLM calls and tool spans in order."""

    index: int
    feature: str
    customer: str
    steps: tuple[Call | Tool, ...]
    slow: bool

    @property
    def calls(self) -> list[Call]:
        return [s for s in self.steps if isinstance(s, Call)]

    @property
    def spans(self) -> int:
        return 1 + len(self.steps)

    @property
    def failed(self) -> bool:
        return any(c.status != 200 for c in self.calls)


def _text(rng: random.Random, chars: int) -> str:
    words: list[str] = []
    length = 0
    while length < chars:
        word = rng.choice(WORDS)
        words.append(word)
        length += len(word) + 1
    return " ".join(words)


def _tokens(rng: random.Random, median: float, sigma: float, cap: int) -> int:
    return max(1, min(cap, int(rng.lognormvariate(math.log(median), sigma))))


def _body(index: int, model: str, reply: str, input_tokens: int, cached: int, output: int,
          reasoning: int) -> bytes:
    return json.dumps({
        "id": f"chatcmpl-{index:06d}", "object": "chat.completion", "created": 1_700_000_000,
        "model": model, "service_tier": "default", "system_fingerprint": "fp_bench",
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                     "message": {"role": "assistant", "content": reply, "refusal": None}}],
        "usage": {"prompt_tokens": input_tokens, "completion_tokens": output,
                  "total_tokens": input_tokens + output,
                  "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": reasoning,
                                                "audio_tokens": 0,
                                                "accepted_prediction_tokens": 0,
                                                "rejected_prediction_tokens": 0}},
    }).encode()


_ERROR_BODY = json.dumps({"error": {
    "message": "The server had an error while processing your request.",
    "type": "server_error", "param": None, "code": None}}).encode()


def workload(seed: int = SEED) -> Iterator[Trace]:
    """The endless, deterministic sequence of traces; callers take a prefix."""
    rng = random.Random(seed)
    call_no = 0
    for index in range(sys.maxsize):
        draw, tier = rng.random(), TIERS[-1]
        for candidate in TIERS:
            if draw < candidate[0]:
                tier = candidate
                break
            draw -= candidate[0]
        _, model, in_median, in_sigma, out_median, out_sigma = tier
        feature = rng.choice(FEATURES)
        customer = f"cust-{rng.randrange(5_000):04d}"
        n_calls = rng.choices((1, 2, 3, 4), weights=(30, 30, 25, 15))[0]
        messages: list[dict[str, str]] = [
            {"role": "system", "content": SYSTEM_PROMPTS[feature]},
            {"role": "user", "content": _text(rng, rng.randint(120, 900))}]
        steps: list[Call | Tool] = []
        input_tokens = _tokens(rng, in_median, in_sigma, MAX_INPUT)
        for k in range(n_calls):
            if k:
                # The conversation grows; most of the previous prompt is a cache hit.
                cached = (input_tokens // 128) * 128 if input_tokens >= 1024 else 0
                input_tokens = min(MAX_INPUT, input_tokens + _tokens(rng, in_median / 3,
                                                                     in_sigma, MAX_INPUT))
            else:
                cached = 0
            output = _tokens(rng, out_median, out_sigma, MAX_OUTPUT)
            reasoning = int(output * 0.6) if model in ("o3", "o1") else 0
            fails = rng.random() < FAIL_RATE
            reply = _text(rng, min(4 * (output - reasoning) + 20, 1_500))
            call_no += 1
            steps.append(Call(model=model, messages=tuple(messages),
                              max_tokens=MAX_OUTPUT if reasoning else 4_096,
                              status=500 if fails else 200,
                              body=_ERROR_BODY if fails else _body(
                                  call_no, model, reply, input_tokens, cached, output,
                                  reasoning),
                              input_tokens=input_tokens, cached_tokens=cached,
                              output_tokens=output))
            if fails:
                break  # the app catches the error and gives up on this run
            messages.append({"role": "assistant", "content": reply})
            if k < n_calls - 1:
                for _ in range(rng.choice((1, 1, 2))):
                    tool = Tool(rng.choice(TOOLS), f"call_{call_no}_{len(steps)}")
                    steps.append(tool)
                    messages.append({"role": "user", "content": f"Result of {tool.name}: "
                                     + _text(rng, rng.randint(150, 1_200))})
        yield Trace(index, feature, customer, tuple(steps), slow=rng.random() < SLOW_RATE)


def plan(start_calls: int, calls: int, seed: int = SEED) -> tuple[list[Trace], list[Trace]]:
    """(warm-up traces, measured traces): whole traces, the first holding at least
    ``start_calls`` calls, the second at least ``calls``."""
    warm, measured, seen = [], [], 0
    for trace in workload(seed):
        if seen < start_calls:
            warm.append(trace)
        elif seen < start_calls + calls:
            measured.append(trace)
        else:
            break
        seen += len(trace.calls)
    return warm, measured


def arrivals(n: int, per_second: float, seed: int = SEED) -> list[float]:
    """Poisson arrival offsets (s) of ``n`` traces at ``per_second``; zeros if unpaced."""
    if per_second <= 0:
        return [0.0] * n
    rng, t, out = random.Random(seed + 1), 0.0, []
    for _ in range(n):
        out.append(t)
        t += rng.expovariate(per_second)
    return out


# -------------------------------------------------------------------------- child side


def _seeded_ids(seed: int) -> Any:
    """Trace and span ids from their own seeded streams: the same trace ids (so the same
    head decisions) in every configuration."""
    from opentelemetry.sdk.trace.id_generator import IdGenerator
    from opentelemetry.trace import INVALID_SPAN_ID, INVALID_TRACE_ID

    class SeededIds(IdGenerator):
        def __init__(self) -> None:
            self._traces, self._spans = random.Random(seed), random.Random(seed + 2)

        def generate_trace_id(self) -> int:
            value = INVALID_TRACE_ID
            while value == INVALID_TRACE_ID:
                value = self._traces.getrandbits(128)
            return value

        def generate_span_id(self) -> int:
            value = INVALID_SPAN_ID
            while value == INVALID_SPAN_ID:
                value = self._spans.getrandbits(64)
            return value

    return SeededIds()


def _exporter(kind: str, detail: bool) -> Any:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class Counting(SpanExporter):
        """``otlp``: encodes each batch exactly as an OTLP exporter would and counts the
        bytes; ``null``: only counts. ``detail`` also records what was exported per trace
        (outside the CPU runs: that bookkeeping is not part of an exporter)."""

        def __init__(self) -> None:
            self.spans = 0
            self.bytes = 0
            self.batches = 0
            self.per_trace: Counter[int] = Counter()
            self.rule_of_trace: dict[int, str] = {}
            self.cost_weighted = 0.0  # Σ cost × adjusted_count over exported LLM spans
            self.cost_exported = 0.0
            self.cost_per_trace: defaultdict[int, float] = defaultdict(float)
            self.weighted_per_trace: defaultdict[int, float] = defaultdict(float)
            self.content_spans = 0
            self.no_rule_spans = 0
            self.rule_with_th = 0  # rule-kept spans must not carry ot=th
            self.probability_without_th = 0  # probability-kept spans must
            self.adjusted: dict[str, set[float]] = defaultdict(set)  # by rule

        def export(self, spans: Any) -> SpanExportResult:
            self.spans += len(spans)
            self.batches += 1
            if kind == ENCODE:
                self.bytes += len(encode_spans(spans).SerializeToString())
            if detail:
                for span in spans:
                    self._note(span)
            return SpanExportResult.SUCCESS

        def _note(self, span: Any) -> None:
            trace_id = span.context.trace_id
            attrs = span.attributes or {}
            self.per_trace[trace_id] += 1
            rule = attrs.get(sc.LLMCOST_SAMPLING_RULE)
            if rule is None:
                self.no_rule_spans += 1
            else:
                if span.parent is None:
                    self.rule_of_trace[trace_id] = str(rule)
                ot = span.context.trace_state.get(OT_KEY) if span.context.trace_state else None
                has_th = ot is not None and any(p.startswith("th:") for p in ot.split(";"))
                if rule == sc.SAMPLING_RULE_PROBABILITY:
                    self.probability_without_th += not has_th
                else:
                    self.rule_with_th += has_th
                adjusted = attrs.get(sc.LLMCOST_SAMPLING_ADJUSTED_COUNT)
                if len(self.adjusted[str(rule)]) < 8:
                    self.adjusted[str(rule)].add(float(adjusted) if adjusted is not None
                                                 else math.nan)
            cost = attrs.get(sc.GEN_AI_USAGE_COST_AMOUNT)
            if cost is not None:
                weight = float(attrs.get(sc.LLMCOST_SAMPLING_ADJUSTED_COUNT, 1.0))
                self.cost_weighted += float(cost) * weight
                self.cost_exported += float(cost)
                self.cost_per_trace[trace_id] += float(cost)
                self.weighted_per_trace[trace_id] += float(cost) * weight
            if sc.GEN_AI_INPUT_MESSAGES in attrs or sc.GEN_AI_OUTPUT_MESSAGES in attrs:
                self.content_spans += 1

        def shutdown(self) -> None:
            pass

    return Counting()


def _metric_sums(reader: Any) -> dict[str, Any]:
    """Sums of the self-metrics (and the LLM cost counter) by name and attributes."""
    wanted = {sc.METRIC_TELEMETRY_SPANS_SEEN, sc.METRIC_TELEMETRY_SPANS_EXPORTED,
              sc.METRIC_TELEMETRY_SPANS_DROPPED, sc.METRIC_TELEMETRY_BYTES,
              sc.METRIC_TELEMETRY_COST, sc.METRIC_SAMPLING_BUFFERED_SPANS,
              sc.METRIC_SAMPLING_OVERFLOWS, sc.METRIC_SAMPLING_TIMEOUTS,
              sc.METRIC_SAMPLING_TOP_THRESHOLD, sc.METRIC_COST}
    out: dict[str, Any] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name not in wanted:
                    continue
                by_attr = out.setdefault(metric.name, {})
                for point in metric.data.data_points:
                    key = ",".join(f"{k}={v}" for k, v in sorted((point.attributes or {}).items())
                                   if k != sc.LLMCOST_COST_COMPONENT)
                    value = getattr(point, "value", None)
                    if value is None:
                        value = getattr(point, "sum", 0)
                    by_attr[key] = by_attr.get(key, 0) + value
    return out


def _callgrind_toggle() -> Any:
    """The helper setup.sh builds: callgrind client requests, callable from ctypes."""
    import ctypes
    return ctypes.CDLL(str(Path(sys.prefix) / "lib" / "callgrind_toggle.so"))


def child(config: str, exporter_kind: str, start: int, calls: int, pace: float,
          callgrind: bool, detail: bool) -> dict[str, Any]:
    """Run one configuration in this process (its env already set) and describe the run."""
    import httpx2
    import openai
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from otel_llmcost import tokens
    from otel_llmcost.instrumentation import OpenAIInstrumentor

    warm, measured = plan(start, calls)

    # As opentelemetry-instrument would: the sampler from the environment, then the
    # exporting processor, then the tail stage's post-instrument hook, then instrumentors.
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    metrics.set_meter_provider(meter_provider)
    sampler = None  # the SDK default from the environment (parentbased_always_on)
    if os.environ.get(OTEL_TRACES_SAMPLER) == sc.ENTRY_POINT_SAMPLER:
        from otel_llmcost.sampling import sampler_from_env
        sampler = sampler_from_env(os.environ.get(OTEL_TRACES_SAMPLER_ARG))
    provider = TracerProvider(sampler=sampler, id_generator=_seeded_ids(SEED),
                              resource=Resource.create({"service.name": SERVICE_NAME}))
    exporter = _exporter(exporter_kind, detail)
    # Default batching, but a queue that never drops: unpaced, the app outruns the exporter
    # thread and the default 2,048-span queue would silently drop spans.
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=QUEUE))
    trace.set_tracer_provider(provider)
    if config != PLAIN:
        from otel_llmcost.sampling import install
        install(provider, meter_provider=meter_provider)
    OpenAIInstrumentor().instrument(tracer_provider=provider, meter_provider=meter_provider)
    tokens.wait_ready()  # its background load must not land in the measured window

    pending: list[tuple[int, bytes]] = [(200, b"")]

    def handler(request: httpx2.Request) -> httpx2.Response:
        status, body = pending[0]
        return httpx2.Response(status, headers={"content-type": "application/json"},
                               content=body)

    client = openai.OpenAI(api_key="sk-bench", max_retries=0,
                           http_client=httpx2.Client(transport=httpx2.MockTransport(handler)))
    create = client.chat.completions.create
    tracer = provider.get_tracer(APP_SCOPE)
    roots: dict[int, int] = {}  # trace id → workload index (detail only)
    failures = 0

    def run(t: Trace) -> None:
        nonlocal failures
        start_ns = time.time_ns() - int(SLOW_BACKDATE_S * 1e9) if t.slow else None
        with tracer.start_as_current_span(
                f"{OP_INVOKE_AGENT} {t.feature}", start_time=start_ns,
                attributes={sc.GEN_AI_OPERATION_NAME: OP_INVOKE_AGENT,
                            ATTR_AGENT_NAME: t.feature, sc.LLMCOST_FEATURE: t.feature,
                            sc.LLMCOST_CUSTOMER_ID: t.customer}) as root:
            if detail:
                roots[root.get_span_context().trace_id] = t.index
            for step in t.steps:
                if isinstance(step, Tool):
                    with tracer.start_as_current_span(
                            f"{OP_EXECUTE_TOOL} {step.name}",
                            attributes={sc.GEN_AI_OPERATION_NAME: OP_EXECUTE_TOOL,
                                        ATTR_TOOL_NAME: step.name,
                                        ATTR_TOOL_CALL_ID: step.call_id}):
                        pass
                    continue
                pending[0] = (step.status, step.body)
                try:
                    create(model=step.model, messages=list(step.messages),
                           max_tokens=step.max_tokens)
                except openai.InternalServerError:
                    failures += 1

    for t in warm:
        run(t)
    provider.force_flush()
    exporter.__init__()  # count the measured traces only
    offsets = arrivals(len(measured), pace)
    _results.freeze_heap()
    toggle = _callgrind_toggle() if callgrind else None
    if toggle is not None:
        toggle.start_instrumentation()
    started_wall, started = time.monotonic(), time.process_time()
    for t, offset in zip(measured, offsets):
        wait = started_wall + offset - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        run(t)
    provider.force_flush()
    cpu = time.process_time() - started
    if toggle is not None:
        toggle.stop_instrumentation()
    wall = time.monotonic() - started_wall

    result: dict[str, Any] = {
        "cpu_s": cpu, "wall_s": wall, "traces": len(measured),
        "calls": sum(len(t.calls) for t in measured),
        "planned_spans": sum(t.spans for t in measured),
        "spans": exporter.spans, "bytes": exporter.bytes, "batches": exporter.batches,
        "failures": failures - sum(t.failed for t in warm),
        "metrics": _metric_sums(reader)}
    if detail:
        result.update({
            "per_trace": {str(roots[tid]): n for tid, n in exporter.per_trace.items()
                          if tid in roots},
            "foreign_spans": sum(n for tid, n in exporter.per_trace.items() if tid not in roots),
            "rule_of_trace": {str(roots[tid]): r for tid, r in exporter.rule_of_trace.items()
                              if tid in roots},
            "cost_per_trace": {str(roots[tid]): c for tid, c in exporter.cost_per_trace.items()
                               if tid in roots},
            "weighted_per_trace": {str(roots[tid]): c for tid, c
                                   in exporter.weighted_per_trace.items() if tid in roots},
            "cost_weighted": exporter.cost_weighted, "cost_exported": exporter.cost_exported,
            "content_spans": exporter.content_spans, "no_rule_spans": exporter.no_rule_spans,
            "rule_with_th": exporter.rule_with_th,
            "probability_without_th": exporter.probability_without_th,
            "adjusted": {k: sorted(v) for k, v in exporter.adjusted.items()}})
    provider.shutdown()
    return result


# ------------------------------------------------------------------------- parent side


@dataclass(frozen=True)
class Run:
    config: str
    exporter: str

    @property
    def label(self) -> str:
        return f"{self.config}.{self.exporter}"


def _env(config: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED_ENV_PREFIXES)}
    env.update(CHILD_ENV)
    env.update(TELEMETRY_PRICES)
    env.update(POLICIES.get(config, {}))
    return env


def _child_cmd(run: Run, start: int, calls: int, pace: float = 0.0, callgrind: bool = False,
               detail: bool = False) -> list[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", run.config, run.exporter,
           "--start", str(start), "--calls", str(calls), "--pace", str(pace)]
    return cmd + (["--callgrind"] if callgrind else []) + (["--detail"] if detail else [])


def _spawn(run: Run, cmd: list[str]) -> dict[str, Any]:
    return _results.spawn(cmd, _env(run.config))


def _instructions(run: Run, start: int, calls: int, out_dir: Path) -> tuple[int, dict[str, Any]]:
    out = out_dir / f"callgrind.sampling.{run.label}.{calls}.out"
    return _results.callgrind(_child_cmd(run, start, calls, callgrind=True), out,
                              _env(run.config))


@dataclass
class Instr:
    per_call: float  # instructions per LLM call
    calls: int  # calls between N1 and N2
    spans: int  # spans exported between N1 and N2


def instructions_per_call(runs: list[Run], start: int, n1: int, n2: int, out_dir: Path,
                          jobs: int) -> dict[Run, Instr]:
    """(Ir(N2) − Ir(N1)) / (calls(N2) − calls(N1)) per run; in parallel (counts do not depend
    on load)."""
    tasks = [(run, n) for run in runs for n in (n2, n1)]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        done = list(pool.map(lambda t: _instructions(t[0], start, t[1], out_dir), tasks))
    got = dict(zip(tasks, done))
    out = {}
    for run in runs:
        (ir2, r2), (ir1, r1) = got[(run, n2)], got[(run, n1)]
        dcalls = r2["calls"] - r1["calls"]
        out[run] = Instr((ir2 - ir1) / dcalls, dcalls, r2["spans"] - r1["spans"])
    return out


def cpu_per_call(runs: list[Run], rounds: int, start: int, calls: int
                 ) -> tuple[dict[Run, list[float]], dict[Run, int]]:
    """Per-call CPU seconds, one sample per round; in each round every run once, in order."""
    samples: dict[Run, list[float]] = {run: [] for run in runs}
    spans: dict[Run, int] = {}
    for _ in range(rounds):
        for run in runs:
            result = _spawn(run, _child_cmd(run, start, calls))
            if "error" in result:
                raise RuntimeError(f"timed run {run.label} failed: {result['error']}\n"
                                   f"{result.get('stderr', '')}")
            samples[run].append(result["cpu_s"] / result["calls"])
            spans[run] = result["spans"]
    return samples, spans


# ------------------------------------------------------------------------- ground truth


@dataclass
class Truth:
    """What the workload itself knows about each measured trace."""

    traces: list[Trace]
    cost: dict[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from otel_llmcost import pricing
        from otel_llmcost.usage import Usage
        for t in self.traces:
            self.cost[t.index] = sum(
                pricing.price(sc.PROVIDER_OPENAI, c.model, Usage(
                    input_tokens=c.input_tokens, output_tokens=c.output_tokens,
                    cache_read_tokens=c.cached_tokens)).amount or 0.0
                for c in t.calls if c.status == 200)

    def over(self, usd: float) -> list[Trace]:
        return [t for t in self.traces if self.cost[t.index] >= usd]

    @property
    def failed(self) -> list[Trace]:
        return [t for t in self.traces if t.failed]

    @property
    def slow(self) -> list[Trace]:
        return [t for t in self.traces if t.slow]

    def top_recent(self, percent: float, window: int = TOP_WINDOW,
                   ends: int = TOP_RECOMPUTE) -> tuple[float, float]:
        """(min, max) of the top-``percent`` % cost threshold of the ``window`` traces before
        each of the last ``ends`` trace ends (the gauge is recomputed every 64 traces)."""
        costs = [self.cost[t.index] for t in self.traces]
        values = []
        for end in range(max(1, len(costs) - ends + 1), len(costs) + 1):
            recent = sorted(costs[max(0, end - window):end], reverse=True)
            values.append(recent[max(1, math.floor(len(recent) * percent / 100)) - 1])
        return min(values), max(values)

    def top(self, percent: float) -> list[Trace]:
        ranked = sorted(self.traces, key=lambda t: self.cost[t.index], reverse=True)
        return ranked[:max(1, round(len(ranked) * percent / 100))]

    @property
    def total_cost(self) -> float:
        return sum(self.cost.values())


def trace_ids(n: int, seed: int = SEED) -> list[int]:
    """The trace ids the child's seeded generator gives the first ``n`` traces."""
    rng, out = random.Random(seed), []
    while len(out) < n:
        value = rng.getrandbits(128)
        if value:
            out.append(value)
    return out


def head_picked(truth: Truth, rate: float) -> set[str]:
    """Indexes of the traces the head keeps by the specification: randomness (the trace
    id's low 56 bits) reaches the rejection threshold (1 − p) · 2^56."""
    threshold = (1.0 - rate) * 2 ** 56
    ids = trace_ids(len(truth.traces))
    return {str(t.index) for t, tid in zip(truth.traces, ids)
            if (tid & (2 ** 56 - 1)) >= threshold}


def whole(traces: list[Trace], result: dict[str, Any]) -> tuple[int, int]:
    """(exported whole, total) among ``traces``."""
    per = result["per_trace"]
    return sum(per.get(str(t.index)) == t.spans for t in traces), len(traces)


def partial(truth: Truth, result: dict[str, Any]) -> int:
    """Traces exported in part: never allowed."""
    spans = {str(t.index): t.spans for t in truth.traces}
    return sum(n != spans[i] for i, n in result["per_trace"].items())


# ------------------------------------------------------------------------------ report












def _pct(part: float, total: float) -> str:
    return "—" if total == 0 else f"{100 * part / total:.1f} %"


def _frac(pair: tuple[int, int]) -> str:
    done, total = pair
    return "— (none)" if total == 0 else f"{done}/{total} ({100 * done / total:.0f} %)"


def _metric(result: dict[str, Any], name: str) -> dict[str, float] | None:
    return result.get("metrics", {}).get(name)


def _metric_total(result: dict[str, Any], name: str) -> float | None:
    values = _metric(result, name)
    return None if values is None else sum(values.values())


def _usd(value: float) -> str:
    return f"${value:,.4f}" if value < 1 else f"${value:,.2f}"


def _mega(ir: float, sign: str = "") -> str:
    return f"{ir / 1e6:{sign}.3f} M" if abs(ir) >= 1e5 else f"{ir / 1e3:{sign},.1f} k"


def _policy_env(config: str) -> str:
    if config == PLAIN:
        return "default sampler; `install()` not called"
    if config == KEEP_ALL:
        return "default sampler (`parentbased_always_on`)"
    return " ".join(f"`{k}={v}`" for k, v in POLICIES[config].items())


@dataclass
class Measured:
    truth: Truth
    coverage: dict[str, dict[str, Any]]
    ir: dict[Run, Instr]
    cpu: dict[Run, list[float]]
    cpu_spans: dict[Run, int]
    settings: dict[str, Any]
    seconds: float
    machine: list[str]

    def rate(self, exporter: str) -> float:
        """Calibration: keep-everything's own instructions per µs of CPU time."""
        base = Run(KEEP_ALL, exporter)
        return self.ir[base].per_call / (statistics.median(self.cpu[base]) * 1e6)


def volume_table(m: Measured) -> list[str]:
    prices = {k: float(v) for k, v in TELEMETRY_PRICES.items()}
    per_gb = prices[sc.ENV_TELEMETRY_USD_PER_GB]
    per_m = prices[sc.ENV_TELEMETRY_USD_PER_MILLION_SPANS]
    base = m.coverage[KEEP_ALL]
    lines = [("| configuration | traces exported | spans exported | bytes exported (OTLP, "
             "measured) | fewer bytes than keep-everything | self-metric "
             f"`{sc.METRIC_TELEMETRY_BYTES}` (÷ measured) | telemetry bill at the prices "
             f"(measured) | self-metric `{sc.METRIC_TELEMETRY_COST}` | bill per million LLM "
             "calls | bill ÷ the LLM spend it observes |"),
             "|" + "---|" * 10]
    for config in CONFIGS:
        r = m.coverage[config]
        if "error" in r:
            lines.append(f"| {config} | not measured: {r['error']} |" + " |" * 8)
            continue
        est = _metric_total(r, sc.METRIC_TELEMETRY_BYTES)
        tel = _metric_total(r, sc.METRIC_TELEMETRY_COST)
        bill = r["bytes"] * per_gb / 1e9 + r["spans"] * per_m / 1e6
        saved = base["bytes"] - r["bytes"]
        fewer = ("—" if config in (PLAIN, KEEP_ALL) else _pct(saved, base["bytes"])
                 if saved >= 0 else f"none: {_pct(-saved, base['bytes'])} more")
        estimate = "—" if est is None else f"{est:,.0f} B ({est / max(r['bytes'], 1):.2f}×)"
        per_span = r["bytes"] / max(r["spans"], 1)
        lines.append(
            f"| {config} | {len(r['per_trace']):,} of {r['traces']:,} | {r['spans']:,} "
            f"of {r['planned_spans']:,} | {r['bytes']:,} B ({per_span:,.0f} B/span) | {fewer} "
            f"| {estimate} | {_usd(bill)} | {'—' if tel is None else _usd(tel)} "
            f"| {_usd(1e6 * bill / r['calls'])} | {100 * bill / m.truth.total_cost:.4f} % |")
    return lines


def coverage_table(m: Measured) -> list[str]:
    t = m.truth
    lines = [("| configuration | traces ≥ $0.25 exported whole | traces ≥ $1 whole | "
             "top 1 % by cost whole | failed traces whole | slow traces whole | traces "
             "exported in part | kept, by the rule on the root span (traces) | dropped by "
             f"the cap (`{sc.DROP_RATE_LIMITED}` spans, self-metric) | spans with content |"),
             "|" + "---|" * 10]
    for config in CONFIGS:
        r = m.coverage[config]
        if "error" in r:
            lines.append(f"| {config} | not measured |" + " |" * 8)
            continue
        rules = Counter(r["rule_of_trace"].values())
        kept = ", ".join(f"{k} {v}" for k, v in sorted(rules.items())) or "— (no rule attribute)"
        dropped = _metric(r, sc.METRIC_TELEMETRY_SPANS_DROPPED) or {}
        limited = sum(v for k, v in dropped.items() if k.endswith(f"={sc.DROP_RATE_LIMITED}"))
        capped = "—" if config in (PLAIN, KEEP_ALL) else f"{limited:,.0f}"
        lines.append(
            f"| {config} | {_frac(whole(t.over(0.25), r))} | {_frac(whole(t.over(1.0), r))} | "
            f"{_frac(whole(t.top(1), r))} | {_frac(whole(t.failed, r))} | "
            f"{_frac(whole(t.slow, r))} | {partial(t, r)} | {kept} | {capped} | "
            f"{r['content_spans']:,} |")
    return lines


def reweighting_table(m: Measured) -> list[str]:
    """Is Σ cost × adjusted count over exported spans the total? Split by why traces were
    kept: rule-kept traces count once (exact), probability-kept ones stand for the rest."""
    t = m.truth
    lines = [(f"| configuration | LLM cost, metric `{sc.METRIC_COST}` | truth | Σ cost × "
             "adjusted count over exported spans | of which rule-kept traces (truth of those "
             "traces) | of which probability-kept traces (truth of all other traces ± the "
             "estimate's standard error at the head rate) | "
             f"learned top-1 % threshold, gauge `{sc.METRIC_SAMPLING_TOP_THRESHOLD}` (true "
             "top-1 % threshold of the last 2,048 traces, over the last 64 trace ends) |"),
             "|" + "---|" * 7]
    low, high = t.top_recent(1)
    true_top = _usd(low) if low == high else f"{_usd(low)} – {_usd(high)}"
    for config in CONFIGS:
        r = m.coverage[config]
        if "error" in r:
            lines.append(f"| {config} | not measured |" + " |" * 5)
            continue
        metric_cost = _metric_total(r, sc.METRIC_COST)
        rule_of = r["rule_of_trace"]
        weighted = r["weighted_per_trace"]
        by_rule = [i for i, rule in rule_of.items() if rule != sc.SAMPLING_RULE_PROBABILITY]
        rule_est = sum(weighted.get(i, 0.0) for i in by_rule)
        rule_true = sum(t.cost[int(i)] for i in by_rule)
        prob_est = r["cost_weighted"] - rule_est
        gauge = _metric_total(r, sc.METRIC_SAMPLING_TOP_THRESHOLD)
        if config in (PLAIN, KEEP_ALL) or not rule_of:
            split = "—", "—"
        else:
            rate = float(POLICIES[config].get(sc.ENV_SAMPLE_RATE, "1"))
            kept = set(by_rule)
            # Horvitz-Thompson: Var = Σ c² (1 − p) / p over the traces left to the head.
            error = math.sqrt(sum(c * c for i, c in t.cost.items() if str(i) not in kept)
                              * (1 - rate) / rate)
            split = (f"{_usd(rule_est)} ({_usd(rule_true)})",
                     f"{_usd(prob_est)} ({_usd(t.total_cost - rule_true)} ± {_usd(error)})")
        lines.append(
            f"| {config} | {'—' if metric_cost is None else _usd(metric_cost)} | "
            f"{_usd(t.total_cost)} | {_usd(r['cost_weighted'])} | {split[0]} | {split[1]} | "
            f"{'—' if gauge is None else _usd(gauge)} ({true_top}) |")
    return lines


def integrity_table(m: Measured) -> list[str]:
    """What the README promises about exported spans and self-metrics, checked."""
    t = m.truth
    lines = [(f"| configuration | `{sc.METRIC_TELEMETRY_SPANS_SEEN}` (spans started) | "
             f"`{sc.METRIC_TELEMETRY_SPANS_EXPORTED}` (spans the exporter got) | "
             f"`{sc.METRIC_TELEMETRY_SPANS_DROPPED}` | `{sc.METRIC_SAMPLING_BUFFERED_SPANS}` "
             f"at the end | exported spans without `{sc.LLMCOST_SAMPLING_RULE}` | "
             f"`{sc.LLMCOST_SAMPLING_ADJUSTED_COUNT}` by rule | rule-kept spans with `th` / "
             "probability-kept spans without | probability-kept traces = head-picked traces "
             "(recomputed from the trace ids) that no rule kept |"), "|" + "---|" * 9]
    for config in CONFIGS:
        r = m.coverage[config]
        if "error" in r or config == PLAIN:
            continue
        seen = _metric_total(r, sc.METRIC_TELEMETRY_SPANS_SEEN)
        exported = _metric_total(r, sc.METRIC_TELEMETRY_SPANS_EXPORTED)
        dropped = _metric(r, sc.METRIC_TELEMETRY_SPANS_DROPPED) or {}
        buffered = _metric_total(r, sc.METRIC_SAMPLING_BUFFERED_SPANS)
        drops = ", ".join(f"{k.partition('=')[2]} {v:,.0f}" for k, v in sorted(dropped.items()))
        adjusted = "; ".join(f"{rule}: {', '.join(f'{x:g}' for x in values)}"
                             for rule, values in sorted(r["adjusted"].items())) or "—"
        head = "—"
        if config in POLICIES:
            rate = float(POLICIES[config].get(sc.ENV_SAMPLE_RATE, "1"))
            rule_of = r["rule_of_trace"]
            expected = {i for i in head_picked(t, rate)
                        if rule_of.get(i, sc.SAMPLING_RULE_PROBABILITY)
                        == sc.SAMPLING_RULE_PROBABILITY}
            actual = {i for i, rule in rule_of.items() if rule == sc.SAMPLING_RULE_PROBABILITY}
            head = (f"yes ({len(actual):,})" if expected == actual else
                    f"**no**: {len(expected - actual)} missing, {len(actual - expected)} extra")
        lines.append(
            f"| {config} | {'—' if seen is None else f'{seen:,.0f}'} ({r['planned_spans']:,}) "
            f"| {'—' if exported is None else f'{exported:,.0f}'} ({r['spans']:,}) | "
            f"{drops or '—'} | {'—' if buffered is None else f'{buffered:,.0f}'} | "
            f"{r['no_rule_spans']:,} | {adjusted} | {r['rule_with_th']} / "
            f"{r['probability_without_th']} | {head} |")
    return lines


def cpu_table(m: Measured) -> list[str]:
    lines = [("| configuration | exporter | Ir per LLM call | added vs keep-everything, same "
             "exporter (Ir ≈ µs) | added vs plain OpenTelemetry (Ir ≈ µs) | spans exported "
             "in the callgrind window | CPU time per call (median) | added time vs "
             "keep-everything |"), "|" + "---|" * 8]
    for exporter in EXPORTERS:
        rate = m.rate(exporter)
        keep, plain = Run(KEEP_ALL, exporter), Run(PLAIN, exporter)
        keep_t = statistics.median(m.cpu[keep]) * 1e6
        for config in CONFIGS:
            run = Run(config, exporter)
            if run not in m.ir:
                if config != PLAIN:  # plain-otel runs with the null exporter only
                    lines.append(f"| {config} | {exporter} | not measured |" + " |" * 5)
                continue
            ir = m.ir[run]
            t = statistics.median(m.cpu[run]) * 1e6
            vs_keep = ir.per_call - m.ir[keep].per_call
            keep_cell = ("—" if config == KEEP_ALL
                         else f"{_mega(vs_keep, '+')} ≈ {vs_keep / rate:+,.1f} µs")
            plain_cell = "—"
            if config != PLAIN and plain in m.ir:
                vs_plain = ir.per_call - m.ir[plain].per_call
                plain_cell = f"{_mega(vs_plain, '+')} ≈ {vs_plain / rate:+,.1f} µs"
            time_cell = "—" if config == KEEP_ALL else f"{t - keep_t:+,.1f} µs"
            lines.append(f"| {config} | {exporter} | {_mega(ir.per_call)} | {keep_cell} | "
                         f"{plain_cell} | {ir.spans:,} | {t:,.0f} µs | {time_cell} |")
    return lines


def verdict(m: Measured) -> str:
    run, keep = Run(PRODUCTION, NULL), Run(KEEP_ALL, NULL)
    added = (m.ir[run].per_call - m.ir[keep].per_call) / m.rate(NULL)
    plain = (m.ir[run].per_call - m.ir[Run(PLAIN, NULL)].per_call) / m.rate(NULL)
    met = "met" if added <= TARGET_US else "**not met**"
    return (f"Target (≤ {TARGET_US:g} µs per LLM call at `{PRODUCTION}`, sampling machinery "
            f"alone = null exporter, against keep-everything): **{added:+.1f} µs, {met}**; "
            f"against plain OpenTelemetry (adds the self-metrics every install pays): "
            f"{plain:+.1f} µs.")


METHOD = """\
- **Workload** (seed {seed}): {traces:,} agent traces holding {calls:,} OpenAI \
`chat.completions.create` calls through the real `openai` SDK on `httpx2.MockTransport` (no \
network). Each trace is a root span `invoke_agent <feature>` with 1-4 LLM calls (30/30/25/15 \
%) and 1-2 `execute_tool` spans between consecutive calls. A trace's model is `gpt-4o-mini` \
(64 %), `gpt-4.1` (28 %), `o3` (7 %) or `o1` (1 %); input and output tokens are log-normal \
per model, the conversation grows call by call and its previous prompt is a cache hit. \
{fail_pct:.1f} % of calls ({failed} traces) get a provider 500 (`max_retries=0`; the app \
catches it and ends the run). {slow} traces are slow: their root span starts \
{backdate:g} s in the past (a queued job), since the benchmark cannot wait 20 s. Ground \
truth per trace: its cost (tokens priced with `otel_llmcost.pricing`: total \
{total_cost}; {over25} traces ≥ $0.25, {over1} ≥ $1), whether a call failed, whether \
it is slow.
- **Pipeline** per configuration, each in its own subprocess with only its environment \
(inherited `OTEL_*`/`LLMCOST_*` stripped): `TracerProvider(sampler=…, \
id_generator=seeded)` (the sampler from `otel_llmcost.sampling.sampler_from_env` when \
`OTEL_TRACES_SAMPLER=llmcost`, else the SDK default), a `BatchSpanProcessor` (defaults) \
into the exporter, `otel_llmcost.sampling.install(provider, meter_provider=…)` (not for \
`{plain}`), `OpenAIInstrumentor().instrument(...)`, an `InMemoryMetricReader`. Trace ids \
come from a seeded generator, so every configuration sees the same head decisions. \
Telemetry prices for every configuration: {prices} (illustrative, modelled on Datadog APM \
list prices for ingested and indexed spans; change `TELEMETRY_PRICES`).
- **Volume and coverage**: the whole workload per configuration, all configurations at \
once, traces arriving as a Poisson process at {pace:g} traces/s (the cap \
`LLMCOST_KEEP_MAX_PER_SECOND` works on wall time, so the arrival rate matters; achieved: \
{achieved}). The `otlp` exporter encodes each batch it receives with \
`opentelemetry.exporter.otlp.proto.common.trace_encoder.encode_spans(batch)\
.SerializeToString()` and counts the bytes (uncompressed OTLP/protobuf, as sent without \
gzip). "Exported whole" = every span of the trace was exported.
- **Instructions** (primary CPU figure): `valgrind --tool=callgrind`, switched on after \
{start} warm-up calls (whole traces; enough for `top_percent` to learn), a full collection \
and `gc.freeze()` (as in the overhead benchmark), and off after the \
final flush; per LLM call = (Ir(N2) − Ir(N1)) / (calls(N2) − calls(N1)), N1 = {n1}, \
N2 = {n2} calls (whole traces), unpaced (under callgrind the app runs at a few traces/s). \
Two exporters: `otlp` (the encoding one: the net effect of sampling, export savings \
included) and `null` (drops spans: the sampling machinery alone). Ir → µs with \
keep-everything's own instructions per µs of CPU time measured here ({rate_otlp:,.0f} \
Ir/µs with `otlp`, {rate_null:,.0f} with `null`).
- **Time** (secondary, ±25 % run to run on this machine): {rounds} rounds; in each, every \
configuration × exporter runs once ({timed_calls} calls after the same warm-up, unpaced, \
`time.process_time`, all threads, final flush included). Unpaced, the per-second cap binds \
far more than at {pace:g} traces/s or under callgrind, so `strict` exports less here.
- Run time of this benchmark: {minutes:.1f} min ({phases}).
"""


def report(m: Measured) -> str:
    t = m.truth
    calls = sum(len(x.calls) for x in t.traces)
    failed_calls = sum(1 for x in t.traces for c in x.calls if c.status != 200)
    achieved = ", ".join(f"{c} {m.coverage[c]['traces'] / m.coverage[c]['wall_s']:.0f}"
                         for c in CONFIGS if "error" not in m.coverage[c])
    method = METHOD.format(
        seed=SEED, traces=len(t.traces), calls=calls, fail_pct=100 * failed_calls / calls,
        failed=len(t.failed), slow=len(t.slow), backdate=SLOW_BACKDATE_S,
        total_cost=_usd(t.total_cost), over25=len(t.over(0.25)), over1=len(t.over(1.0)),
        plain=PLAIN, prices=", ".join(f"`{k}={v}`" for k, v in TELEMETRY_PRICES.items()),
        achieved=achieved, rate_otlp=m.rate(ENCODE), rate_null=m.rate(NULL),
        minutes=m.seconds / 60, **m.settings)
    configs = [f"- `{c}`: {_policy_env(c)}" for c in CONFIGS]
    lines = [f"# {SECTION}", "",
             "Written by `benchmarks/bench_sampling.py --write`; see `benchmarks/README.md`.",
             "", "## Machine", "", *m.machine, "", "## Configurations", "", *configs, "",
             "## Method", "", method,
             "## Volume and telemetry bill", "", *volume_table(m), "",
             "## What the rules kept", "", *coverage_table(m), "",
             "## Re-weighting: exported spans against the truth", "", *reweighting_table(m),
             "", "## Integrity: self-metrics and span labels", "", *integrity_table(m), "",
             "## CPU per LLM call", "", verdict(m), "", *cpu_table(m), ""]
    return "\n".join(lines) + "\n"


def _from_json(path: Path) -> Measured:
    """A previous run, from the raw results it saved."""
    raw = json.loads(path.read_text())

    def run(label: str) -> Run:
        config, _, exporter = label.rpartition(".")
        return Run(config, exporter)
    _, measured = plan(0, raw["calls"])
    return Measured(Truth(measured), raw["coverage"],
                    {run(k): Instr(**v) for k, v in raw["instructions"].items()},
                    {run(k): v for k, v in raw["cpu_s_per_call"].items()},
                    {run(k): v for k, v in raw["cpu_spans"].items()},
                    raw["settings"], raw["seconds"], raw["machine"])


# -------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("CONFIG", "EXPORTER"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--callgrind", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--detail", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--start", type=int, default=300, help=argparse.SUPPRESS)
    parser.add_argument("--pace", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, default=10_000,
                        help="LLM calls of the volume/coverage workload (default 10,000)")
    parser.add_argument("--traces-per-second", type=float, default=50.0,
                        help="arrival rate of traces in the volume/coverage pass (default 50)")
    parser.add_argument("--warmup", type=int, default=300,
                        help="warm-up calls before the CPU measurements (default 300)")
    parser.add_argument("--n1", type=int, default=100, help="callgrind N1 calls (default 100)")
    parser.add_argument("--n2", type=int, default=400, help="callgrind N2 calls (default 400)")
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds (default 5)")
    parser.add_argument("--timed-calls", type=int, default=500,
                        help="calls per timed subprocess (default 500)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="parallel callgrind runs (default: cores)")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes to check that everything runs (2,000 calls, "
                             "N1/N2 40/120, 2 rounds of 200 calls)")
    parser.add_argument("--out", type=Path, default=HERE / "callgrind",
                        help="directory for the callgrind outputs (default benchmarks/callgrind)")
    parser.add_argument("--from-json", type=Path, metavar="PATH",
                        help=f"render the report from a previous run's raw results (its "
                             f"--out/{RAW}) instead of measuring")
    parser.add_argument("--write", action="store_true",
                        help=f"also write the section '{SECTION}' of {RESULTS.name}")
    if "--quick" in sys.argv[1:]:  # smaller defaults; explicit sizes still win
        parser.set_defaults(calls=2_000, warmup=150, n1=40, n2=120, rounds=2, timed_calls=200)
    args = parser.parse_args()

    if args.child:
        config, exporter = args.child
        print(json.dumps(child(config, exporter, args.start, args.calls, args.pace,
                               args.callgrind, args.detail)))
        return

    if args.from_json:
        text = report(_from_json(args.from_json))
        print(text)
        if args.write:
            _results.write_section(text)
        return

    started, digest = time.monotonic(), _results.source_digest()
    _, measured = plan(0, args.calls)
    truth = Truth(measured)
    print(f"volume and coverage: {len(CONFIGS)} configurations x {args.calls:,} calls at "
          f"{args.traces_per_second:g} traces/s, in parallel…", file=sys.stderr)
    cover_runs = [Run(c, ENCODE) for c in CONFIGS]
    with ThreadPoolExecutor(max_workers=len(cover_runs)) as pool:
        coverage = dict(zip(CONFIGS, pool.map(lambda r: _spawn(r, _child_cmd(
            r, 0, args.calls, args.traces_per_second, detail=True)), cover_runs)))
    for config, result in coverage.items():
        if "error" in result:
            print(f"  {config} failed: {result.get('stderr')}", file=sys.stderr)
    if "error" in coverage[KEEP_ALL]:
        raise SystemExit("keep-everything failed: nothing to compare with")

    runs = [Run(c, e) for e in EXPORTERS for c in CONFIGS
            if "error" not in coverage[c] and (c != PLAIN or e == NULL)]
    args.out.mkdir(parents=True, exist_ok=True)
    phases = {"volume and coverage": time.monotonic() - started}
    print(f"callgrind ({len(runs) * 2} runs, {args.jobs} at a time)…", file=sys.stderr)
    mark = time.monotonic()
    ir = instructions_per_call(runs, args.warmup, args.n1, args.n2, args.out, args.jobs)
    phases["callgrind"] = time.monotonic() - mark
    print(f"timing ({args.rounds} rounds)…", file=sys.stderr)
    mark = time.monotonic()
    cpu, cpu_spans = cpu_per_call(runs, args.rounds, args.warmup, args.timed_calls)
    phases["timing"] = time.monotonic() - mark

    if _results.source_digest() != digest:
        raise SystemExit(f"{_results.package_dir()} changed during the run, so the configurations "
                         "measured different code: run again on a stable checkout")
    m = Measured(truth, coverage, ir, cpu, cpu_spans,
                 {"pace": args.traces_per_second, "start": args.warmup, "n1": args.n1,
                  "n2": args.n2, "rounds": args.rounds, "timed_calls": args.timed_calls,
                  "phases": ", ".join(f"{k} {v / 60:.1f}" for k, v in phases.items())},
                 time.monotonic() - started, _machine())
    raw = {"calls": args.calls, "coverage": coverage,
           "instructions": {r.label: vars(v) for r, v in ir.items()},
           "cpu_s_per_call": {r.label: v for r, v in cpu.items()},
           "cpu_spans": {r.label: v for r, v in cpu_spans.items()},
           "settings": m.settings, "seconds": m.seconds, "machine": m.machine}
    (args.out / RAW).write_text(json.dumps(raw, indent=1, default=str))
    text = report(m)
    print(text)
    if args.write:
        _results.write_section(text)


def _machine() -> list[str]:
    packages = ("openai", "httpx2", "opentelemetry-sdk",
                "opentelemetry-exporter-otlp-proto-common", "protobuf", "genai-prices",
                "otel-llmcost")
    return _results.machine(packages, _results.valgrind_version())


if __name__ == "__main__":
    main()
