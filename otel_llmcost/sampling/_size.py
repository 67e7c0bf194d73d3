"""Estimated OTLP/protobuf size of a span, without encoding it.

Why estimate: encoding a span to measure it costs as much as exporting it, and this runs
for every exported span. Protobuf's layout is simple enough to add up in one pass: per
attribute a KeyValue (tag and length) holding the key (tag, length, bytes) and an AnyValue
(tag, length, value). Length prefixes are taken as one byte up to 127 and two above, so
the estimate is exact for short values and within a few bytes for long ones. Resource
and scope are sent once per batch and not counted. A test checks against the encoder.
"""

from __future__ import annotations

from typing import Any, Mapping

# trace_id (18) + span_id (10) + parent_span_id (10) + kind (2) + start/end (18) +
# flags (5) + status (~4) + the Span message's own tag and length (~4).
_SPAN_FIXED = 71


def _str(value: str) -> int:
    n = len(value) if value.isascii() else len(value.encode("utf-8", "replace"))
    return n + (1 if n < 128 else 2 if n < 16384 else 3)


def attributes_size(attributes: Mapping[str, Any] | None) -> int:
    """Bytes of repeated KeyValue."""
    total = 0
    for key, value in (attributes or {}).items():
        kind = type(value)
        if kind is str:
            size = _str(value) + 1
        elif kind is int:
            size = 1 + (1 if 0 <= value < 128 else (value.bit_length() + 6) // 7
                        if value > 0 else 10)
        elif kind is float:
            size = 9
        elif kind is bool:
            size = 2
        elif kind is tuple or kind is list:
            size = sum(_str(str(x)) + 3 for x in value) + 2
        else:
            size = _str(str(value)) + 1
        size += 2 if size < 128 else 3  # AnyValue's tag and length
        size += len(key) + 2  # the key's tag and length (keys are short and ASCII)
        total += size + (2 if size < 128 else 3)  # KeyValue's tag and length
    return total


def _attributes(span: Any) -> Mapping[str, Any] | None:
    """The span's attribute dict itself where the SDK keeps one: iterating the read-only
    proxy that ``span.attributes`` returns costs twice as much."""
    inner = getattr(getattr(span, "_attributes", None), "_dict", None)
    return inner if isinstance(inner, dict) else span.attributes


def span_size(span: Any) -> int:
    """Estimated bytes of ``span`` in an OTLP ExportTraceServiceRequest."""
    total = _SPAN_FIXED + _str(span.name) + 1 + attributes_size(_attributes(span))
    state = span.context.trace_state
    if state:
        total += _str(state.to_header()) + 1
    for event in span.events:
        total += 14 + _str(event.name) + attributes_size(event.attributes)
    for link in span.links:
        total += 32 + attributes_size(link.attributes)
    description = span.status.description
    if description:
        total += _str(description) + 1
    return total
