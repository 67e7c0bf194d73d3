"""OpenAI: maps the openai SDK's request kwargs and response shapes to `Request`/`Reply`.

Token semantics: OpenAI's ``prompt_tokens``/``input_tokens`` already INCLUDE cached
tokens (``cached_tokens``, and ``cache_write_tokens`` on newer models), so they map to
`Usage.input_tokens` unchanged, with the cache counts as subsets.
"""

from __future__ import annotations

import os
from typing import Any, Iterable

from otel_llmcost import semconv as sc
from otel_llmcost.instrumentation._content import Message, Part, text
from otel_llmcost.instrumentation._types import Reply, Request, Target
from otel_llmcost.usage import Usage


def _int(value: Any) -> int | None:
    return value if type(value) is int else None


def _text_of(content: Any) -> Iterable[str]:
    """Text parts of a message content (a string or a list of typed parts)."""
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict):
                text = part.get("text") or part.get("content")
                if isinstance(text, str):
                    yield text


def _message_texts(messages: Any) -> Iterable[str]:
    if isinstance(messages, str):
        yield messages
        return
    for message in messages or ():
        if isinstance(message, dict):
            yield from _text_of(message.get("content"))


def _parts(content: Any) -> list[Part]:
    """Content parts of a message: text kept, other parts (images, audio…) by type only."""
    if isinstance(content, str):
        return [text(content)]
    parts: list[Part] = []
    for part in content or ():
        if isinstance(part, dict):
            value = part.get("text")
            parts.append(text(value) if isinstance(value, str)
                         else {"type": str(part.get("type", "unknown"))})
    return parts


def _tool_call(call: Any) -> Part:
    if not isinstance(call, dict):  # a response's pydantic tool call
        call = call.model_dump() if hasattr(call, "model_dump") else {}
    function = call.get("function") or {}
    return {"type": "tool_call", "id": call.get("id"), "name": function.get("name"),
            "arguments": function.get("arguments")}


def _chat_content(messages: Any) -> tuple[None, list[Message]]:
    inputs: list[Message] = []
    for message in messages or ():
        if not isinstance(message, dict):
            continue
        role = message.get("role", "user")
        if role == "tool":
            parts: list[Part] = [{"type": "tool_call_response", "id": message.get("tool_call_id"),
                                  "response": "".join(_text_of(message.get("content")))}]
        else:
            parts = _parts(message.get("content"))
            parts.extend(_tool_call(call) for call in message.get("tool_calls") or ())
        inputs.append({"role": role, "parts": parts})
    return None, inputs


def _chat_outputs(choices: Any) -> list[Message]:
    outputs: list[Message] = []
    for choice in choices:
        message = choice.message
        parts: list[Part] = [text(message.content)] if message and message.content else []
        parts.extend(_tool_call(call) for call in (message.tool_calls or ()) if message)
        outputs.append({"role": "assistant", "parts": parts,
                        "finish_reason": choice.finish_reason})
    return outputs


def _streamed(parts: list[str], reasons: list[str] | tuple[str, ...] | None
              ) -> list[Message]:
    return [{"role": "assistant", "parts": [text("".join(parts))],
             "finish_reason": reasons[0] if reasons else None}]


def _usage(u: Any, input_name: str, input_details: str, output_name: str,
           output_details: str) -> Usage | None:
    if u is None:
        return None
    details = getattr(u, input_details, None)
    out_details = getattr(u, output_details, None)
    return Usage(
        input_tokens=getattr(u, input_name, None) or 0,
        output_tokens=getattr(u, output_name, None) or 0,
        cache_read_tokens=(getattr(details, "cached_tokens", None) or 0) if details else 0,
        cache_write_tokens=(getattr(details, "cache_write_tokens", None) or 0) if details else 0,
        reasoning_tokens=(getattr(out_details, "reasoning_tokens", None) or 0)
        if out_details else 0,
    )


def _provider_cost(u: Any) -> float | None:
    """Cost reported in the usage block by OpenAI-compatible gateways (OpenRouter)."""
    extra = getattr(u, "__pydantic_extra__", None)  # an unknown field, so not an attribute
    cost = extra.get("cost") if extra else None
    return float(cost) if isinstance(cost, (int, float)) and not isinstance(cost, bool) else None


def _chat_usage(u: Any) -> Usage | None:
    return _usage(u, "prompt_tokens", "prompt_tokens_details", "completion_tokens",
                  "completion_tokens_details")


class ChatAdapter:
    """``chat.completions.create`` / ``.parse`` (and the ``.stream`` helper, via create)."""

    def request(self, kwargs: dict[str, Any]) -> tuple[Request, dict[str, Any]]:
        stream = kwargs.get("stream") is True
        messages = kwargs.get("messages")
        request = Request(
            provider=sc.PROVIDER_OPENAI, operation=sc.OP_CHAT, model=kwargs.get("model"),
            max_tokens=_int(kwargs.get("max_completion_tokens")) or _int(kwargs.get("max_tokens")),
            stream=stream, input_texts=lambda: _message_texts(messages),
            content=lambda: _chat_content(messages))
        if stream and _stream_usage_enabled():
            options = kwargs.get("stream_options")
            if not (isinstance(options, dict) and options.get("include_usage") is True):
                options = dict(options) if isinstance(options, dict) else {}
                options["include_usage"] = True
                kwargs = {**kwargs, "stream_options": options}
                request.hide_usage_chunk = True
        return request, kwargs

    def reply(self, response: Any) -> Reply:
        usage = response.usage
        choices = response.choices or ()
        return Reply(
            model=response.model, id=response.id,
            finish_reasons=tuple([c.finish_reason for c in choices if c.finish_reason]),
            usage=_chat_usage(usage), service_tier=getattr(response, "service_tier", None),
            provider_cost=_provider_cost(usage),
            output_text=None if usage is not None else "".join(
                c.message.content or "" for c in choices if c.message),
            content=lambda: _chat_outputs(choices))

    def accumulator(self, request: Request) -> ChatAccumulator:
        return ChatAccumulator(request.hide_usage_chunk)


class ChatAccumulator:
    """Reads ``chat.completion.chunk``s; hides the usage-only chunk we asked for."""

    __slots__ = ("_hide", "_first", "_usage", "_parts", "_reasons", "_tier")

    def __init__(self, hide_usage_chunk: bool) -> None:
        self._hide = hide_usage_chunk
        self._first: Any = None
        self._usage: Any = None
        self._parts: list[str] = []
        self._reasons: list[str] = []
        self._tier: str | None = None

    def observe(self, chunk: Any) -> bool:
        if self._first is None:
            self._first = chunk
        usage = chunk.usage
        if usage is not None:
            self._usage = usage
            self._tier = getattr(chunk, "service_tier", None)
        elif self._hide:  # the caller did not ask for usage: make `usage: null` unset again
            chunk.__pydantic_fields_set__.discard("usage")
        for choice in chunk.choices:
            delta = choice.delta
            if delta is not None and delta.content:
                self._parts.append(delta.content)
            if choice.finish_reason:
                self._reasons.append(choice.finish_reason)
        return self._hide and usage is not None and not chunk.choices

    def reply(self) -> Reply:
        first, usage = self._first, self._usage
        return Reply(
            model=first.model if first is not None else None,
            id=first.id if first is not None else None,
            finish_reasons=tuple(self._reasons) or None,
            usage=_chat_usage(usage), service_tier=self._tier or (
                getattr(first, "service_tier", None) if first is not None else None),
            provider_cost=_provider_cost(usage),
            output_text="".join(self._parts) if usage is None else None,
            content=lambda: _streamed(self._parts, self._reasons))


def _responses_usage(u: Any) -> Usage | None:
    return _usage(u, "input_tokens", "input_tokens_details", "output_tokens",
                  "output_tokens_details")


def _conversation_id(value: Any) -> str | None:
    """The Responses API ``conversation`` parameter: an id string or ``{"id": ...}``."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, dict):
        cid = value.get("id")
        return cid if isinstance(cid, str) and cid else None
    return None


def _responses_input_texts(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
        return
    for item in value or ():
        if isinstance(item, dict):
            yield from _text_of(item.get("content"))


def _responses_content(kwargs: dict[str, Any]) -> tuple[list[Part] | None, list[Message]]:
    instructions = kwargs.get("instructions")
    value = kwargs.get("input")
    if isinstance(value, str):
        inputs: list[Message] = [{"role": "user", "parts": [text(value)]}]
    else:
        inputs = [{"role": item.get("role", "user"), "parts": _parts(item.get("content"))}
                  if "content" in item else {"role": "tool", "parts": [
                      {"type": str(item.get("type", "unknown"))}]}
                  for item in value or () if isinstance(item, dict)]
    return ([text(instructions)] if isinstance(instructions, str) else None), inputs


def _response_reply(response: Any, streamed_text: str | None = None) -> Reply:
    usage = getattr(response, "usage", None)
    status = getattr(response, "status", None)
    reason = None
    if status == "incomplete":
        details = getattr(response, "incomplete_details", None)
        reason = getattr(details, "reason", None) or status
    elif status:
        reason = "stop" if status == "completed" else status
    reasons = (reason,) if reason else None

    def said() -> str | None:
        return streamed_text if streamed_text is not None else getattr(
            response, "output_text", None)

    return Reply(
        model=getattr(response, "model", None), id=getattr(response, "id", None),
        finish_reasons=reasons, usage=_responses_usage(usage),
        service_tier=getattr(response, "service_tier", None), provider_cost=_provider_cost(usage),
        output_text=said() if usage is None else None,
        content=lambda: _streamed([said() or ""], reasons))


class ResponsesAdapter:
    """``responses.create`` (and the ``responses.stream`` helper, which calls create)."""

    def request(self, kwargs: dict[str, Any]) -> tuple[Request, dict[str, Any]]:
        input_value = kwargs.get("input")
        return Request(
            provider=sc.PROVIDER_OPENAI, operation=sc.OP_CHAT, model=kwargs.get("model"),
            max_tokens=_int(kwargs.get("max_output_tokens")), stream=kwargs.get("stream") is True,
            conversation_id=_conversation_id(kwargs.get("conversation")),
            input_texts=lambda: _responses_input_texts(input_value),
            content=lambda: _responses_content(kwargs)), kwargs

    def reply(self, response: Any) -> Reply:
        return _response_reply(response)

    def accumulator(self, request: Request) -> ResponsesAccumulator:
        return ResponsesAccumulator()


_FINAL_EVENTS = frozenset(("response.completed", "response.incomplete", "response.failed"))


class ResponsesAccumulator:
    """Reads Responses stream events; the final event carries the whole response."""

    __slots__ = ("_response", "_parts")

    def __init__(self) -> None:
        self._response: Any = None
        self._parts: list[str] = []

    def observe(self, event: Any) -> bool:
        kind = event.type
        if kind == "response.output_text.delta":
            self._parts.append(event.delta)
        elif kind in _FINAL_EVENTS or kind == "response.created":
            self._response = event.response
        return False

    def reply(self) -> Reply:
        if self._response is None:
            return Reply(output_text="".join(self._parts),
                         content=lambda: _streamed(self._parts, None))
        return _response_reply(self._response, "".join(self._parts))


class EmbeddingsAdapter:
    """``embeddings.create``: input tokens only."""

    def request(self, kwargs: dict[str, Any]) -> tuple[Request, dict[str, Any]]:
        value = kwargs.get("input")
        return Request(provider=sc.PROVIDER_OPENAI, operation=sc.OP_EMBEDDINGS,
                       model=kwargs.get("model"), max_tokens=None, stream=False,
                       input_texts=lambda: _embedding_texts(value)), kwargs

    def reply(self, response: Any) -> Reply:
        usage = response.usage
        return Reply(model=response.model, usage=Usage(
            input_tokens=usage.prompt_tokens or 0) if usage is not None else None)

    def accumulator(self, request: Request) -> Any:
        raise TypeError("embeddings do not stream")


def _embedding_texts(value: Any) -> Iterable[str]:
    """The texts of an embeddings input (a string or a list; token arrays are skipped)."""
    if isinstance(value, str):
        return (value,)
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else ()


_CHAT, _RESPONSES, _EMBEDDINGS = ChatAdapter(), ResponsesAdapter(), EmbeddingsAdapter()
_RES = "openai.resources."

TARGETS = tuple(
    Target(_RES + module, f"{prefix}{cls}.{method}", adapter, is_async=bool(prefix))
    for module, cls, methods, adapter in (
        ("chat.completions", "Completions", ("create", "parse"), _CHAT),
        ("responses", "Responses", ("create", "parse"), _RESPONSES),
        ("embeddings", "Embeddings", ("create",), _EMBEDDINGS),
    )
    for prefix in ("", "Async")
    for method in methods
)
RETRY_MODULE = "openai._base_client"


def _stream_usage_enabled() -> bool:
    return os.environ.get(sc.ENV_STREAM_USAGE, "on").strip().lower() not in ("off", "false", "0")
