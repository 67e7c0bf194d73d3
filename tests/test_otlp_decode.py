"""OTLP payloads → `SpanRecord`s: real SDK round trips, hostile spans, and a fuzz test.

Payloads are made by the real OpenTelemetry SDK and its OTLP encoder, so the decoder is
checked against what senders actually put on the wire, not against our idea of it.
"""

from __future__ import annotations

import base64
import copy
import json
import math
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from otel_llmcost import semconv as sc
from otel_llmcost.processor.engine import Config, Engine
from otel_llmcost.processor.otlp import (
    MAX_COST_USD, MAX_COUNT, MAX_WEIGHT, DecodeError, Decoded, Limits, decode, parse_json,
    parse_protobuf)
from otel_llmcost.processor.records import TOOL_OPERATION, SpanRecord

LLM_ATTRIBUTES = {
    sc.GEN_AI_OPERATION_NAME: sc.OP_CHAT,
    sc.GEN_AI_PROVIDER_NAME: sc.PROVIDER_OPENAI,
    sc.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
    sc.GEN_AI_REQUEST_MAX_TOKENS: 1024,
    sc.GEN_AI_USAGE_INPUT_TOKENS: 1200,
    sc.GEN_AI_USAGE_OUTPUT_TOKENS: 300,
    sc.GEN_AI_USAGE_COST_AMOUNT: 0.00042,
    sc.GEN_AI_USAGE_COST_CURRENCY: sc.CURRENCY_USD,
    sc.LLMCOST_PRICING_STATUS: sc.STATUS_EXACT,
    sc.LLMCOST_RETRIES: 2,
    sc.GEN_AI_CONVERSATION_ID: "conv-1",
    sc.LLMCOST_CUSTOMER_ID: "acme",
    sc.LLMCOST_SAMPLING_ADJUSTED_COUNT: 4.0,
}


def sdk_spans(build: Callable[[Any], None]) -> list[ReadableSpan]:
    """Spans that ``build(tracer)`` made with the real SDK, in the order they ended."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    build(provider.get_tracer("test"))
    provider.shutdown()
    return list(exporter.get_finished_spans())


def agent_trace(tracer: Any) -> None:
    """An agent turn: LLM call, an SDK's own child span, a tool call, a failed LLM call."""
    with tracer.start_as_current_span("invoke_agent"):
        with tracer.start_as_current_span("chat gpt-4o-mini", attributes=LLM_ATTRIBUTES):
            # anthropic 2.x style: repeats the token counts but is not ours to count.
            with tracer.start_as_current_span("anthropic.messages", attributes={
                    sc.GEN_AI_USAGE_INPUT_TOKENS: 1200, sc.GEN_AI_USAGE_OUTPUT_TOKENS: 300}):
                pass
        with tracer.start_as_current_span("execute_tool search", attributes={
                sc.GEN_AI_OPERATION_NAME: TOOL_OPERATION}):
            pass
        with tracer.start_as_current_span("chat failed", attributes={
                sc.LLMCOST_PRICING_STATUS: sc.STATUS_UNKNOWN, sc.LLMCOST_CUSTOMER_ID: "acme",
                sc.GEN_AI_USAGE_COST_AMOUNT: 0}) as failed:
            failed.set_status(StatusCode.ERROR)


def expected(span: ReadableSpan) -> SpanRecord:
    """What decoding should give for an SDK span, from the SDK's own view of it."""
    a = span.attributes or {}
    parent = span.parent.span_id.to_bytes(8, "big") if span.parent else b""
    return SpanRecord(
        span.context.trace_id.to_bytes(16, "big"), span.context.span_id.to_bytes(8, "big"),
        parent, span.start_time, span.end_time,
        error=span.status.status_code is StatusCode.ERROR,
        llm=sc.LLMCOST_PRICING_STATUS in a,
        tool=a.get(sc.GEN_AI_OPERATION_NAME) == TOOL_OPERATION,
        cost=float(a.get(sc.GEN_AI_USAGE_COST_AMOUNT, 0.0)),
        input_tokens=a.get(sc.GEN_AI_USAGE_INPUT_TOKENS, 0),
        output_tokens=a.get(sc.GEN_AI_USAGE_OUTPUT_TOKENS, 0),
        retries=a.get(sc.LLMCOST_RETRIES, 0),
        conversation_id=a.get(sc.GEN_AI_CONVERSATION_ID),
        customer_id=a.get(sc.LLMCOST_CUSTOMER_ID),
        weight=a.get(sc.LLMCOST_SAMPLING_ADJUSTED_COUNT, 1.0),
        max_tokens=a.get(sc.GEN_AI_REQUEST_MAX_TOKENS, 0))


def to_otlp_json(request: ExportTraceServiceRequest) -> bytes:
    """OTLP/JSON as the spec wants it: protobuf's JSON mapping, but hex ids, int enums."""
    document = json.loads(json_format.MessageToJson(request, use_integers_for_enums=True))
    for span in spans_of(document):
        for obj in (span, *span.get("links", ())):
            for key in ("traceId", "spanId", "parentSpanId"):
                if key in obj:
                    obj[key] = base64.b64decode(obj[key]).hex()
    return json.dumps(document).encode()


def spans_of(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for resource in document.get("resourceSpans", ()):
        for scope in resource.get("scopeSpans", ()):
            yield from scope.get("spans", ())


@pytest.fixture(scope="module")
def trace_spans() -> list[ReadableSpan]:
    return sdk_spans(agent_trace)


def test_protobuf_round_trip_of_sdk_spans(trace_spans):
    body = encode_spans(trace_spans).SerializeToString()
    result = decode(parse_protobuf(body))
    assert result == Decoded([expected(s) for s in trace_spans], 0, "")
    by_name = {s.name: r for s, r in zip(trace_spans, result.records, strict=True)}
    call = by_name["chat gpt-4o-mini"]
    assert call.llm and call.cost == 0.00042 and call.weight == 4.0 and call.retries == 2
    assert (call.conversation_id, call.customer_id) == ("conv-1", "acme")
    sdk_child = by_name["anthropic.messages"]
    assert not sdk_child.llm and sdk_child.input_tokens == 1200  # decoded, never counted
    assert by_name["execute_tool search"].tool
    assert by_name["chat failed"].error and by_name["chat failed"].llm
    assert by_name["invoke_agent"].parent_span_id == b""
    assert call.parent_span_id == by_name["invoke_agent"].span_id


def test_decoded_sdk_spans_roll_up_without_double_counting(trace_spans):
    engine = Engine(Config(trace_wait_s=1))
    engine.ingest(decode(parse_protobuf(encode_spans(trace_spans).SerializeToString()))
                  .records, now_ns=0)
    engine.advance(2 * 10**9)
    histograms = engine.metrics.histograms
    weight = LLM_ATTRIBUTES[sc.LLMCOST_SAMPLING_ADJUSTED_COUNT]  # the trace stands for 4
    assert histograms[(sc.M_TRACE_LLM_CALLS, ())].count == weight
    assert histograms[(sc.M_TRACE_LLM_CALLS, ())].sum == 2 * weight  # not the SDK's child
    assert histograms[(sc.M_TRACE_TOOL_CALLS, ())].sum == 1 * weight
    assert histograms[(sc.M_TRACE_COST, ())].sum == pytest.approx(0.00042 * weight)


def test_json_round_trip_decodes_hex_ids_to_the_right_bytes(trace_spans):
    request = encode_spans(trace_spans)
    body = to_otlp_json(request)
    first = next(spans_of(json.loads(body)))
    assert len(first["traceId"]) == 32 and len(first["spanId"]) == 16
    assert decode(parse_json(body)) == decode(request)
    record = decode(parse_json(body)).records[0]
    assert record.trace_id == bytes.fromhex(first["traceId"])
    assert record.trace_id == trace_spans[0].context.trace_id.to_bytes(16, "big")
    # The trap parse_json avoids: protobuf's own JSON parser reads hex as base64.
    naive = json_format.Parse(body, ExportTraceServiceRequest(), ignore_unknown_fields=True)
    assert len(naive.resource_spans[0].scope_spans[0].spans[0].trace_id) == 24


def test_json_accepts_what_the_otlp_spec_allows(trace_spans):
    document = json.loads(to_otlp_json(encode_spans(trace_spans)))
    document["futureField"] = {"anything": [1, 2]}
    for span in spans_of(document):
        span["traceId"] = span["traceId"].upper()
        span["startTimeUnixNano"] = int(span["startTimeUnixNano"])  # number, not string
        span["unknownSpanField"] = "ignored"
        span.setdefault("status", {})["code"] = 2 if span["name"] == "chat failed" else 0
    for attribute in next(spans_of(document))["attributes"]:
        if "intValue" in attribute["value"]:
            attribute["value"]["intValue"] = int(attribute["value"]["intValue"])
    records = decode(parse_json(json.dumps(document).encode())).records
    assert records == [expected(s) for s in trace_spans]


def test_json_ids_in_links_and_proto_field_names_are_hex_too():
    trace_id, span_id = "0102030405060708090a0b0c0d0e0f10", "a1a2a3a4a5a6a7a8"
    document = {"resource_spans": [{"scope_spans": [{"spans": [
        {"trace_id": trace_id, "span_id": span_id, "parent_span_id": "",
         "links": [{"traceId": trace_id, "spanId": span_id}]}]}]}]}
    request = parse_json(json.dumps(document).encode())
    span = request.resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id == bytes.fromhex(trace_id) == span.links[0].trace_id
    assert span.span_id == bytes.fromhex(span_id) == span.links[0].span_id
    assert decode(request).records[0].parent_span_id == b""


def test_a_json_hex_id_of_the_wrong_length_refuses_its_span_not_the_request():
    spans = [{"traceId": "ab" * n, "spanId": "a1a2a3a4a5a6a7a8"} for n in (16, 15, 24, 0)]
    body = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}).encode()
    result = decode(parse_json(body))
    assert [r.trace_id for r in result.records] == [b"\xab" * 16]
    assert result.error == "3 span(s) rejected, invalid: trace_id (3)"


@pytest.mark.parametrize("body", [
    b"", b"not json", b"[1, 2]", b'"text"', b"\xff\xfe\x00garbage",
    b'{"resourceSpans": 5}',
    b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "xyz"}]}]}]}',
    b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"spanId": "abc"}]}]}]}',  # odd length
    b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"spanId": "a1 b2"}]}]}]}',
    b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": 7}]}]}]}',
    b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": -1}]}]}]}',
    b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "1e400"}]}]}]}',
    b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"droppedAttributesCount": 1.5}]}]}]}',
    b'{"a": ' + b"9" * 5000 + b"}",  # past Python's int-string limit
    b"[" * 100_000 + b"]" * 100_000,
    b'{"resourceSpans": [{"resource": {"attributes": [{"key": "k", "value": '
    + b'{"arrayValue": {"values": [' * 200 + b"{}" + b"]}}" * 200 + b"}]}}]}",
])
def test_json_that_cannot_be_read_is_a_decode_error(body):
    with pytest.raises(DecodeError):
        parse_json(body)


@pytest.mark.parametrize("body", [b"\xff" * 10, b"\x0a\xff\xff\xff\xff\x0f", b"\x0a\x05abc"])
def test_protobuf_that_cannot_be_read_is_a_decode_error(body):
    with pytest.raises(DecodeError):
        parse_protobuf(body)


def test_empty_payloads_decode_to_nothing():
    assert decode(parse_protobuf(b"")) == Decoded([], 0, "")
    assert decode(parse_json(b"{}")) == Decoded([], 0, "")


# --- Hostile spans: refused one by one, the rest of the request still counts ---------------

TRACE_ID, SPAN_ID = bytes(range(1, 17)), bytes(range(1, 9))


def span_of(*, trace_id: bytes = TRACE_ID, span_id: bytes = SPAN_ID, parent: bytes = b"",
            start: int = 1_000, end: int = 2_000, **attributes: Any) -> Span:
    """A span with attributes given as ``name=value`` (dots as "__", typed by Python type)."""
    span = Span(trace_id=trace_id, span_id=span_id, parent_span_id=parent,
                start_time_unix_nano=start, end_time_unix_nano=end)
    for key, value in attributes.items():
        kv = span.attributes.add(key=key.replace("__", "."))
        set_value(kv.value, value)
    return span


def set_value(target: AnyValue, value: Any) -> None:
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        target.int_value = value
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, str):
        target.string_value = value
    elif isinstance(value, bytes):
        target.bytes_value = value
    elif isinstance(value, list):
        for item in value:
            set_value(target.array_value.values.add(), item)


def request_of(*spans: Span) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.extend(spans)
    return request


def attr(name: str) -> str:
    """A semconv attribute name as a `span_of` keyword."""
    return name.replace(".", "__")


COST, WEIGHT = attr(sc.GEN_AI_USAGE_COST_AMOUNT), attr(sc.LLMCOST_SAMPLING_ADJUSTED_COUNT)
INPUT, OUTPUT = attr(sc.GEN_AI_USAGE_INPUT_TOKENS), attr(sc.GEN_AI_USAGE_OUTPUT_TOKENS)
RETRIES, PRICING = attr(sc.LLMCOST_RETRIES), attr(sc.LLMCOST_PRICING_STATUS)
CONVERSATION, CUSTOMER = attr(sc.GEN_AI_CONVERSATION_ID), attr(sc.LLMCOST_CUSTOMER_ID)
OPERATION = attr(sc.GEN_AI_OPERATION_NAME)

HOSTILE = [
    ("trace_id", {"trace_id": bytes(16)}),
    ("trace_id", {"trace_id": b""}),
    ("trace_id", {"trace_id": bytes(range(1, 16))}),
    ("trace_id", {"trace_id": bytes(range(1, 18))}),
    ("trace_id", {"trace_id": bytes(range(1, 25))}),  # what a base64-read hex id gives
    ("span_id", {"span_id": bytes(8)}),
    ("span_id", {"span_id": b""}),
    ("span_id", {"span_id": b"\x01" * 7}),
    ("span_id", {"span_id": b"\x01" * 16}),
    ("parent_span_id", {"parent": b"\x01" * 7}),
    ("parent_span_id", {"parent": b"\x01" * 16}),
    *[(sc.GEN_AI_USAGE_COST_AMOUNT, {COST: v}) for v in (
        -0.01, -1, math.nan, math.inf, -math.inf, MAX_COST_USD * 2, 2**63 - 1, 1e308)],
    *[(sc.LLMCOST_SAMPLING_ADJUSTED_COUNT, {WEIGHT: v}) for v in (
        0.0, 0, -1.0, -3, math.nan, math.inf, -math.inf, MAX_WEIGHT * 2, 2**63 - 1)],
    *[(key, {attr(key): v}) for key in (
        sc.GEN_AI_USAGE_INPUT_TOKENS, sc.GEN_AI_USAGE_OUTPUT_TOKENS, sc.LLMCOST_RETRIES,
        sc.GEN_AI_REQUEST_MAX_TOKENS)
      for v in (-1, -(2**63), MAX_COUNT + 1, 2**63 - 1)],
    *[(key, {attr(key): "x" * 257}) for key in (
        sc.GEN_AI_CONVERSATION_ID, sc.LLMCOST_CUSTOMER_ID)],
]


@pytest.mark.parametrize("reason, fields", HOSTILE)
def test_a_hostile_span_is_rejected_alone_with_its_reason(reason, fields):
    good = span_of(**{COST: 0.5, PRICING: "exact"})
    bad = span_of(**{PRICING: "exact", **fields})
    result = decode(request_of(good, bad, good))
    assert result.records == [decode(request_of(good)).records[0]] * 2
    assert result.rejected == 1
    assert result.error == f"1 span(s) rejected, invalid: {reason} (1)"


def test_values_at_the_limits_are_accepted():
    span = span_of(**{COST: MAX_COST_USD, WEIGHT: MAX_WEIGHT, INPUT: MAX_COUNT,
                      OUTPUT: 0, RETRIES: MAX_COUNT, CONVERSATION: "c" * 256,
                      CUSTOMER: "é" * 256}, parent=b"\x02" * 8)
    [record] = decode(request_of(span)).records
    assert (record.cost, record.weight) == (MAX_COST_USD, MAX_WEIGHT)
    assert (record.input_tokens, record.retries) == (MAX_COUNT, MAX_COUNT)
    assert record.conversation_id == "c" * 256 and record.customer_id == "é" * 256
    assert decode(request_of(span), Limits(max_id_chars=255)).rejected == 1


def test_cost_and_weight_may_be_ints_and_missing_values_take_defaults():
    [priced, bare] = decode(request_of(span_of(**{COST: 3, WEIGHT: 8}), span_of())).records
    assert (priced.cost, priced.weight) == (3.0, 8.0)
    assert type(priced.cost) is float and type(priced.weight) is float
    assert bare == SpanRecord(TRACE_ID, SPAN_ID, b"", 1_000, 2_000)


@pytest.mark.parametrize("fields", [
    {COST: "0.5"}, {COST: True}, {COST: [0.5]}, {WEIGHT: "4"}, {WEIGHT: b"\x04"},
    {INPUT: 12.0}, {INPUT: "12"}, {OUTPUT: [12]}, {RETRIES: 1.5}, {RETRIES: False},
    {CONVERSATION: 42}, {CUSTOMER: b"acme"}, {CUSTOMER: ["acme"]}, {PRICING: 1},
    {OPERATION: 7}, {CONVERSATION: ""}, {CUSTOMER: ""},
])
def test_values_of_the_wrong_type_are_ignored(fields):
    result = decode(request_of(span_of(**fields)))
    assert result == Decoded([SpanRecord(TRACE_ID, SPAN_ID, b"", 1_000, 2_000)], 0, "")


def test_an_empty_value_is_missing_but_the_pricing_status_marks_an_llm_span():
    span = span_of(**{PRICING: sc.STATUS_ESTIMATED, OPERATION: TOOL_OPERATION})
    span.attributes.add(key=sc.GEN_AI_USAGE_COST_AMOUNT)  # an AnyValue with nothing set
    [record] = decode(request_of(span)).records
    assert record.llm and record.tool and record.cost == 0.0


def test_an_end_before_the_start_is_clamped_and_error_status_is_kept():
    span = span_of(start=5_000, end=4_000)
    span.status.code = Status.STATUS_CODE_ERROR
    [record] = decode(request_of(span)).records
    assert (record.start_ns, record.end_ns, record.error) == (5_000, 5_000, True)


def test_partial_rejection_counts_each_reason_in_order_seen():
    spans = [span_of(trace_id=bytes(16)), span_of(), span_of(**{COST: -1.0}),
             span_of(trace_id=b"short"), span_of(**{COST: math.nan})]
    request = request_of(*spans[:3])
    request.resource_spans.add().scope_spans.add().spans.extend(spans[3:])
    result = decode(request)
    assert len(result.records) == 1 and result.rejected == 4
    assert result.error == ("4 span(s) rejected, invalid: trace_id (2), "
                            f"{sc.GEN_AI_USAGE_COST_AMOUNT} (2)")


def test_more_spans_than_the_limit_is_a_decode_error():
    request = request_of(*[span_of()] * 3)
    assert len(decode(request, Limits(max_spans=3)).records) == 3
    with pytest.raises(DecodeError, match="too many spans"):
        decode(request, Limits(max_spans=2))


# --- Fuzz: hostile bytes and structures only ever give DecodeError or valid records -------

def check_invariants(result: Decoded, request: ExportTraceServiceRequest,
                     limits: Limits) -> None:
    total = sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
    assert len(result.records) + result.rejected == total
    assert (result.rejected > 0) == (result.error != "")
    for r in result.records:
        assert type(r) is SpanRecord
        assert len(r.trace_id) == 16 and any(r.trace_id)
        assert len(r.span_id) == 8 and any(r.span_id)
        assert len(r.parent_span_id) in (0, 8)
        assert 0 <= r.start_ns <= r.end_ns
        assert type(r.cost) is float and 0.0 <= r.cost <= MAX_COST_USD
        assert type(r.weight) is float and 0.0 < r.weight <= MAX_WEIGHT
        for count in (r.input_tokens, r.output_tokens, r.retries, r.max_tokens):
            assert type(count) is int and 0 <= count <= MAX_COUNT
        for text in (r.conversation_id, r.customer_id):
            assert text is None or (type(text) is str and 0 < len(text) <= limits.max_id_chars)
        assert {type(r.error), type(r.llm), type(r.tool)} == {bool}


FUZZ_LIMITS = Limits(max_id_chars=16, max_spans=64)


def survives(parse: Callable[[bytes], ExportTraceServiceRequest], body: bytes,
             limits: Limits = FUZZ_LIMITS) -> bool:
    """Parse and decode ``body``; True if it decoded. Any other exception fails the test."""
    try:
        request = parse(body)
        result = decode(request, limits)
    except DecodeError:
        return False
    check_invariants(result, request, limits)
    return True


def hostile_value(rng: random.Random) -> Any:
    """Extreme and wrong-typed JSON values."""
    return rng.choice([
        -1, 0, 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30, 1e308, -1e308, 1.5, -0.0,
        float("nan"), float("inf"), "", "x" * 300, "NaN", "Infinity", "-1", "1e999",
        "18446744073709551616", "00" * 8, "00" * 16, "ff" * 16, "zz", "AAAA", None, True,
        [], {}, [1, "a", None], {"intValue": "5"}, {"doubleValue": "NaN"},
        {"stringValue": 5}, {"arrayValue": {"values": [{"intValue": -1}]}},
        {"kvlistValue": {"values": [{"key": "k", "value": {}}]}},
    ])


def deep(rng: random.Random) -> str:
    """JSON text nested past every parser's depth limit, or just under it."""
    depth = rng.choice([50, 99, 101, 150, 1000, 100_000])
    if rng.random() < 0.5:
        return '{"arrayValue": {"values": [' * depth + '{"intValue": "1"}' + "]}}" * depth
    return "[" * depth + "]" * depth


DEEP = "@deep@"  # stands for deep() text until the document is serialised


def nodes(value: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    yield path, value
    if isinstance(value, dict):
        for key, child in value.items():
            yield from nodes(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from nodes(child, (*path, index))


def mutate_json(document: dict[str, Any], rng: random.Random) -> bytes:
    """A structural mutation of an OTLP/JSON document, serialised (NaN/Infinity allowed)."""
    document = copy.deepcopy(document)
    for _ in range(rng.randint(1, 4)):
        path, _ = rng.choice(list(nodes(document)))
        if not path:
            continue
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        action = rng.random()
        if action < 0.5:
            parent[path[-1]] = hostile_value(rng)
        elif action < 0.6:
            parent[path[-1]] = DEEP
        elif action < 0.8 and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[rng.choice(["traceId", "spanId", "parentSpanId", "links", "attributes",
                               "status", "startTimeUnixNano", "x"])] = hostile_value(rng)
        else:
            parent.append(copy.deepcopy(rng.choice(parent)))
    text = json.dumps(document).replace(json.dumps(DEEP), deep(rng))
    if rng.random() < 0.2:  # and sometimes raw text damage on top
        cut = rng.randrange(len(text))
        text = text[:cut] + rng.choice(["", "}", "]", ",", '"', "\\u00", "\x00"]) + text[cut:]
    return text.encode()


def mutate_bytes(body: bytes, rng: random.Random) -> bytes:
    data = bytearray(body)
    for _ in range(rng.randint(1, 8)):
        action = rng.random()
        if action < 0.5 and data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif action < 0.65:
            del data[rng.randrange(len(data) + 1):]
        elif action < 0.85:
            at = rng.randrange(len(data) + 1)
            data[at:at] = rng.randbytes(rng.randint(1, 16))
        elif data:
            at = rng.randrange(len(data))
            data[at] = rng.choice([0x00, 0x7F, 0x80, 0xFF])
    return bytes(data)


def random_value(rng: random.Random, target: AnyValue) -> None:
    """A random AnyValue: any type, extreme numbers, long or empty strings, or unset."""
    kind = rng.randrange(7)
    if kind == 0:
        target.int_value = rng.choice([-(2**63), -1, 0, 1, 7, MAX_COUNT, MAX_COUNT + 1,
                                       2**63 - 1])
    elif kind == 1:
        target.double_value = rng.choice([-1.0, -0.0, 0.0, 1e-300, 0.5, 1e9, 1e9 + 1, 1e308,
                                          math.inf, -math.inf, math.nan, MAX_COST_USD])
    elif kind == 2:
        target.string_value = rng.choice(["", "x", "execute_tool", "é" * 16, "y" * 17])
    elif kind == 3:
        target.bool_value = rng.random() < 0.5
    elif kind == 4:
        target.bytes_value = rng.randbytes(rng.randint(0, 20))
    elif kind == 5:
        random_value(rng, target.array_value.values.add())


WANTED_KEYS = [sc.GEN_AI_USAGE_COST_AMOUNT, sc.LLMCOST_SAMPLING_ADJUSTED_COUNT,
               sc.GEN_AI_USAGE_INPUT_TOKENS, sc.GEN_AI_USAGE_OUTPUT_TOKENS, sc.LLMCOST_RETRIES,
               sc.GEN_AI_CONVERSATION_ID, sc.LLMCOST_CUSTOMER_ID, sc.LLMCOST_PRICING_STATUS,
               sc.GEN_AI_OPERATION_NAME, "other.key", ""]


def random_request(rng: random.Random) -> ExportTraceServiceRequest:
    """Well-formed protobuf with hostile contents: odd ids, times, typed values, dupes."""
    request = ExportTraceServiceRequest()
    for _ in range(rng.randint(0, 3)):
        scope = request.resource_spans.add().scope_spans.add()
        for _ in range(rng.randint(0, 8)):
            span = scope.spans.add(
                trace_id=rng.choice([TRACE_ID, bytes(16), rng.randbytes(rng.randint(0, 20))]),
                span_id=rng.choice([SPAN_ID, bytes(8), rng.randbytes(rng.randint(0, 10))]),
                parent_span_id=rng.choice([b"", SPAN_ID, rng.randbytes(rng.randint(0, 10))]),
                start_time_unix_nano=rng.choice([0, 1, 2**64 - 1, rng.getrandbits(64)]),
                end_time_unix_nano=rng.choice([0, 1, 2**64 - 1, rng.getrandbits(64)]))
            span.status.code = rng.randrange(4)
            for _ in range(rng.randint(0, 12)):  # keys may repeat: the last one wins
                random_value(rng, span.attributes.add(key=rng.choice(WANTED_KEYS)).value)
    return request


def test_fuzz_mutated_protobuf_payloads(trace_spans):
    rng = random.Random(1)
    body = encode_spans(trace_spans).SerializeToString()
    decoded = sum(survives(parse_protobuf, mutate_bytes(body, rng)) for _ in range(3000))
    assert 0 < decoded < 3000  # both paths were exercised
    decoded = sum(survives(parse_protobuf, rng.randbytes(rng.randint(0, 200)))
                  for _ in range(1000))
    assert decoded < 1000


def test_fuzz_well_formed_protobuf_with_hostile_contents():
    rng = random.Random(2)
    rejected = 0
    for _ in range(2000):
        body = random_request(rng).SerializeToString()
        assert survives(parse_protobuf, body)  # never a whole-request failure…
        rejected += decode(parse_protobuf(body)).rejected
    assert rejected  # …but plenty of refused spans


def test_fuzz_mutated_json_payloads(trace_spans):
    rng = random.Random(3)
    document = json.loads(to_otlp_json(encode_spans(trace_spans)))
    outcomes = [survives(parse_json, mutate_json(document, rng)) for _ in range(2000)]
    assert 0 < sum(outcomes) < len(outcomes)
    body = to_otlp_json(encode_spans(trace_spans))
    for _ in range(1000):
        survives(parse_json, mutate_bytes(body, rng))
    for _ in range(500):
        text = json.dumps(hostile_value(rng)) if rng.random() < 0.5 else deep(rng)
        survives(parse_json, text.encode())
