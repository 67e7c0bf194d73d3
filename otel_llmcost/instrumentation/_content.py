"""Prompt and completion text, when the policy allows it, as GenAI semantic-convention JSON.

Providers describe content as plain lists (`Message`, `Part`); this module cuts every
attribute to the policy's character budget and serialises it. Content is never built
unless capture is on. In ``kept`` mode the tail stage's sink gets a function that builds
it, called only if a tail rule keeps the trace: most traces are dropped, and building
content costs tens of microseconds per call.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Mapping

from opentelemetry.trace import SpanContext

from otel_llmcost import semconv as sc

Part = dict[str, Any]  # {"type": "text", "content": "..."} or another semconv part
Message = dict[str, Any]  # {"role": ..., "parts": [Part, ...], "finish_reason"?: ...}
Build = Callable[[], Mapping[str, str]]
Sink = Callable[[SpanContext, Build], None]

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
    """The content attributes, each carrying at most ``max_chars`` characters of text.

    Parts past the budget are left out, so the JSON stays valid and short.
    """
    found = {}
    if system:
        found[sc.GEN_AI_SYSTEM_INSTRUCTIONS] = _json(_cut_parts(system, [max_chars]))
    for name, messages in ((sc.GEN_AI_INPUT_MESSAGES, inputs),
                           (sc.GEN_AI_OUTPUT_MESSAGES, outputs)):
        if messages:
            budget = [max_chars]
            cut = []
            for message in messages:
                if budget[0] <= 0:
                    break
                cut.append({**message, "parts": _cut_parts(message.get("parts") or (), budget)})
            found[name] = _json(cut)
    return found


_TEXT_FIELDS = ("content", "arguments", "response")


def _cut_parts(parts: Any, budget: list[int]) -> list[Part]:
    out = []
    for part in parts:
        if budget[0] <= 0:
            break
        for field in _TEXT_FIELDS:
            value = part.get(field)
            if isinstance(value, str):
                if len(value) > budget[0]:
                    part = {**part, field: value[:budget[0]]}
                budget[0] -= len(value)
        out.append(part)
    return out


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
