"""Anthropic: maps the anthropic SDK's request kwargs and response shapes to `Request`/`Reply`.

Token semantics: Anthropic's ``input_tokens`` EXCLUDES cache tokens, so
`Usage.input_tokens` = input_tokens + cache_read_input_tokens + cache_creation_input_tokens.
Cache writes are split by TTL in ``usage.cache_creation.ephemeral_{5m,1h}_input_tokens``.
In a stream, ``message_start`` carries input usage and a provisional output count, and
``message_delta`` carries the CUMULATIVE output count (it replaces, never adds).
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from otel_llmcost import semconv as sc, tokens
from otel_llmcost.instrumentation._content import Message, Part, text
from otel_llmcost.instrumentation._types import Reply, Request, Target
from otel_llmcost.usage import Usage


def _texts(kwargs: dict[str, Any]) -> Iterable[str]:
    system = kwargs.get("system")
    if isinstance(system, str):
        yield system
    elif isinstance(system, list):
        yield from (b.get("text", "") for b in system if isinstance(b, dict))
    for message in kwargs.get("messages") or ():
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            yield content
        elif isinstance(content, list):
            yield from (b.get("text", "") for b in content
                        if isinstance(b, dict) and isinstance(b.get("text"), str))


def _block(block: Any) -> Part:
    """A content block (request dict or response model) as a semconv part."""
    get = block.get if isinstance(block, dict) else (lambda key: getattr(block, key, None))
    kind = get("type")
    if kind == "text":
        return text(get("text") or "")
    if kind == "tool_use":
        return {"type": "tool_call", "id": get("id"), "name": get("name"),
                "arguments": json.dumps(get("input"), default=str)}
    if kind == "tool_result":
        result = get("content")
        return {"type": "tool_call_response", "id": get("tool_use_id"),
                "response": result if isinstance(result, str) else "".join(
                    b.get("text", "") for b in result or () if isinstance(b, dict))}
    return {"type": str(kind or "unknown")}


def _blocks(content: Any) -> list[Part]:
    return [text(content)] if isinstance(content, str) else [_block(b) for b in content or ()]


def _content(kwargs: dict[str, Any]) -> tuple[list[Part] | None, list[Message]]:
    system = kwargs.get("system")
    return (_blocks(system) if system else None,
            [{"role": m.get("role", "user"), "parts": _blocks(m.get("content"))}
             for m in kwargs.get("messages") or () if isinstance(m, dict)])


def _outputs(parts: list[Part], stop: str | None) -> list[Message]:
    return [{"role": "assistant", "parts": parts, "finish_reason": stop}]


_DELTA_COUNTS = ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens",
                 "output_tokens")


def _usage(u: Any, final: dict[str, int] | None = None, estimated: bool = False) -> Usage:
    """Normalise an Anthropic usage block; ``final`` holds a stream's closing counts."""
    counts = {k: final[k] if final and k in final else getattr(u, k, None) or 0
              for k in _DELTA_COUNTS}
    read, write = counts["cache_read_input_tokens"], counts["cache_creation_input_tokens"]
    split = getattr(u, "cache_creation", None)
    write_1h = (getattr(split, "ephemeral_1h_input_tokens", None) or 0) if split else 0
    return Usage(
        input_tokens=counts["input_tokens"] + read + write, output_tokens=counts["output_tokens"],
        cache_read_tokens=read, cache_write_tokens=write,
        cache_write_1h_tokens=min(write_1h, write), estimated=estimated)


def _text(content: Any) -> str:
    return "".join(getattr(b, "text", "") or "" for b in content or ()
                   if getattr(b, "type", None) == "text")


class MessagesAdapter:
    """``messages.create`` / ``.parse`` and the ``messages.stream`` helper."""

    def request(self, kwargs: dict[str, Any]) -> tuple[Request, dict[str, Any]]:
        max_tokens = kwargs.get("max_tokens")
        return Request(
            provider=sc.PROVIDER_ANTHROPIC, operation=sc.OP_CHAT, model=kwargs.get("model"),
            max_tokens=max_tokens if type(max_tokens) is int else None,
            stream=kwargs.get("stream") is True, input_texts=lambda: _texts(kwargs),
            content=lambda: _content(kwargs)), kwargs

    def reply(self, message: Any) -> Reply:
        usage = message.usage
        return Reply(
            model=message.model, id=message.id,
            finish_reasons=(message.stop_reason,) if message.stop_reason else None,
            usage=_usage(usage) if usage is not None else None,
            service_tier=getattr(usage, "service_tier", None),
            output_text=None if usage is not None else _text(message.content),
            content=lambda: _outputs(_blocks(message.content), message.stop_reason))

    def accumulator(self, request: Request) -> MessagesAccumulator:
        return MessagesAccumulator()


class MessagesAccumulator:
    """Reads raw message stream events.

    ``message_start`` gives the input usage (with the 5m/1h cache-write split);
    ``message_delta`` gives the final, cumulative output count and, on newer APIs, final
    input counts (without the split), which replace the start's when present.
    """

    __slots__ = ("_message", "_usage", "_final", "_stop", "_parts")

    def __init__(self) -> None:
        self._message: Any = None
        self._usage: Any = None
        self._final: dict[str, int] = {}
        self._stop: str | None = None
        self._parts: list[str] = []

    def observe(self, event: Any) -> bool:
        kind = event.type
        if kind == "content_block_delta":
            text = getattr(event.delta, "text", None)
            if text:
                self._parts.append(text)
        elif kind == "message_start":
            self._message = event.message
            self._usage = event.message.usage
        elif kind == "message_delta":
            usage = event.usage
            if usage is not None:
                self._final = {k: v for k in _DELTA_COUNTS
                               if (v := getattr(usage, k, None)) is not None}
            self._stop = getattr(event.delta, "stop_reason", None) or self._stop
        return False

    def reply(self) -> Reply:
        message, usage, final = self._message, self._usage, self._final
        content = lambda: _outputs([text("".join(self._parts))], self._stop)  # noqa: E731
        if usage is None:  # not even message_start: everything is an estimate
            return Reply(output_text="".join(self._parts), content=content)
        if "output_tokens" in final:
            parsed = _usage(usage, final)
        else:  # the stream ended early: the output count is an estimate
            parsed = _usage(usage, {"output_tokens": tokens.count("".join(self._parts))},
                            estimated=True)
        return Reply(
            model=message.model, id=message.id,
            finish_reasons=(self._stop,) if self._stop else None, usage=parsed,
            service_tier=getattr(usage, "service_tier", None), content=content)


_MESSAGES = MessagesAdapter()
_MODULE = "anthropic.resources.messages"
TARGETS = (
    Target(_MODULE, "Messages.create", _MESSAGES, is_async=False),
    Target(_MODULE, "AsyncMessages.create", _MESSAGES, is_async=True),
    Target(_MODULE, "Messages.parse", _MESSAGES, is_async=False),
    Target(_MODULE, "AsyncMessages.parse", _MESSAGES, is_async=True),
    Target(_MODULE, "Messages.stream", _MESSAGES, is_async=False, stream_manager=True),
    Target(_MODULE, "AsyncMessages.stream", _MESSAGES, is_async=True, stream_manager=True),
)
RETRY_MODULE = "anthropic._base_client"
# anthropic >= 2 traces its calls itself unless this env var is "false".
BUILTIN_TRACING = ("anthropic._tracing", "ANTHROPIC_OPEN_TELEMETRY")
