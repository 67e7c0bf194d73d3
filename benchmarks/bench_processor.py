#!/usr/bin/env python3
"""Processor throughput and state size: spans/s per core over OTLP/HTTP and gRPC.

Seeded OTLP export requests of 512 spans (20 attributes each, as otel-llmcost and an agent
app emit them: agent root, LLM and tool spans, conversations across traces, many
customers) are encoded once with the OpenTelemetry SDK's own OTLP encoder. Each transport
round starts a real ``otel-llmcost-processor`` (its own process on one CPU, state on a
temp file, default checkpoint interval), a client process on another CPU sends every
request as fast as it is accepted (honouring 503 + Retry-After / UNAVAILABLE +
RetryInfo), and the processor's CPU time (/proc/<pid>/stat) until every span is rolled up
and every trace closed gives the spans per second per core. Beside it: the floor of
merely decoding the same requests (``parse_protobuf`` + ``otlp.decode``, and a bare
``ParseFromString``) and the engine alone, in one thread. Then the state an `Engine`
holds per open conversation at 100,000 open conversations (tracemalloc and RSS), per open
trace, and the checkpoint's size and dump+save time. See README.md beside this file.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import json
import math
import os
import random
import re
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _results  # beside this script

from otel_llmcost import semconv as sc

HERE = Path(__file__).resolve().parent
SECTION = "Processor: throughput and state size"
SEED = 20_251_124
SPANS_PER_BATCH = 512
ATTRIBUTES_PER_SPAN = 20
TRANSPORTS = ("http", "grpc")
NO_STATE = "http-no-state"  # diagnostic: OTLP/HTTP with the state file off (no checkpoints)
UNPINNED = "http-unpinned"  # diagnostic: OTLP/HTTP with processor and client on any CPU
# The processor (and the single-thread floor) run on one CPU and the client on another, as
# in production, where the senders are other machines: on a shared 2-core machine the
# scheduler otherwise mixes the client into the processor's CPU and caches.
_CPUS = sorted(os.sched_getaffinity(0))
PROCESSOR_CPU, CLIENT_CPU = (_CPUS[0], _CPUS[1]) if len(_CPUS) >= 2 else (None, None)
# Targets (issue): end to end per core, share of the decode-only floor, state per conversation.
TARGET_SPANS_PER_CORE = 30_000
TARGET_FLOOR_SHARE = 0.50
TARGET_BYTES_PER_CONVERSATION = 2048
ENGINE_RATE = 30_000  # spans/s of simulated arrival in the single-thread engine pass
# End-to-end runs re-stamp the spans' event times to end at about this many spans/s from
# about when the client starts sending: a service at that load sees spans as they end, so
# every rollup (anomaly buckets included) takes them as current, not as minutes late.
REPLAY_RATE = 50_000
STAMP_LEAD_S = 4.0  # from stamping to the first request: writing the bodies, client start
IDLE_S = 2.0  # idle processor CPU is measured over this long before each run
POLL_S = 0.05  # scrape interval while waiting for the engine to drain
# …and then for the last traces to close (about 5 s): each scrape costs the processor a
# few ms of CPU, and Prometheus scrapes every 15-60 s, not 4 times a second.
CLOSE_POLL_S = 1.0
WAIT_S = 300.0  # only against a hang

# ---------------------------------------------------------------------------- workload

SERVICE_NAME = "support-agent"
APP_SCOPE = "bench.agent"
FEATURES = ("support-chat", "ticket-triage", "research", "code-review")
TOOLS = ("search_kb", "lookup_order", "fetch_url", "run_sql", "read_file")
# (share of traces, request model, response model, median input tokens, median output,
#  USD per input token, per cached input token, per output token): illustrative list prices.
MODELS = (
    (0.64, "gpt-4o-mini", "gpt-4o-mini-2024-07-18", 1_800, 220, 0.15e-6, 0.075e-6, 0.6e-6),
    (0.28, "gpt-4.1", "gpt-4.1-2025-04-14", 5_000, 450, 2e-6, 0.5e-6, 8e-6),
    (0.07, "o3", "o3-2025-04-16", 14_000, 2_500, 2e-6, 0.5e-6, 8e-6),
    (0.01, "o1", "o1-2024-12-17", 30_000, 4_000, 15e-6, 7.5e-6, 60e-6),
)
CUSTOMERS = 20_000  # customer pool; popularity is skewed (a few big accounts)
CONTINUE_P = 0.6  # a new trace is the next turn of an open conversation with this chance
ACTIVE_CONVERSATIONS = 2_000  # open conversations a next turn is drawn from
TRACES_PER_S = 150.0  # trace arrivals (sets how traces interleave in the export stream)
LLM_ERROR_P = 0.01  # LLM spans with an error status (error.type)
RETRY_P = 0.015  # LLM spans that needed an SDK retry (llmcost.retries)
_HEX = "0123456789abcdef"


def _conversation_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))  # 36 characters


def _customer_ids(rng: random.Random, n: int) -> list[str]:
    return [f"org-{rng.getrandbits(64):016x}" for _ in range(n)]  # 20 characters


def _customer(rng: random.Random, customers: list[str]) -> str:
    return customers[int(len(customers) * rng.random() ** 2)]


def _lognormal(rng: random.Random, median: float, sigma: float, cap: int) -> int:
    return max(1, min(cap, int(rng.lognormvariate(math.log(median), sigma))))


@dataclass
class PlannedSpan:
    kind: str  # "root", "llm", "tool"
    span_id: int
    parent_id: int  # 0 for the root
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    error: bool = False


@dataclass
class PlannedTrace:
    trace_id: int
    conversation: str
    customer: str
    spans: list[PlannedSpan]  # children in end order, root last


def plan_traces(rng: random.Random, base_ns: int, customers: list[str],
                continue_p: float = CONTINUE_P) -> Iterator[PlannedTrace]:
    """Agent traces: ``invoke_agent`` root, 1-4 LLM calls, 1-2 tools between calls; a trace
    is the next turn of an open conversation with probability ``continue_p``."""
    from otel_llmcost.pricing._listprices import list_version

    pricing_version = list_version()
    active: list[tuple[str, str]] = []  # (conversation id, customer id)
    t = base_ns
    call_no = 0
    while True:
        t += int(rng.expovariate(TRACES_PER_S) * 1e9)
        if active and rng.random() < continue_p:
            conversation, customer = active[rng.randrange(len(active))]
        else:
            conversation, customer = _conversation_id(rng), _customer(rng, customers)
            if len(active) < ACTIVE_CONVERSATIONS:
                active.append((conversation, customer))
            else:
                active[rng.randrange(len(active))] = (conversation, customer)
        draw, tier = rng.random(), MODELS[-1]
        for candidate in MODELS:
            if draw < candidate[0]:
                tier = candidate
                break
            draw -= candidate[0]
        _, model, response_model, in_median, out_median, p_in, p_cached, p_out = tier
        feature = rng.choice(FEATURES)
        root_id = rng.getrandbits(64) | 1
        spans: list[PlannedSpan] = []
        clock = t + int(rng.uniform(2, 40) * 1e6)
        n_calls = rng.choices((1, 2, 3, 4), weights=(30, 30, 25, 15))[0]
        input_tokens = _lognormal(rng, in_median, 1.0, 200_000)
        common = {sc.GEN_AI_CONVERSATION_ID: conversation, sc.LLMCOST_CUSTOMER_ID: customer,
                  sc.LLMCOST_FEATURE: feature}
        for k in range(n_calls):
            cached = (input_tokens // 128) * 128 if k and input_tokens >= 1024 else 0
            if k:
                input_tokens += _lognormal(rng, in_median / 3, 1.0, 200_000)
            output = _lognormal(rng, out_median, 0.8, 32_000)
            call_no += 1
            duration = int(min(60.0, rng.lognormvariate(math.log(1.5 + output / 150), 0.4))
                           * 1e9)
            cost = ((input_tokens - cached) * p_in + cached * p_cached + output * p_out)
            error = rng.random() < LLM_ERROR_P
            attributes: dict[str, Any] = {
                sc.GEN_AI_OPERATION_NAME: sc.OP_CHAT,
                sc.GEN_AI_PROVIDER_NAME: sc.PROVIDER_OPENAI,
                sc.GEN_AI_REQUEST_MODEL: model,
                sc.SERVER_ADDRESS: "api.openai.com",
                sc.SERVER_PORT: 443,
                sc.GEN_AI_REQUEST_MAX_TOKENS: 32_000 if model in ("o3", "o1") else 4_096,
                **common,
                sc.GEN_AI_RESPONSE_MODEL: response_model,
                sc.GEN_AI_RESPONSE_ID: "chatcmpl-" + "".join(rng.choices(_HEX, k=29)),
                sc.GEN_AI_RESPONSE_FINISH_REASONS: ("tool_calls",) if k < n_calls - 1
                else ("stop",),
                sc.GEN_AI_USAGE_INPUT_TOKENS: input_tokens,
                sc.GEN_AI_USAGE_OUTPUT_TOKENS: output,
                sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: cached,
                sc.LLMCOST_PRICING_STATUS: sc.STATUS_EXACT,
                sc.LLMCOST_PRICING_VERSION: pricing_version,
                sc.GEN_AI_USAGE_COST_AMOUNT: round(cost, 10),
                sc.GEN_AI_USAGE_COST_CURRENCY: sc.CURRENCY_USD,
                sc.GEN_AI_USAGE_COST_SOURCE: sc.SOURCE_LOCAL,
            }
            if rng.random() < RETRY_P:  # still 20: the port makes room
                del attributes[sc.SERVER_PORT]
                attributes[sc.LLMCOST_RETRIES] = 1
            if error:
                del attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS]
                attributes[sc.ERROR_TYPE] = "InternalServerError"
            spans.append(PlannedSpan("llm", rng.getrandbits(64) | 1, root_id, clock,
                                     clock + duration, attributes, error))
            clock += duration + int(rng.uniform(0.5, 5) * 1e6)
            if error:
                break
            if k < n_calls - 1:
                for _ in range(rng.choice((1, 1, 2))):
                    tool = rng.choice(TOOLS)
                    duration = int(rng.lognormvariate(math.log(0.12), 0.9) * 1e9)
                    spans.append(PlannedSpan("tool", rng.getrandbits(64) | 1, root_id, clock,
                                             clock + duration, {
                        sc.GEN_AI_OPERATION_NAME: "execute_tool",
                        "gen_ai.tool.name": tool,
                        "gen_ai.tool.call.id": f"call_{rng.getrandbits(96):024x}",
                        "gen_ai.tool.type": "function",
                        "gen_ai.tool.description": f"{tool.replace('_', ' ')} for the agent",
                        **common,
                        "code.function.name": f"tools.{tool}",
                        "code.file.path": "/srv/agent/tools.py",
                        "code.line.number": 40 + TOOLS.index(tool) * 37,
                        "db.system.name": "postgresql",
                        "db.operation.name": "SELECT",
                        "db.query.summary": "SELECT orders",
                        "db.namespace": "support",
                        sc.SERVER_ADDRESS: "db.internal",
                        sc.SERVER_PORT: 5432,
                        "app.tool.result.bytes": rng.randrange(200, 20_000),
                        "app.tool.cache_hit": rng.random() < 0.3,
                        "app.tool.attempt": 1,
                    }))
                    clock += duration + int(rng.uniform(0.5, 3) * 1e6)
        run_id = f"run_{rng.getrandbits(64):016x}"
        spans.append(PlannedSpan("root", root_id, 0, t, clock + int(2e6), {
            sc.GEN_AI_OPERATION_NAME: "invoke_agent",
            "gen_ai.agent.name": feature,
            "gen_ai.agent.id": f"agent-{feature}",
            sc.GEN_AI_PROVIDER_NAME: sc.PROVIDER_OPENAI,
            sc.GEN_AI_REQUEST_MODEL: model,
            **common,
            "enduser.id": f"user-{rng.getrandbits(40):010x}",
            "session.id": conversation,
            "http.request.method": "POST",
            "http.route": "/v1/agents/{agent}/runs",
            "url.path": f"/v1/agents/{feature}/runs",
            "http.response.status_code": 200,
            "user_agent.original": "acme-web/5.2.1",
            "client.address": f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}",
            sc.SERVER_ADDRESS: "agents.acme.internal",
            "app.run.id": run_id,
            "app.channel": rng.choice(("web", "email", "slack", "api")),
            "app.locale": rng.choice(("en-US", "en-GB", "de-DE", "fr-FR", "ja-JP")),
        }))
        yield PlannedTrace(rng.getrandbits(128) | 1, conversation, customer, spans)


def select_spans(batches: int, seed: int = SEED, base_ns: int | None = None
                 ) -> tuple[list[tuple[PlannedTrace, PlannedSpan]], dict[str, Any]]:
    """Exactly ``batches`` × 512 spans in export (end-time) order, every trace complete
    (its root included; the last trace may lose some children to fit)."""
    rng = random.Random(seed)
    base_ns = time.time_ns() - 600 * 10**9 if base_ns is None else base_ns
    customers = _customer_ids(rng, CUSTOMERS)
    want = batches * SPANS_PER_BATCH
    # Traces in order of their root's end (a trace is exported whole once its root ends).
    pending: list[PlannedTrace] = []
    planned = 0
    for trace in plan_traces(rng, base_ns, customers):
        pending.append(trace)
        planned += len(trace.spans)
        if planned >= want + 2_000:
            break
    pending.sort(key=lambda t: t.spans[-1].end_ns)
    chosen: list[tuple[PlannedTrace, PlannedSpan]] = []
    for trace in pending:
        room = want - len(chosen)
        if room <= 0:
            break
        spans = trace.spans if len(trace.spans) <= room else \
            trace.spans[:room - 1] + [trace.spans[-1]]
        chosen.extend((trace, span) for span in spans)
    chosen.sort(key=lambda pair: pair[1].end_ns)
    traces = {t.trace_id: t for t, _ in chosen}
    kinds = Counter(s.kind for _, s in chosen)
    stats = {"spans": len(chosen), "traces": len(traces),
             "conversations": len({t.conversation for t in traces.values()}),
             "customers": len({t.customer for t in traces.values()}),
             "kinds": dict(kinds),
             "attributes": sorted(Counter(len(s.attributes) for _, s in chosen).items()),
             "errors": sum(s.error for _, s in chosen),
             "first_end_ns": chosen[0][1].end_ns, "last_end_ns": chosen[-1][1].end_ns}
    return chosen, stats


def encode_batches(chosen: list[tuple[PlannedTrace, PlannedSpan]]) -> list[bytes]:
    """OTLP/protobuf request bodies, made by the SDK's own encoder from ReadableSpans."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import (
        SpanContext,
        SpanKind,
        Status,
        StatusCode,
        TraceFlags,
    )

    from otel_llmcost.version import __version__

    resource = Resource.create({"service.name": SERVICE_NAME, "service.version": "5.2.1",
                                "deployment.environment.name": "production",
                                "host.name": "agent-7f9c4", "process.pid": 4242})
    app = InstrumentationScope(APP_SCOPE, "5.2.1")
    ours = InstrumentationScope(sc.INSTRUMENTATION_SCOPE, __version__)
    sampled = TraceFlags(TraceFlags.SAMPLED)
    kinds = {"root": SpanKind.SERVER, "llm": SpanKind.CLIENT, "tool": SpanKind.INTERNAL}
    spans = []
    for trace, s in chosen:
        context = SpanContext(trace.trace_id, s.span_id, False, sampled)
        parent = SpanContext(trace.trace_id, s.parent_id, False, sampled) if s.parent_id \
            else None
        name = (f"invoke_agent {s.attributes['gen_ai.agent.name']}" if s.kind == "root" else
                f"chat {s.attributes[sc.GEN_AI_REQUEST_MODEL]}" if s.kind == "llm" else
                f"execute_tool {s.attributes['gen_ai.tool.name']}")
        status = Status(StatusCode.ERROR, "Error code: 500") if s.error else Status()
        spans.append(ReadableSpan(name, context, parent, resource, s.attributes,
                                  kind=kinds[s.kind], status=status, start_time=s.start_ns,
                                  end_time=s.end_ns,
                                  instrumentation_scope=ours if s.kind == "llm" else app))
    return [encode_spans(spans[i:i + SPANS_PER_BATCH]).SerializeToString()
            for i in range(0, len(spans), SPANS_PER_BATCH)]


def restamp(bodies: list[bytes], copies: int, data: dict[str, Any], start_ns: int,
            rate: float) -> list[bytes]:
    """The requests, then ``copies - 1`` more rounds of them with every trace id re-drawn
    (same spans, conversations and customers; new traces, so none is late or merged), with
    span end times moved so that the spans end at ``rate`` spans/s from ``start_ns`` on, in
    their order (start times move with their end: durations are kept)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    first, last = data["first_end_ns"], data["last_end_ns"]
    per_copy_ns = round(data["unique_spans"] / rate * 1e9)
    scale = per_copy_ns / max(1, last - first)
    out = []
    for copy in range(copies):
        mask = (copy * 0x9E3779B97F4A7C15) & (2**64 - 1)
        base = start_ns + copy * per_copy_ns
        for body in bodies:
            request = ExportTraceServiceRequest.FromString(body)
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    for span in scope.spans:
                        if copy:
                            tid = span.trace_id
                            span.trace_id = tid[:8] + (int.from_bytes(tid[8:], "big") ^ mask
                                                       ).to_bytes(8, "big")
                        end = base + round((span.end_time_unix_nano - first) * scale)
                        span.start_time_unix_nano += end - span.end_time_unix_nano
                        span.end_time_unix_nano = end
            out.append(request.SerializeToString())
    return out


def write_bodies(path: Path, bodies: list[bytes]) -> None:
    with open(path, "wb") as file:
        for body in bodies:
            file.write(struct.pack("<I", len(body)))
            file.write(body)


def read_bodies(path: Path) -> list[bytes]:
    data, out, at = path.read_bytes(), [], 0
    while at < len(data):
        (size,) = struct.unpack_from("<I", data, at)
        out.append(data[at + 4:at + 4 + size])
        at += 4 + size
    return out


# ------------------------------------------------------------------ child: decode floor


def roll_up(engine: Any, batches: Iterable[list[Any]]) -> None:
    """Roll requests up one by one, each at the time its last span ended (the bodies are
    stamped at ENGINE_RATE: the clock keeps pace with the spans), then close every trace."""
    now = 0
    for batch in batches:
        now = max(now, batch[-1].end_ns)  # a request's spans are in end order
        engine.ingest(batch, now)
        engine.advance(now)
    engine.advance(now + 10**10)  # every trace closed (the 5 s wait has passed)


def _without_detection(engine: Any) -> Any:
    """The engine with the anomaly detector's spend intake and bucket judging made no-ops."""
    engine.anomalies.add = lambda *args: None
    engine.anomalies.advance = lambda now_ns: None
    return engine


def child_floor(path: Path) -> dict[str, Any]:
    """CPU seconds, in this one thread, of: bare ParseFromString; parse_protobuf + decode;
    the engine alone (ingest + advance at a simulated 30k spans/s, all traces closed)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    from otel_llmcost.processor.engine import Engine
    from otel_llmcost.processor.otlp import Limits, decode, parse_protobuf
    from otel_llmcost.processor.service import tune_interpreter

    tune_interpreter()  # as in the service: with Python's default GC the engine took 10 % more
    bodies = read_bodies(path)
    limits = Limits()
    for body in bodies[:4]:  # warm-up
        decode(parse_protobuf(body), limits)
    gc.collect()
    started = time.process_time()
    for body in bodies:
        ExportTraceServiceRequest().ParseFromString(body)
    parse = time.process_time() - started
    gc.collect()
    started = time.process_time()
    spans = rejected = 0
    for body in bodies:
        decoded = decode(parse_protobuf(body), limits)
        spans += len(decoded.records)
        rejected += decoded.rejected
    parse_decode = time.process_time() - started
    records = [decode(parse_protobuf(body), limits).records for body in bodies]
    gc.collect()
    engine = Engine()
    started = time.process_time()
    roll_up(engine, records)
    engine_s = time.process_time() - started
    closed = sum(h.count for (m, _), h in engine.metrics.histograms.items()
                 if m is sc.M_TRACE_COST)
    # The same without anomaly detection: its spend intake and bucket judging turned into
    # no-ops on this one engine (diagnostic: what detection costs per span).
    quiet = _without_detection(Engine())
    gc.collect()
    started = time.process_time()
    roll_up(quiet, records)
    quiet_s = time.process_time() - started
    return {"spans": spans, "rejected": rejected, "parse_s": parse,
            "parse_decode_s": parse_decode, "engine_s": engine_s, "traces_closed": closed,
            "open_traces": len(engine.traces.open), "engine_no_anomalies_s": quiet_s}


def child_engine(path: Path, detection: bool) -> dict[str, Any]:
    """Decode the bodies, then roll them up with anomaly detection on or off (for callgrind:
    the two runs differ only by detection, so the difference of their instruction totals is
    its cost)."""
    from otel_llmcost.processor.engine import Engine
    from otel_llmcost.processor.otlp import Limits, decode, parse_protobuf
    from otel_llmcost.processor.service import tune_interpreter

    tune_interpreter()
    limits = Limits()
    records = [decode(parse_protobuf(body), limits).records for body in read_bodies(path)]
    engine = Engine() if detection else _without_detection(Engine())
    roll_up(engine, records)
    return {"spans": sum(map(len, records)), "cpu_s": time.process_time()}


def detection_instructions(path: Path, out: Path) -> dict[str, float]:
    """Instructions per span that anomaly detection adds to the engine: callgrind totals of
    the same child with detection on and off (deterministic: PYTHONHASHSEED=0)."""
    totals = {}
    for mode in ("on", "off"):
        child = [sys.executable, str(Path(__file__).resolve()), "--child", "engine", str(path),
                 mode]
        ir, result = _results.callgrind(child, out / f"callgrind.processor.detection-{mode}.out",
                                        _child_env(), whole=True)
        totals[mode] = ir
        spans = result["spans"]
    # Instructions → µs at the child's own rate: its whole CPU time, run natively.
    native = _spawn_json(["--child", "engine", str(path), "on"])
    return {"spans": spans, "ir_per_us": totals["on"] / (native["cpu_s"] * 1e6),
            "added": (totals["on"] - totals["off"]) / spans}


# ------------------------------------------------------------------------ child: client


def child_client(transport: str, port: int, path: Path, connections: int) -> None:
    """Send every body as fast as the processor accepts it: ``ready`` on stdout, wait for a
    line on stdin, send, print the result as JSON."""
    bodies = read_bodies(path)
    lock = threading.Lock()
    todo = deque(range(len(bodies)))
    result = Counter()
    errors: list[str] = []

    def take() -> int | None:
        with lock:
            return todo.popleft() if todo else None

    if transport == "http":
        import http.client

        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceResponse,
        )

        conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                 for _ in range(connections)]
        for conn in conns:
            conn.connect()

        def worker(conn: Any) -> None:
            try:
                while (index := take()) is not None:
                    while True:
                        conn.request("POST", "/v1/traces", body=bodies[index], headers={
                            "Content-Type": "application/x-protobuf"})
                        response = conn.getresponse()
                        data = response.read()
                        if response.status == 200:
                            reply = ExportTraceServiceResponse.FromString(data)
                            with lock:
                                result["accepted"] += 1
                                result["rejected_spans"] += reply.partial_success.rejected_spans
                            break
                        if response.status == 503:
                            with lock:
                                result["throttled"] += 1
                            time.sleep(float(response.getheader("Retry-After") or 1))
                            continue
                        raise RuntimeError(f"HTTP {response.status}: {data[:200]!r}")
            except Exception as error:  # noqa: BLE001 - reported to the parent
                errors.append(repr(error))
        targets = [(worker, conn) for conn in conns]
    else:
        import grpc
        from google.rpc import error_details_pb2
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceResponse,
        )

        channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[
            ("grpc.max_send_message_length", 64 << 20),
            ("grpc.max_receive_message_length", 64 << 20)])
        grpc.channel_ready_future(channel).result(timeout=30)
        export = channel.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request_serializer=None, response_deserializer=None)

        def worker(_: Any) -> None:
            try:
                while (index := take()) is not None:
                    while True:
                        try:
                            data = export(bodies[index], timeout=120)
                        except grpc.RpcError as error:
                            if error.code() != grpc.StatusCode.UNAVAILABLE:
                                raise
                            delay = 1.0
                            for key, value in error.trailing_metadata() or ():
                                if key == "google.rpc.retryinfo-bin":
                                    info = error_details_pb2.RetryInfo.FromString(value)
                                    delay = info.retry_delay.ToNanoseconds() / 1e9
                            with lock:
                                result["throttled"] += 1
                            time.sleep(delay)
                            continue
                        reply = ExportTraceServiceResponse.FromString(data)
                        with lock:
                            result["accepted"] += 1
                            result["rejected_spans"] += reply.partial_success.rejected_spans
                        break
            except Exception as error:  # noqa: BLE001 - reported to the parent
                errors.append(repr(error))
        targets = [(worker, None) for _ in range(connections)]

    print("ready", flush=True)
    sys.stdin.readline()
    started = time.perf_counter()
    threads = [threading.Thread(target=fn, args=(arg,)) for fn, arg in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps({"wall_s": time.perf_counter() - started, "errors": errors,
                      **result}), flush=True)


# ------------------------------------------------------------------- child: memory


def _deep_size(obj: Any, seen: set[int]) -> int:
    """Bytes of ``obj`` and everything it holds that was not counted before (``seen``)."""
    size, stack = 0, [obj]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        size += sys.getsizeof(item)
        if isinstance(item, (dict, OrderedDict)):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, deque, set, frozenset)):
            stack.extend(item)
        elif hasattr(item, "__slots__") and not isinstance(item, (str, bytes, int, float)):
            stack.extend(getattr(item, name) for name in item.__slots__
                         if hasattr(item, name))
    return size


def memory_plan(n: int, seed: int, base_ns: int) -> list[tuple[Any, ...]]:
    """``n`` agent traces, each the only turn of its own conversation: one tuple per span
    with the record's fields (ids as ints and shared strings; `memory_records` makes the
    objects)."""
    rng = random.Random(seed)
    customers = _customer_ids(rng, CUSTOMERS)
    plan: list[tuple[Any, ...]] = []
    for trace in plan_traces(rng, base_ns, customers, continue_p=0.0):
        if n <= 0:
            break
        n -= 1
        for s in trace.spans:
            a = s.attributes
            plan.append((trace.trace_id, s.span_id, s.parent_id, s.start_ns, s.end_ns,
                         s.error, s.kind == "llm", s.kind == "tool",
                         a.get(sc.GEN_AI_USAGE_COST_AMOUNT, 0.0),
                         a.get(sc.GEN_AI_USAGE_INPUT_TOKENS, 0),
                         a.get(sc.GEN_AI_USAGE_OUTPUT_TOKENS, 0), a.get(sc.LLMCOST_RETRIES, 0),
                         a.get(sc.GEN_AI_CONVERSATION_ID), a.get(sc.LLMCOST_CUSTOMER_ID)))
    return plan


def memory_records(plan: list[tuple[Any, ...]]) -> Iterator[list[Any]]:
    """The plan as `SpanRecord` batches, every id and number a new object per record, as
    the decoder makes them."""
    from otel_llmcost.processor.records import SpanRecord

    batch: list[Any] = []
    for (tid, sid, pid, start, end, error, llm, tool, cost, input_tokens, output_tokens,
         retries, conversation, customer) in plan:
        batch.append(SpanRecord(
            tid.to_bytes(16, "big"), sid.to_bytes(8, "big"),
            pid.to_bytes(8, "big") if pid else b"", start + 0, end + 0, error, llm, tool,
            cost + 0.0, input_tokens + 0, output_tokens + 0, retries,
            conversation.encode().decode() if conversation else None,
            customer.encode().decode() if customer else None, 1.0))
        if len(batch) == SPANS_PER_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child_memory(conversations: int, reps: int) -> dict[str, Any]:
    """State per open conversation / trace (RSS pass, then tracemalloc pass), checkpoints."""
    import tracemalloc

    from otel_llmcost.processor.engine import Engine

    # Spans from 00:01 (traces arrive at 150/s: 100,000 take about 11 minutes), engine time
    # 00:30, all in one UTC hour: no customer window closes during the measurement.
    base_ns = (1_767_225_600 + 60) * 10**9  # 2026-01-01T00:01:00Z
    now_open = base_ns + 10**9 * 29 * 60  # all spans arrived "now"
    now_closed = now_open + 10**9 * 6  # the 5 s trace wait has passed; conversations idle 30 min
    out: dict[str, Any] = {"conversations": conversations}

    plan = memory_plan(conversations, SEED + 7, base_ns)

    def fill(engine: Any) -> int:
        spans = 0
        for batch in memory_records(plan):
            engine.ingest(batch, now_open)
            spans += len(batch)
        return spans

    # Pass 1: RSS, no tracemalloc.
    mark = time.monotonic()
    gc.collect()
    rss0 = _rss()
    engine = Engine()
    out["spans"] = fill(engine)
    gc.collect()
    rss1 = _rss()
    out["open_traces_at_open"] = len(engine.traces.open)
    out["open_conversations_at_open"] = len(engine.conversations.open)
    engine.advance(now_closed)
    gc.collect()
    rss2 = _rss()
    out["open_traces"] = len(engine.traces.open)
    out["open_conversations"] = len(engine.conversations.open)
    out["customers"] = engine.customers.open_count()
    out["evictions"] = {"/".join(labels): v for (m, labels), v in engine.metrics.counters.items()
                        if m is sc.M_PROCESSOR_EVICTIONS}
    out["rss"] = {"open": rss1 - rss0, "closed": rss2 - rss0}
    mark = _progress("state size: RSS pass", mark)
    seen: set[int] = set()
    out["deep"] = {  # after the traces closed; shared objects counted once, in this order
        "conversations": _deep_size(engine.conversations.open, seen),
        "closed_trace_ids": _deep_size(engine.traces.closed, seen),
        "open_traces": _deep_size((engine.traces.open, engine.traces.due), seen),
        "customer_windows": _deep_size([w.open for w in engine.customers.windows], seen),
        "metrics": _deep_size((engine.metrics.histograms, engine.metrics.counters), seen),
    }
    checkpoints = {"closed": _checkpoint(engine, now_closed, reps)}
    del engine
    gc.collect()
    mark = _progress("state size: sizes and checkpoint (traces closed)", mark)

    # Pass 2: tracemalloc (live Python allocations only).
    tracemalloc.start()
    gc.collect()
    mem0 = tracemalloc.get_traced_memory()[0]
    engine = Engine()
    fill(engine)
    gc.collect()
    mem1 = tracemalloc.get_traced_memory()[0]
    engine.advance(now_closed)
    gc.collect()
    mem2 = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    out["tracemalloc"] = {"open": mem1 - mem0, "closed": mem2 - mem0}
    del engine
    gc.collect()
    mark = _progress("state size: tracemalloc pass", mark)

    # Pass 3: the checkpoint with every trace still open.
    engine = Engine()
    fill(engine)
    checkpoints["open"] = _checkpoint(engine, now_open, reps)
    seen = set()
    out["deep_open"] = {
        "conversations": _deep_size(engine.conversations.open, seen),
        "closed_trace_ids": _deep_size(engine.traces.closed, seen),
        "open_traces": _deep_size((engine.traces.open, engine.traces.due), seen),
        "customer_windows": _deep_size([w.open for w in engine.customers.windows], seen),
        "metrics": _deep_size((engine.metrics.histograms, engine.metrics.counters), seen),
    }
    _progress("state size: checkpoint (traces open)", mark)
    out["checkpoints"] = checkpoints
    return out


def _progress(what: str, since: float) -> float:
    now = time.monotonic()
    print(f"  {what}: {now - since:.0f} s", file=sys.stderr)
    return now


def _checkpoint(engine: Any, now_ns: int, reps: int) -> dict[str, float]:
    """A full checkpoint, `Store.save(engine.dump())`, into a new SQLite file: size,
    median wall and CPU; then an incremental one with nothing changed since,
    `Store.save(engine.changes())` (only the open traces and the metrics are written)."""
    from otel_llmcost.processor.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        wall, cpu, dump_cpu, again, size = [], [], [], [], 0
        for rep in range(reps):
            store = Store(Path(tmp) / f"state-{rep}.db")
            gc.collect()
            t0, c0 = time.perf_counter(), time.process_time()
            state = engine.dump()  # the service holds the engine lock for this part
            c1 = time.process_time()
            size = store.save(state, now_ns)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            dump_cpu.append(c1 - c0)
            del state
            c0 = time.process_time()
            store.save(engine.changes(), now_ns)
            again.append(time.process_time() - c0)
            store.close()
        files = sum(p.stat().st_size for p in Path(tmp).iterdir()) / reps
    return {"bytes": size, "wall_s": statistics.median(wall),
            "cpu_s": statistics.median(cpu), "dump_cpu_s": statistics.median(dump_cpu),
            "unchanged_cpu_s": statistics.median(again), "file_bytes": files}


# ------------------------------------------------------------------- end to end (parent)


def _proc_cpu(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        text = response.read().decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and not line.startswith("#"):
            name, labels, value = match.groups()
            out.setdefault(name, []).append((dict(_LABEL.findall(labels or "")),
                                             float(value)))
    return out


def value(families: dict[str, list[tuple[dict[str, str], float]]], name: str,
          **labels: str) -> float:
    return sum(v for found, v in families.get(name, [])
               if all(found.get(k) == want for k, want in labels.items()))


RECEIVED = sc.M_PROCESSOR_RECEIVED_SPANS.prometheus
QUEUE = sc.M_PROCESSOR_QUEUE.prometheus
OPEN = sc.M_PROCESSOR_OPEN.prometheus
BUSY = sc.M_PROCESSOR_BUSY.prometheus
CHECKPOINT = sc.M_PROCESSOR_CHECKPOINT.prometheus
CHECKPOINT_TIME = sc.M_PROCESSOR_CHECKPOINT_TIME.prometheus
STATE = sc.M_PROCESSOR_STATE_BYTES.prometheus
REQUESTS = sc.M_PROCESSOR_REQUESTS.prometheus
TRACE_COUNT = sc.M_TRACE_COST.prometheus + "_count"
ENTITY = sc.prometheus_label(sc.LLMCOST_ENTITY)
OUTCOME = sc.prometheus_label(sc.LLMCOST_REQUEST_OUTCOME)


def _on_cpu(cpu: int | None) -> dict[str, Any]:
    """`subprocess.Popen` arguments that start the child on ``cpu`` alone (None: anywhere);
    its threads inherit it. (This process has no threads, so a preexec_fn is safe.)"""
    return {} if cpu is None else {"preexec_fn": lambda: os.sched_setaffinity(0, {cpu})}


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLMCOST_"))}
    env["PYTHONHASHSEED"] = "0"
    return env


def stamped(path: Path, unique: list[bytes], data: dict[str, Any]) -> int:
    """Write the end-to-end requests (`restamp` at REPLAY_RATE) to ``path``, their first
    span ending STAMP_LEAD_S from now, about when the client starts; returns that time."""
    start_ns = time.time_ns() + round(STAMP_LEAD_S * 1e9)
    write_bodies(path, restamp(unique, data["copies"], data, start_ns, REPLAY_RATE))
    return start_ns


def run_e2e(transport: str, unique: list[bytes], data: dict[str, Any], connections: int,
            checkpoints: bool = True, pinned: bool = True) -> dict[str, Any]:
    """One real processor, one client: CPU and wall time until everything is rolled up.
    ``pinned``: the processor on PROCESSOR_CPU and the client on CLIENT_CPU."""
    spans, traces = data["spans"], data["traces"]
    with tempfile.TemporaryDirectory(prefix="bench-processor-") as tmp:
        env = _child_env()
        env.update({sc.ENV_PROCESSOR_PREFIX + "HTTP_ENDPOINT": "127.0.0.1:0",
                    sc.ENV_PROCESSOR_PREFIX + "GRPC_ENDPOINT": "127.0.0.1:0",
                    sc.ENV_PROCESSOR_PREFIX + "METRICS_ENDPOINT": "127.0.0.1:0",
                    sc.ENV_PROCESSOR_PREFIX + "STATE_PATH":
                        str(Path(tmp) / "state.db") if checkpoints else "off"})
        log_path = Path(tmp) / "processor.log"
        command = Path(sys.executable).with_name(sc.PROCESSOR_COMMAND)
        with open(log_path, "w") as log:
            proc = subprocess.Popen([str(command)], env=env, cwd=tmp, stdout=log, stderr=log,
                                    **_on_cpu(PROCESSOR_CPU if pinned else None))
        client = None
        try:
            ports = _wait_listening(proc, log_path)
            metrics_port = ports["metrics"]
            scrape(metrics_port)
            time.sleep(1.0)  # settle after start-up
            c0 = _proc_cpu(proc.pid)
            time.sleep(IDLE_S)
            idle = (_proc_cpu(proc.pid) - c0) / IDLE_S  # cores used while idle
            path = Path(tmp) / "requests.bin"
            first_end_ns = stamped(path, unique, data)
            client = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--child", "client",
                 transport, str(ports[transport]), str(path), str(connections)],
                env=_child_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                **_on_cpu(CLIENT_CPU if pinned else None))
            assert client.stdout is not None and client.stdin is not None
            if client.stdout.readline().strip() != "ready":
                raise RuntimeError(f"{transport} client did not start")
            cpu_start, t0 = _proc_cpu(proc.pid), time.perf_counter()
            lag_s = (time.time_ns() - first_end_ns) / 1e9
            client.stdin.write("go\n")
            client.stdin.flush()
            sent = json.loads(client.stdout.readline())
            client.wait(timeout=WAIT_S)
            t_sent = time.perf_counter()
            if sent["errors"]:
                raise RuntimeError(f"{transport} client: {sent['errors'][:3]}")
            scrapes = 0
            deadline = time.monotonic() + WAIT_S
            while True:  # every span received and the queue empty…
                families = scrape(metrics_port)
                scrapes += 1
                if (value(families, RECEIVED) >= spans and value(families, QUEUE) == 0):
                    break
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the processor did not drain")
                time.sleep(POLL_S)
            families = scrape(metrics_port)  # …and this scrape waited for the engine lock
            scrapes += 1
            t_drained, cpu_drained = time.perf_counter(), _proc_cpu(proc.pid)
            busy_drained = value(families, BUSY)
            drained_ns = time.time_ns()

            def closed(families: dict[str, list[tuple[dict[str, str], float]]]) -> bool:
                """Every trace closed, as shown by the engine itself or (with a state file,
                /metrics shows the last checkpoint) by a checkpoint saved after the drain."""
                published = not checkpoints or value(families, CHECKPOINT_TIME) * 1e9 > drained_ns
                return published and value(families, OPEN, **{ENTITY: "trace"}) == 0

            while not closed(families):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("traces did not close")
                time.sleep(CLOSE_POLL_S)
                families = scrape(metrics_port)
                scrapes += 1
            t_closed, cpu_closed = time.perf_counter(), _proc_cpu(proc.pid)
            result = {
                "transport": transport, "spans": spans, "idle_cores": idle, "lag_s": lag_s,
                "client_wall_s": sent["wall_s"], "sent_wall_s": t_sent - t0,
                "drain_wall_s": t_drained - t0, "close_wall_s": t_closed - t0,
                "cpu_drained_s": cpu_drained - cpu_start, "cpu_closed_s": cpu_closed - cpu_start,
                "busy_drained_s": busy_drained, "busy_closed_s": value(families, BUSY),
                "checkpoint_s": value(families, CHECKPOINT),
                "received": value(families, RECEIVED),
                "accepted_requests": value(families, REQUESTS, **{OUTCOME: "accepted"}),
                "throttled": sent.get("throttled", 0),
                "rejected_spans": sent.get("rejected_spans", 0),
                "traces_closed": value(families, TRACE_COUNT),
                "open_conversations": value(families, OPEN, **{ENTITY: "conversation"}),
                "state_bytes": value(families, STATE), "scrapes": scrapes,
            }
            if result["traces_closed"] != traces:
                raise RuntimeError(f"{transport}: {result['traces_closed']:.0f} traces "
                                   f"closed, {traces} sent")
            return result
        finally:
            if client is not None and client.poll() is None:
                client.kill()
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.returncode not in (0, None):
                print(log_path.read_text()[-3000:], file=sys.stderr)


def _wait_listening(proc: subprocess.Popen[Any], log_path: Path) -> dict[str, int]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = log_path.read_text()
        if "listening (" in text:
            ports = {}
            for key, pattern in (("http", r"HttpReceiver (\d+)"),
                                 ("grpc", r"GrpcReceiver (\d+)"),
                                 ("metrics", r"metrics (\d+)")):
                match = re.search(pattern, text)
                if match:
                    ports[key] = int(match.group(1))
            return ports
        if proc.poll() is not None:
            raise RuntimeError(f"the processor exited: {text[-2000:]}")
        time.sleep(0.05)
    raise RuntimeError("the processor did not start listening")


def _spawn_json(args: list[str], cpu: int | None = None) -> dict[str, Any]:
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), *args],
                         env=_child_env(), capture_output=True, text=True, check=False,
                         **_on_cpu(cpu))
    if out.returncode != 0:
        raise RuntimeError(f"child {args[:2]} failed: {out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------- profile


def profile_pipeline(path: Path) -> None:
    """cProfile of the single-thread pipeline (parse, decode, engine), top functions."""
    import cProfile
    import pstats

    from otel_llmcost.processor.engine import Engine
    from otel_llmcost.processor.otlp import Limits, decode, parse_protobuf

    bodies = read_bodies(path)
    engine, limits = Engine(), Limits()
    profiler = cProfile.Profile()
    profiler.enable()
    roll_up(engine, (decode(parse_protobuf(body), limits).records for body in bodies))
    profiler.disable()
    print("== one thread: parse_protobuf + decode + Engine.ingest/advance (wall-clock timer)")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


def profile_live(transport: str, unique: list[bytes], data: dict[str, Any],
                 connections: int) -> None:
    """A real `Processor` in this process, every thread of it profiled on its own CPU
    clock (cProfile with ``time.thread_time``: GIL waits are not counted, but the timer
    itself is a system call, so small functions look heavier than they are)."""
    import cProfile
    import pstats

    from otel_llmcost.processor import receivers, service
    from otel_llmcost.processor.settings import Settings

    profiles: dict[str, list[Any]] = {"engine thread": [], "receiver threads": []}
    guard = threading.Lock()

    def profiled(fn: Any, role: str) -> Any:
        def done(profiler: cProfile.Profile) -> None:
            profiler.disable()
            with guard:
                profiles[role].append(profiler)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            profiler = cProfile.Profile(time.thread_time)
            profiler.enable()
            try:
                return fn(*args, **kwargs)
            finally:
                done(profiler)

        async def awaiting(*args: Any, **kwargs: Any) -> Any:
            # The gRPC receiver's loop thread runs one call at a time, up to its awaits:
            # what else the loop runs meanwhile is counted too.
            profiler = cProfile.Profile(time.thread_time)
            profiler.enable()
            try:
                return await fn(*args, **kwargs)
            finally:
                done(profiler)
        return awaiting if inspect.iscoroutinefunction(fn) else wrapper

    originals = (service.Processor._run, receivers._HttpHandler.do_POST,
                 receivers.GrpcReceiver._export)
    service.Processor._run = profiled(originals[0], "engine thread")
    receivers._HttpHandler.do_POST = profiled(originals[1], "receiver threads")
    receivers.GrpcReceiver._export = profiled(originals[2], "receiver threads")
    gc_time = [0.0, 0]
    gc_started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
        else:
            gc_time[0] += time.perf_counter() - gc_started[0]
            gc_time[1] += info["generation"] == 2

    gc.callbacks.append(on_gc)
    with tempfile.TemporaryDirectory(prefix="bench-processor-") as tmp:
        processor = service.Processor(Settings(
            grpc_endpoint="127.0.0.1:0", http_endpoint="127.0.0.1:0",
            metrics_endpoint="127.0.0.1:0", state_path=str(Path(tmp) / "state.db")))
        processor.start()
        port = next(r.port for r in processor.receivers if r.transport == transport)
        path, spans = Path(tmp) / "requests.bin", data["spans"]
        stamped(path, unique, data)
        client = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--child", "client", transport,
             str(port), str(path), str(connections)],
            env=_child_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert client.stdout is not None and client.stdin is not None
        client.stdout.readline()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        client.stdin.write("go\n")
        client.stdin.flush()
        sent = json.loads(client.stdout.readline())
        client.wait()
        while True:
            with processor.lock:
                done = (sum(processor.stats.snapshot().received_spans.values()) >= spans
                        and processor._queue.qsize() == 0 and not processor.engine.traces.open)
            if done:
                break
            time.sleep(0.1)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        processor.stop()
    gc.callbacks.remove(on_gc)
    (service.Processor._run, receivers._HttpHandler.do_POST,
     receivers.GrpcReceiver._export) = originals
    print(f"== {transport}: {spans:,} spans, client {sent['wall_s']:.2f} s; processor CPU "
          f"{cpu:.2f} s (profiled), wall {wall:.2f} s to every trace closed; garbage "
          f"collector {gc_time[0]:.2f} s wall ({gc_time[1]} full collections)")
    for role, found in profiles.items():
        if not found:
            continue
        stats = pstats.Stats(found[0])
        for more in found[1:]:
            stats.add(more)
        print(f"-- {role} (CPU time of that thread)")
        stats.sort_stats("tottime").print_stats(18)


# -------------------------------------------------------------------------- report










def _med(values: list[float]) -> float:
    return statistics.median(values)


def _range(values: list[float], fmt: str = ",.0f") -> str:
    return f"{min(values):{fmt}}–{max(values):{fmt}}" if len(values) > 1 else ""


def _kb(n: float) -> str:
    return f"{n / 1024:,.1f} KiB" if n < 1 << 20 else f"{n / (1 << 20):,.1f} MiB"


def _checkpoints(run: dict[str, Any]) -> str:
    if not run["state_bytes"]:
        return "—"
    return f"{run['checkpoint_s']:.2f} s / {_kb(run['state_bytes'])}"


def _pinning(r: dict[str, Any]) -> str:
    cpus = r["settings"].get("cpus")
    return ("`sched_setaffinity`: processor and decode floor on CPU {}, client on CPU {}"
            .format(*cpus) if cpus else "not possible here: one CPU")


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


E2E_NAMES = {"http": "OTLP/HTTP (protobuf)", "grpc": "OTLP/gRPC",
             NO_STATE: "OTLP/HTTP, state file off (diagnostic: no checkpoints)",
             UNPINNED: "OTLP/HTTP, processor and client on any CPU (diagnostic: not pinned)"}


def report(r: dict[str, Any]) -> str:
    floors = r["floor"]
    parse = [f["spans"] / f["parse_s"] for f in floors]
    decode_ = [f["spans"] / f["parse_decode_s"] for f in floors]
    engine = [f["spans"] / f["engine_s"] for f in floors]
    quiet = [f["spans"] / f["engine_no_anomalies_s"] for f in floors]
    # What anomaly detection costs per span, paired within each round (same records).
    detection_us = _med([1e6 * (f["engine_s"] - f["engine_no_anomalies_s"]) / f["spans"]
                         for f in floors])
    both = [f["spans"] / (f["parse_decode_s"] + f["engine_s"]) for f in floors]
    floor = _med(decode_)
    lines = [
        ("| path | spans/s per core (median) | range | ÷ decode floor | wall-clock spans/s "
        "(median, range) | CPU per span |"),
        "|---|---|---|---|---|---|",
        (f"| bare `ParseFromString` (one thread) | {_med(parse):,.0f} | {_range(parse)} | "
        f"{_med(parse) / floor:.2f} | — | {1e6 / _med(parse):.2f} µs |"),
        (f"| **decode floor**: `parse_protobuf` + `otlp.decode` (one thread) | "
        f"**{floor:,.0f}** | {_range(decode_)} | 1.00 | — | {1e6 / floor:.2f} µs |"),
        (f"| engine alone: `ingest` + `advance`, all traces closed (one thread) | "
        f"{_med(engine):,.0f} | {_range(engine)} | {_med(engine) / floor:.2f} | — | "
        f"{1e6 / _med(engine):.2f} µs |"),
        (f"| engine alone, anomaly detection off (diagnostic) | "
        f"{_med(quiet):,.0f} | {_range(quiet)} | {_med(quiet) / floor:.2f} | — | "
        f"{1e6 / _med(quiet):.2f} µs |"),
        (f"| decode + engine (one thread, no transport, queue or checkpoint) | "
        f"{_med(both):,.0f} | {_range(both)} | {_med(both) / floor:.2f} | — | "
        f"{1e6 / _med(both):.2f} µs |"),
    ]
    verdicts, per_span = [], {}
    for variant, runs in r["e2e"].items():
        if not runs:
            continue
        closed = [x["spans"] / x["cpu_closed_s"] for x in runs]
        drained = [x["spans"] / x["cpu_drained_s"] for x in runs]
        wall = [x["spans"] / x["drain_wall_s"] for x in runs]
        name = E2E_NAMES[variant]
        per_core = _med(closed)
        per_span[variant] = 1e6 / per_core
        bold = "**" if variant in TRANSPORTS else ""
        lines.append(
            f"| {bold}end to end, {name}{bold}: processor CPU until every trace closed | "
            f"{bold}{per_core:,.0f}{bold} | {_range(closed)} | "
            f"{bold}{per_core / floor:.2f}{bold} | {_med(wall):,.0f} ({_range(wall)}) | "
            f"{1e6 / per_core:.2f} µs |")
        lines.append(
            f"| … until the queue drained | {_med(drained):,.0f} | {_range(drained)} | "
            f"{_med(drained) / floor:.2f} | (same) | {1e6 / _med(drained):.2f} µs |")
        if variant in TRANSPORTS:
            verdicts.append(
                f"- {name}: **{per_core:,.0f} spans/s per core** (target ≥ "
                f"{TARGET_SPANS_PER_CORE:,}: {_met(per_core >= TARGET_SPANS_PER_CORE)}); "
                f"**{per_core / floor:.0%} of the decode floor** (target ≥ "
                f"{TARGET_FLOOR_SHARE:.0%}: {_met(per_core / floor >= TARGET_FLOOR_SHARE)}); "
                f"wall clock {_med(wall):,.0f} spans/s.")
    m = r["memory"]
    n = m["conversations"]
    per_conv = m["tracemalloc"]["closed"] / m["open_conversations"]
    verdicts.append(
        f"- State per open conversation at {m['open_conversations']:,} open conversations: "
        f"**{per_conv:,.0f} B** (tracemalloc, traces closed; target ≤ "
        f"{TARGET_BYTES_PER_CONVERSATION:,} B: {_met(per_conv <= TARGET_BYTES_PER_CONVERSATION)})"
        f"; RSS growth {m['rss']['closed'] / n:,.0f} B per conversation.")
    if "http" in per_span:
        d = r["detection"]
        added_us = d["added"] / d["ir_per_us"]
        verdicts.append(
            f"- Anomaly detection: **{d['added']:+,.0f} instructions per span** in the engine "
            f"(callgrind: the same {d['spans']:,} spans decoded and rolled up with detection "
            f"on and off, the difference of the totals), ≈ {added_us:.2f} µs at that "
            f"process's own {d['ir_per_us']:,.0f} Ir/µs, "
            f"**{added_us / per_span['http']:.1%} of the end-to-end CPU per span** over "
            f"OTLP/HTTP: the throughput it costs (target: a drop ≤ 10 %: "
            f"{_met(added_us / per_span['http'] <= 0.10)}). Timed on and off in the same "
            f"rounds (the engine alone, noisier) the difference is {detection_us:+.2f} µs.")
    if "http" in per_span and NO_STATE in per_span:
        one = 1e6 / _med(both)
        verdicts.append(
            f"- Where the CPU per span goes (OTLP/HTTP, medians): {per_span['http']:.1f} µs end "
            f"to end = {1e6 / floor:.1f} µs decode + {1e6 / _med(engine):.1f} µs engine (one "
            f"thread) + {per_span[NO_STATE] - one:.1f} µs of running as a service (HTTP, "
            f"queue, threads and the GIL, garbage collection of a larger heap, scrapes, idle "
            f"waiting for the last traces to close) + {per_span['http'] - per_span[NO_STATE]:.1f}"
            f" µs of checkpoints (the difference with the state file off; the engine thread's"
            f" own clock, `{CHECKPOINT}`, says "
            f"{_med([1e6 * x['checkpoint_s'] / x['spans'] for x in r['e2e']['http']]):.1f} µs)"
            ".")
    if "http" in per_span and r["e2e"].get(UNPINNED):
        verdicts.append(
            f"- Not pinned (processor and client free to share the CPUs): "
            f"{per_span[UNPINNED]:.1f} µs a span over OTLP/HTTP against {per_span['http']:.1f} "
            f"pinned ({1e6 / per_span[UNPINNED] / floor:.2f} of the decode floor against "
            f"{1e6 / per_span['http'] / floor:.2f}). Pinning keeps the load generator out of "
            f"the processor's CPU and caches, as in a deployment whose senders are other "
            f"machines.")

    details = [("| variant | run | spans | processor CPU to drained / to closed | "
               "engine busy (drained / closed) | wall: client sent / drained / closed | "
               "idle CPU before | 503 / UNAVAILABLE | scrapes | checkpoints: time / last size |"),
               "|" + "---|" * 10]
    for variant, runs in r["e2e"].items():
        for i, x in enumerate(runs, 1):
            details.append(
                f"| {variant} | {i} | {x['spans']:,} | {x['cpu_drained_s']:.2f} s / "
                f"{x['cpu_closed_s']:.2f} s | {x['busy_drained_s']:.2f} s / "
                f"{x['busy_closed_s']:.2f} s | {x['sent_wall_s']:.2f} / {x['drain_wall_s']:.2f}"
                f" / {x['close_wall_s']:.2f} s | {x['idle_cores'] * 100:.1f} % of a core | "
                f"{x['throttled']} | {x['scrapes']} | "
                f"{_checkpoints(x)} |")

    tm, rss = m["tracemalloc"], m["rss"]
    traces_open = m["open_traces_at_open"]
    mem = [
        (f"| measure | {traces_open:,} traces and {n:,} conversations open | traces closed, "
        f"{m['open_conversations']:,} conversations open |"),
        "|---|---|---|",
        (f"| tracemalloc: live Python allocations of the engine | {_kb(tm['open'])} | "
        f"{_kb(tm['closed'])} |"),
        (f"| … per open conversation | {tm['open'] / n:,.0f} B (a trace included) | "
        f"**{tm['closed'] / m['open_conversations']:,.0f} B** |"),
        (f"| … per open trace: the difference ÷ {traces_open:,} | "
        f"{(tm['open'] - tm['closed']) / traces_open:,.0f} B | — |"),
        (f"| RSS growth of the process (no tracemalloc) | {_kb(rss['open'])} "
        f"({rss['open'] / n:,.0f} B per conversation) | {_kb(rss['closed'])} "
        f"({rss['closed'] / n:,.0f} B per conversation) |"),
    ]
    for key in m["deep"]:
        mem.append(f"| recursive `sys.getsizeof`: {key.replace('_', ' ')} | "
                   f"{m['deep_open'][key] / n:,.0f} B | {m['deep'][key] / n:,.0f} B |")
    cps = m["checkpoints"]
    check = [("| state | full checkpoint | per conversation | `Engine.dump` + "
             "`Store.save`: wall / CPU (median) | of which `Engine.dump` (CPU) | "
             "next checkpoint, nothing changed: CPU | SQLite files |"),
             "|---|---|---|---|---|---|---|"]
    for label, text in (("open", f"{traces_open:,} traces and {n:,} conversations open"),
                        ("closed", f"traces closed, {n:,} conversations open")):
        cp = cps[label]
        check.append(f"| {text} | {_kb(cp['bytes'])} | {cp['bytes'] / n:,.0f} B | "
                     f"{cp['wall_s'] * 1000:,.0f} ms / {cp['cpu_s'] * 1000:,.0f} ms | "
                     f"{cp['dump_cpu_s'] * 1000:,.0f} ms | "
                     f"{cp['unchanged_cpu_s'] * 1000:,.0f} ms | {_kb(cp['file_bytes'])} |")

    d = r["data"]
    kinds = d["kinds"]
    method = f"""\
- **Requests** (seed {SEED}): {r['settings']['unique']} distinct OTLP \
`ExportTraceServiceRequest`s of {SPANS_PER_BATCH} spans ({d['unique_spans']:,} spans, \
{_kb(d['bytes'] / r['settings']['unique'])} per request), made by the OpenTelemetry SDK's \
own encoder (`encode_spans` of `ReadableSpan`s: one resource, the app's scope and \
`{sc.INSTRUMENTATION_SCOPE}`'s). {d['unique_traces']:,} agent traces: an `invoke_agent` \
root ({kinds.get('root', 0):,} spans), 1-4 LLM calls ({kinds.get('llm', 0):,}) and 1-2 \
`execute_tool` spans between calls ({kinds.get('tool', 0):,}); traces arrive at \
{TRACES_PER_S:g}/s and their spans are exported in end order, so traces interleave and \
straddle requests. {d['conversations']:,} conversations (ids: 36-char UUIDs; a trace is the \
next turn of an open conversation with p = {CONTINUE_P}), {d['customers']:,} customers of a \
pool of {CUSTOMERS:,} (skewed). Every span has {ATTRIBUTES_PER_SPAN} attributes: LLM spans \
a 20-attribute subset of what otel-llmcost sets on a priced chat call (`gen_ai.*` request, \
response, usage and cost, `llmcost.pricing.*`, customer, conversation, feature; \
{RETRY_P:.1%} carry `llmcost.retries`, {LLM_ERROR_P:.0%} fail with `error.type`); roots \
and tools GenAI agent/tool attributes plus the app's own (HTTP, code, db). No sampling \
attributes (keep-everything). An end-to-end run sends {r['settings']['batches']:,} \
requests ({d['spans']:,} spans, {d['traces']:,} traces): the distinct ones, then \
{d['copies'] - 1} more rounds of them with every trace id re-drawn (new traces; same \
conversations and customers, which gain turns) — long enough for several checkpoints. \
**Event times are current**: before each run, the spans are re-stamped (durations kept) to \
end at {REPLAY_RATE:,} spans/s from about when the client starts sending — as a service at \
that load would see them, each arriving about as it ends (at the first request the first \
span had ended {_range([x['lag_s'] for runs in r['e2e'].values() for x in runs], '.1f')} s \
before). So the customer windows and the anomaly detector take every span as current; \
with the planned times, minutes old by then, the detector dropped most spans as too late \
to count, which flattered the figures before 2026-11-24. The single-thread passes take \
requests stamped at {ENGINE_RATE:,} spans/s on a clock that keeps pace with them (each \
request rolled up at its last span's end).
- **End to end**, {r['settings']['rounds']} rounds; in each, the decode floor, HTTP, gRPC \
and the diagnostics run once, in rotating order. A transport run starts \
`{sc.PROCESSOR_COMMAND}` in its own process (defaults: both receivers, metrics endpoint, \
queue of 1,024 requests, state in SQLite on a temp file, checkpoint every 5 s; ports 0; \
one diagnostic run sets `{sc.ENV_PROCESSOR_PREFIX}STATE_PATH=off`, so no checkpoints), \
measures its idle CPU over {IDLE_S:g} s, then a \
client process ({r['settings']['connections']} connections, or gRPC calls in flight, \
bodies read beforehand) sends every request as fast as it is accepted, retrying after a \
503 + Retry-After / UNAVAILABLE + RetryInfo. The processor's CPU is utime + stime of its \
process from `/proc/<pid>/stat` (all threads; 10 ms ticks) from the first request until \
(a) `{RECEIVED}` counts every span, `{QUEUE}` is 0 and one more scrape (which waits for the \
engine's lock) has answered — "drained" —, and (b) `{OPEN}{{{ENTITY}="trace"}}` is 0 — \
"closed": every trace rolled up, 5 s after its root arrived. (b) is the headline: it holds \
all the work (receive, decode, queue, roll up, close, the checkpoints that fell in the \
run), plus the idle CPU of the few seconds of waiting for the last traces to close and the \
scrapes the benchmark made (every {POLL_S:g} s until drained, every {CLOSE_POLL_S:g} s \
after). The processor runs on one CPU and the client on another \
({_pinning(r)}), as when the senders are other machines; the other \
diagnostic run leaves both free to share the CPUs. Wall-clock spans/s: spans ÷ time from \
the first request to "drained". Each run checks that every trace was \
closed (`{TRACE_COUNT}` = traces sent).
- **Decode floor**, in one process and thread, on the processor's CPU and with its \
interpreter settings (`service.tune_interpreter`: GC thresholds), the distinct request \
bodies: bare \
`ExportTraceServiceRequest().ParseFromString`; `otlp.parse_protobuf` + `otlp.decode` (what a \
receiver does); and the engine alone on the decoded records (`Engine.ingest` + \
`Engine.advance` per request at a simulated {ENGINE_RATE:,} spans/s, then every trace \
closed), `time.process_time`; then the same with the anomaly detector's intake and judging \
made no-ops (a timed diagnostic; the end-to-end runs have detection on, the default). \
**Anomaly detection's cost**: `valgrind --tool=callgrind` on one process that decodes the \
distinct requests and rolls them up, once with detection on and once off \
(`PYTHONHASHSEED=0`: the totals are deterministic); per span = the difference of the totals \
÷ spans, turned into µs at that process's own instructions per µs of CPU (a native run).
- **State size**: an in-process `Engine` (default config) fed {n:,} agent traces of the same \
shape ({m['spans']:,} spans), each the only turn of its own conversation (so {n:,} open \
conversations, ids as the decoder makes them: a new object per span), {m['customers']:,} \
customers; measured with every trace open, then after advancing 6 s (traces closed, \
conversations stay open for 30 min). tracemalloc (live Python allocations) and, in a \
separate pass without tracemalloc, the RSS growth. Checkpoint: a full one, \
`Store.save(engine.dump())`, into a new SQLite file on a temp file, then the next one with \
nothing changed, `Store.save(engine.changes())`; median of {r['settings']['reps']}.
- Run time of this benchmark: {r['seconds'] / 60:.1f} min ({r['phases']}).
"""
    evictions = ", ".join(f"{k}: {v:,.0f}" for k, v in m["evictions"].items()) or "none"
    out = [f"# {SECTION}", "",
           "Written by `benchmarks/bench_processor.py --write`; see `benchmarks/README.md`.",
           "", "## Machine", "", *r["machine"], "", "## Method", "", method,
           "## Verdict", "", *verdicts, "",
           "## Throughput", "", *lines, "",
           "Per run (processor CPU: its whole process; engine busy: `" + BUSY + "`, the "
           "engine thread's wall time rolling up under the engine lock, GIL waits included; "
           "checkpoints: `" + CHECKPOINT + "`, its wall time writing them, `Engine.changes` and "
           "`Store.save`):", "", *details, "",
           f"## State per open conversation ({n:,} open conversations)", "", *mem, "",
           ("The `sys.getsizeof` rows walk the engine's structures recursively, each object "
           "counted once, in the order of the rows (a conversation id held by an open trace's "
           "turn is counted with the conversations); per conversation. tracemalloc counts what "
           "the engine keeps alive, allocator overhead excluded; RSS includes the allocator's "
           f"free lists, so it stays near its peak after the traces close. Evictions: "
           f"{evictions}."), "",
           "## Checkpoint", "",
           ("What a checkpoint costs the engine thread at this state. The service writes one "
           "every `checkpoint_s` (5 s by default) after a change, holding the engine lock "
           "while it takes the changes (`Engine.changes`): the conversation and customer rows "
           "changed since the last one, the trace ids closed since, and the open traces and "
           "metrics whole. A full checkpoint (every row) is the bound; an idle state costs "
           "the last column:"), "", *check, ""]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--batches", type=int, default=1000,
                        help="requests of 512 spans per end-to-end run (default 1,000)")
    parser.add_argument("--unique", type=int, default=200,
                        help="distinct requests built; the rest repeat them with new trace "
                             "ids, and the decode floor uses these (default 200)")
    parser.add_argument("--rounds", type=int, default=4,
                        help="rounds; in each, the decode floor, HTTP, gRPC, HTTP without "
                             "checkpoints and HTTP not pinned run once, in rotating order "
                             "(default 4)")
    parser.add_argument("--connections", type=int, default=2,
                        help="client connections (HTTP) or calls in flight (gRPC) (default 2)")
    parser.add_argument("--conversations", type=int, default=100_000,
                        help="open conversations of the state-size measurement (default 100,000)")
    parser.add_argument("--reps", type=int, default=3,
                        help="checkpoint dump+save repetitions (default 3)")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes to check that everything runs (80 requests, "
                             "1 round, 10,000 conversations)")
    parser.add_argument("--profile", action="store_true",
                        help="instead of measuring: cProfile of decode + engine in one thread, "
                             "and of a live in-process processor per thread, both transports")
    parser.add_argument("--write", action="store_true",
                        help=f"also write the section '{SECTION}' of {_results.RESULTS.name}")
    if "--quick" in sys.argv[1:]:
        parser.set_defaults(batches=80, unique=40, rounds=1, conversations=10_000, reps=1)
    args = parser.parse_args()

    if args.child:
        kind, *rest = args.child
        if kind == "floor":
            print(json.dumps(child_floor(Path(rest[0]))))
        elif kind == "client":
            child_client(rest[0], int(rest[1]), Path(rest[2]), int(rest[3]))
        elif kind == "memory":
            print(json.dumps(child_memory(int(rest[0]), int(rest[1]))))
        elif kind == "engine":
            print(json.dumps(child_engine(Path(rest[0]), rest[1] == "on")))
        return

    if args.batches % args.unique:
        raise SystemExit("--batches must be a multiple of --unique")
    started, digest = time.monotonic(), _results.source_digest()
    phases: dict[str, float] = {}
    print(f"building {args.unique} requests of {SPANS_PER_BATCH} spans, "
          f"{args.batches} with copies…", file=sys.stderr)
    chosen, data = select_spans(args.unique)
    unique = encode_batches(chosen)
    del chosen
    _check_requests(unique, data)
    copies = args.batches // args.unique
    data.update(bytes=sum(map(len, unique)), unique_spans=data["spans"],
                unique_traces=data["traces"], copies=copies,
                spans=data["spans"] * copies, traces=data["traces"] * copies)
    phases["requests"] = time.monotonic() - started
    with tempfile.TemporaryDirectory(prefix="bench-processor-") as tmp:
        # The single-thread passes take these on a clock that keeps pace (see roll_up).
        unique_path = Path(tmp) / "unique.bin"
        write_bodies(unique_path, restamp(unique, 1, data, time.time_ns(), ENGINE_RATE))
        phases["requests"] = time.monotonic() - started
        if args.profile:
            from otel_llmcost.processor.service import tune_interpreter

            tune_interpreter()  # as the console script does: GC thresholds, switch interval
            profile_pipeline(unique_path)
            for transport in TRANSPORTS:
                profile_live(transport, unique, data, args.connections)
            return
        floor: list[dict[str, Any]] = []
        e2e: dict[str, list[dict[str, Any]]] = {t: [] for t in (*TRANSPORTS, NO_STATE,
                                                                UNPINNED)}
        mark = time.monotonic()
        steps = ("floor", *TRANSPORTS, NO_STATE, UNPINNED)
        for round_no in range(args.rounds):
            k = round_no % len(steps)
            order = steps[k:] + steps[:k]
            for step in order:
                print(f"round {round_no + 1}/{args.rounds}: {step}…", file=sys.stderr)
                if step == "floor":
                    result = _spawn_json(["--child", "floor", str(unique_path)],
                                         PROCESSOR_CPU)
                    if result["spans"] != data["unique_spans"] or result["rejected"]:
                        raise SystemExit(f"decode floor: {result}")
                    floor.append(result)
                else:
                    x = run_e2e("http" if step in (NO_STATE, UNPINNED) else step, unique,
                                data, args.connections, checkpoints=step != NO_STATE,
                                pinned=step != UNPINNED)
                    print(f"  {x['spans'] / x['cpu_closed_s']:,.0f} spans/s per core, "
                          f"{x['spans'] / x['drain_wall_s']:,.0f} wall", file=sys.stderr)
                    e2e[step].append(x)
        phases["throughput"] = time.monotonic() - mark
        print("anomaly detection's instructions (callgrind, on and off)…", file=sys.stderr)
        mark = time.monotonic()
        (HERE / "callgrind").mkdir(exist_ok=True)
        detection = detection_instructions(unique_path, HERE / "callgrind")
        phases["detection"] = time.monotonic() - mark
    print(f"state size at {args.conversations:,} open conversations…", file=sys.stderr)
    mark = time.monotonic()
    memory = _spawn_json(["--child", "memory", str(args.conversations), str(args.reps)])
    phases["state size"] = time.monotonic() - mark
    if _results.source_digest() != digest:
        raise SystemExit(f"{_results.package_dir()} changed during the run: run again on a stable "
                         "checkout")
    seconds = time.monotonic() - started
    results = {"data": data, "floor": floor, "e2e": e2e, "memory": memory,
               "detection": detection,
               "settings": {"batches": args.batches, "unique": args.unique,
                            "rounds": args.rounds,
                            "connections": args.connections, "reps": args.reps,
                            "cpus": None if PROCESSOR_CPU is None else [PROCESSOR_CPU,
                                                                        CLIENT_CPU]},
               "seconds": seconds, "machine": _machine(),
               "phases": ", ".join(f"{k} {v / 60:.1f} min" for k, v in phases.items())}
    (HERE / "callgrind").mkdir(exist_ok=True)
    (HERE / "callgrind" / "bench_processor.json").write_text(
        json.dumps(results, indent=1, default=str))
    text = report(results)
    print(text)
    if args.write:
        _results.write_section(text)


def _check_requests(bodies: list[bytes], data: dict[str, Any]) -> None:
    """Every request decodes whole, with the planned mix of LLM and tool spans."""
    from otel_llmcost.processor.otlp import decode, parse_protobuf

    llm = tool = attributes = 0
    for body in bodies:
        request = parse_protobuf(body)
        decoded = decode(request)
        if decoded.rejected or len(decoded.records) != SPANS_PER_BATCH:
            raise SystemExit(f"a request does not decode whole: {decoded.error}")
        llm += sum(r.llm for r in decoded.records)
        tool += sum(r.tool for r in decoded.records)
        attributes += sum(len(s.attributes) for rs in request.resource_spans
                          for ss in rs.scope_spans for s in ss.spans)
    kinds = data["kinds"]
    if (llm, tool) != (kinds.get("llm", 0), kinds.get("tool", 0)):
        raise SystemExit(f"decoded {llm} LLM / {tool} tool spans, planned {kinds}")
    if attributes != ATTRIBUTES_PER_SPAN * data["spans"]:
        raise SystemExit(f"{attributes / data['spans']:.2f} attributes per span, not 20")


def _machine() -> list[str]:
    from google.protobuf.internal import api_implementation
    packages = ("protobuf", "grpcio", "opentelemetry-proto", "opentelemetry-sdk",
                "prometheus-client", "otel-llmcost")
    return _results.machine(packages, f"protobuf backend `{api_implementation.Type()}`")


if __name__ == "__main__":
    main()
