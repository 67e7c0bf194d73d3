"""OTLP trace payloads → `SpanRecord`s: the only place the processor touches protobuf.

Every request comes from the network, so nothing in it is trusted: a payload that cannot
be parsed is refused whole (`DecodeError`: HTTP 400 / gRPC INVALID_ARGUMENT), and a span
whose ids or cost facts are out of range is refused alone and counted, for OTLP's
partial success. What reaches the engine is always summable: finite non-negative costs
and token counts below fixed bounds, weights in (0, 1e9], ids of the right length.
gzip is the transport's business, not this module's.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any, NamedTuple

from google.protobuf import json_format
from google.protobuf.message import DecodeError as _ProtobufDecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from otel_llmcost import semconv as sc
from otel_llmcost.processor.records import TOOL_OPERATION, SpanRecord

__all__ = ["MAX_COST_USD", "MAX_COUNT", "MAX_WEIGHT", "DecodeError", "Decoded", "Limits",
           "decode", "parse_json", "parse_protobuf"]

# Value bounds. With them, a sum of weighted costs over any number of spans a process
# can hold stays finite and exact enough: 1e6 USD × 1e9 weight × 1e12 spans < 1e28.
MAX_COUNT = 10**12  # tokens or retries of one span
MAX_COST_USD = 1e6  # one span's cost (no single LLM call comes near)
MAX_WEIGHT = 1e9  # sampling adjusted count: a probability ≥ 1e-9
_MAX_REASON = 200  # characters of a parser's message passed back to the client


class DecodeError(ValueError):
    """The payload cannot be read at all: refuse the whole request, do not retry it."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Hostile-input limits."""

    max_id_chars: int = 256  # conversation / customer id longer than this → span rejected
    max_spans: int = 100_000  # per request; more → DecodeError


class Decoded(NamedTuple):
    """The records of one request and what was refused (OTLP partial success)."""

    records: list[SpanRecord]
    rejected: int  # → partial_success.rejected_spans
    error: str  # "" if none rejected, else a short reason → partial_success.error_message


def parse_protobuf(body: bytes) -> ExportTraceServiceRequest:
    """An ``application/x-protobuf`` body (already un-gzipped)."""
    try:
        return ExportTraceServiceRequest.FromString(body)
    except _ProtobufDecodeError as exc:
        raise DecodeError(_reason("invalid OTLP protobuf", exc)) from None


def _reason(what: str, exc: BaseException) -> str:
    """A message for the client, cut short: parser messages can quote the payload."""
    detail = str(exc)
    return f"{what}: {detail[:_MAX_REASON]}{'…' if len(detail) > _MAX_REASON else ''}"

# Where OTLP/JSON puts ids. OTLP writes them in hex where protobuf's JSON mapping (which
# json_format follows, and which also accepts the proto field names) wants base64: left
# alone, a 32-char hex trace id base64-decodes "successfully" into 24 wrong bytes.
_RESOURCE_SPANS = ("resourceSpans", "resource_spans")
_SCOPE_SPANS = ("scopeSpans", "scope_spans")
_SPAN_IDS = ("traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id")
_LINK_IDS = ("traceId", "trace_id", "spanId", "span_id")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")


def parse_json(body: bytes) -> ExportTraceServiceRequest:
    """An ``application/json`` body (OTLP/JSON: hex ids, lowerCamelCase, unknown fields ok)."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:  # ValueError covers bad UTF-8 and int size
        raise DecodeError(_reason("invalid JSON", exc)) from None
    if not isinstance(document, dict):
        raise DecodeError("invalid OTLP/JSON: not an object")
    for scope in _children(_children([document], _RESOURCE_SPANS), _SCOPE_SPANS):
        for span in _items(scope, ("spans",)):
            _hex_to_base64(span, _SPAN_IDS)
            for link in _items(span, ("links",)):
                _hex_to_base64(link, _LINK_IDS)
    try:
        return json_format.ParseDict(document, ExportTraceServiceRequest(),
                                     ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise DecodeError(_reason("invalid OTLP/JSON", exc)) from None


def _items(obj: dict[str, Any], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """The objects in the list ``obj[key]``; anything malformed is left for json_format."""
    out: list[dict[str, Any]] = []
    for key in keys:
        value = obj.get(key)
        if isinstance(value, list):
            out.extend(item for item in value if isinstance(item, dict))
    return out


def _children(objs: list[dict[str, Any]], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    return [child for obj in objs for child in _items(obj, keys)]


def _hex_to_base64(obj: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys:
        value = obj.get(key)
        if isinstance(value, str):
            if not _HEX.fullmatch(value):
                raise DecodeError(f"invalid OTLP/JSON: {key} is not hex")
            obj[key] = base64.b64encode(binascii.unhexlify(value)).decode("ascii")


# Span attributes the engine needs; every other key is skipped after one set lookup.
_COST = sc.GEN_AI_USAGE_COST_AMOUNT
_INPUT = sc.GEN_AI_USAGE_INPUT_TOKENS
_OUTPUT = sc.GEN_AI_USAGE_OUTPUT_TOKENS
_RETRIES = sc.LLMCOST_RETRIES
_CONVERSATION = sc.GEN_AI_CONVERSATION_ID
_CUSTOMER = sc.LLMCOST_CUSTOMER_ID
_WEIGHT = sc.LLMCOST_SAMPLING_ADJUSTED_COUNT
_PRICING = sc.LLMCOST_PRICING_STATUS
_OPERATION = sc.GEN_AI_OPERATION_NAME
_MAX_TOKENS = sc.GEN_AI_REQUEST_MAX_TOKENS
_WANTED = frozenset((_COST, _INPUT, _OUTPUT, _RETRIES, _CONVERSATION, _CUSTOMER, _WEIGHT,
                     _PRICING, _OPERATION, _MAX_TOKENS))
_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)
_ERROR = Status.STATUS_CODE_ERROR


def decode(request: ExportTraceServiceRequest, limits: Limits = Limits()) -> Decoded:
    """The spans of a request as records; spans with invalid ids or values are refused."""
    total = sum(len(scope.spans) for resource in request.resource_spans
                for scope in resource.scope_spans)
    if total > limits.max_spans:
        raise DecodeError(f"too many spans: {total} > {limits.max_spans}")
    records: list[SpanRecord] = []
    reasons: dict[str, int] = {}
    append, max_id = records.append, limits.max_id_chars
    for resource in request.resource_spans:
        for scope in resource.scope_spans:
            for span in scope.spans:
                record = _record(span, max_id)
                if type(record) is str:
                    reasons[record] = reasons.get(record, 0) + 1
                else:
                    append(record)
    rejected = total - len(records)
    if not rejected:
        return Decoded(records, 0, "")
    detail = ", ".join(f"{reason} ({count})" for reason, count in reasons.items())
    return Decoded(records, rejected, f"{rejected} span(s) rejected, invalid: {detail}")


def _record(span: Span, max_id: int) -> SpanRecord | str:
    """A span's record, or the name of the first invalid field that refuses it."""
    trace_id = span.trace_id
    if len(trace_id) != 16 or trace_id == _ZERO_TRACE:
        return "trace_id"
    span_id = span.span_id
    if len(span_id) != 8 or span_id == _ZERO_SPAN:
        return "span_id"
    parent = span.parent_span_id
    if parent and len(parent) != 8:
        return "parent_span_id"
    llm = tool = False
    cost, weight = 0.0, 1.0
    input_tokens = output_tokens = retries = max_tokens = 0
    conversation = customer = None
    # One pass over the attributes, looking only at wanted keys. An unset or other-type
    # AnyValue field reads as 0 or "", which is what "missing" means for counts and ids.
    for kv in span.attributes:
        key = kv.key
        if key not in _WANTED:
            continue
        value = kv.value
        if key == _COST:
            number = _number(value)
            if number is not None:
                if not 0.0 <= number <= MAX_COST_USD:  # false for NaN too
                    return key
                cost = number
        elif key == _WEIGHT:
            number = _number(value)
            if number is not None:
                if not 0.0 < number <= MAX_WEIGHT:
                    return key
                weight = number
        elif key == _PRICING:
            llm = value.HasField("string_value")
        elif key == _OPERATION:
            tool = value.string_value == TOOL_OPERATION
        elif key == _CONVERSATION or key == _CUSTOMER:
            text = value.string_value
            if len(text) > max_id:
                return key
            if key == _CONVERSATION:
                conversation = text or None
            else:
                customer = text or None
        else:
            count = value.int_value
            if not 0 <= count <= MAX_COUNT:
                return key
            if key == _INPUT:
                input_tokens = count
            elif key == _OUTPUT:
                output_tokens = count
            elif key == _MAX_TOKENS:
                max_tokens = count
            else:
                retries = count
    start, end = span.start_time_unix_nano, span.end_time_unix_nano
    # Positional: keywords cost 5 % of decode; the round-trip tests catch a reordering.
    return SpanRecord(trace_id, span_id, parent, start, end if end > start else start,
                      span.status.code == _ERROR, llm, tool, cost, input_tokens,
                      output_tokens, retries, conversation, customer, weight, max_tokens)


def _number(value: AnyValue) -> float | None:
    """A double or int attribute as a float (senders differ); None for any other type."""
    kind = value.WhichOneof("value")
    if kind == "double_value":
        return value.double_value
    if kind == "int_value":
        return float(value.int_value)
    return None
