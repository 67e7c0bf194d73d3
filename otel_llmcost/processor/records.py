"""`SpanRecord`: the few facts of a span the rollup engine needs, read once from OTLP.

The engine never sees protobuf: decoding is here, so that the engine can be tested with
hand-built records and the decoder fuzzed on its own.
"""

from __future__ import annotations

from typing import NamedTuple

TOOL_OPERATION = "execute_tool"


class SpanRecord(NamedTuple):
    """One span, reduced. Ids are raw bytes; times are Unix nanoseconds."""

    trace_id: bytes
    span_id: bytes
    parent_span_id: bytes  # b"" for a root (or a span whose parent is unknown)
    start_ns: int
    end_ns: int
    error: bool = False
    llm: bool = False  # an LLM call priced by otel-llmcost (it has llmcost.pricing.status)
    tool: bool = False  # gen_ai.operation.name == execute_tool
    cost: float = 0.0  # USD; 0 when unknown
    input_tokens: int = 0
    output_tokens: int = 0
    retries: int = 0
    conversation_id: str | None = None
    customer_id: str | None = None
    weight: float = 1.0  # llmcost.sampling.adjusted_count
    max_tokens: int = 0  # gen_ai.request.max_tokens; 0 when not set


# What an LLM span adds to the spend rollups (customer windows, anomaly detection), made
# once per span by the engine: customer id, USD × sampling weight, end time, trace id.
Spend = tuple[str | None, float, int, bytes]
