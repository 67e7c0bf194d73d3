"""Estimated OTLP/protobuf size of a span, without encoding it.

Why estimate: encoding a span to measure it costs as much as exporting it. Protobuf's
layout is simple enough to add up: a tag and a length prefix per field, varints for
integers, 8 bytes per double or fixed64. Resource and scope are sent once per batch and
not counted. A test checks the estimate against the real encoder.
"""

from __future__ import annotations

from typing import Any, Mapping

# trace_id (18) + span_id (10) + parent_span_id (10) + kind (2) + start/end (18) +
# flags (5) + status (~4) + the Span message's own tag and length (~4).
_SPAN_FIXED = 71


def _varint(n: int) -> int:
    return 10 if n < 0 else max(1, (n.bit_length() + 6) // 7)


def _text(s: str) -> int:
    n = len(s) if s.isascii() else len(s.encode("utf-8", "replace"))
    return n + _varint(n) + 1


def _value(v: Any) -> int:
    """Bytes of an AnyValue, its own tag and length included."""
    if isinstance(v, str):
        inner = _text(v)
    elif isinstance(v, bool):
        inner = 2
    elif isinstance(v, int):
        inner = 1 + _varint(v)
    elif isinstance(v, float):
        inner = 9
    elif isinstance(v, (tuple, list)):
        body = sum(_value(x) for x in v)
        inner = body + _varint(body) + 1  # ArrayValue
    else:
        inner = _text(str(v))
    return inner + _varint(inner) + 1


def attributes_size(attributes: Mapping[str, Any] | None) -> int:
    """Bytes of repeated KeyValue."""
    total = 0
    for key, value in (attributes or {}).items():
        body = _text(key) + _value(value)
        total += body + _varint(body) + 1
    return total


def span_size(span: Any) -> int:
    """Estimated bytes of ``span`` in an OTLP ExportTraceServiceRequest."""
    total = _SPAN_FIXED + _text(span.name) + attributes_size(span.attributes)
    state = span.context.trace_state
    if state:
        total += _text(state.to_header())
    for event in span.events:
        body = 9 + _text(event.name) + attributes_size(event.attributes)
        total += body + _varint(body) + 1
    for link in span.links:
        body = 28 + attributes_size(link.attributes)
        total += body + _varint(body) + 1
    description = span.status.description
    if description:
        total += _text(description)
    return total
