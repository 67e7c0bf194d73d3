"""Prompt and completion text, when the policy allows it, as GenAI semantic-convention JSON.

Providers describe content as plain lists (`Message`, `Part`); this module cuts every
attribute to the policy's character budget and serialises it. Content is never built
unless capture is on. In ``kept`` mode it is handed to the tail stage's sink instead of
the span, and reaches the exporter only if a tail rule keeps the trace.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Mapping

from opentelemetry.trace import SpanContext

from otel_llmcost import semconv as sc

Part = dict[str, Any]  # {"type": "text", "content": "..."} or another semconv part
Message = dict[str, Any]  # {"role": ..., "parts": [Part, ...], "finish_reason"?: ...}
Sink = Callable[[SpanContext, Mapping[str, str]], None]

_sink: Sink | None = None


def set_sink(sink: Sink | None) -> None:
    """Where ``kept``-mode content goes (the tail stage's stash)."""
    global _sink  # noqa: PLW0603 - one tail stage per process
    _sink = sink


def get_sink() -> Sink | None:
    return _sink


def text(content: str) -> Part:
    return {"type": "text", "content": content}


def attributes(system: list[Part] | None, inputs: list[Message] | None,
               outputs: list[Message] | None, max_chars: int) -> dict[str, str]:
    """The content attributes, each carrying at most ``max_chars`` characters of text."""
    found = {}
    for name, value in ((sc.GEN_AI_SYSTEM_INSTRUCTIONS, system),
                        (sc.GEN_AI_INPUT_MESSAGES, inputs),
                        (sc.GEN_AI_OUTPUT_MESSAGES, outputs)):
        if value:
            budget = [max_chars]
            found[name] = json.dumps(_cut(value, budget), ensure_ascii=False,
                                     separators=(",", ":"), default=str)
    return found


def _cut(value: Any, budget: list[int]) -> Any:
    """A copy whose text fields ("content" of text parts, tool arguments) share ``budget``."""
    if isinstance(value, list):
        return [_cut(item, budget) for item in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        if isinstance(item, str) and key in ("content", "arguments", "response"):
            item = item[:max(0, budget[0])]
            budget[0] -= len(item)
        elif isinstance(item, (list, dict)):
            item = _cut(item, budget)
        out[key] = item
    return out
