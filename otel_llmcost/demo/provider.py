"""A local HTTP server speaking the OpenAI and Anthropic wire formats.

Why: the instrumentation must be tested against the *real* ``openai``/``anthropic`` SDK
clients doing real HTTP, with exact control over the token counts a provider reports,
its streaming framing, its errors and its retries. This server answers
``/v1/chat/completions``, ``/v1/responses``, ``/v1/embeddings`` (OpenAI) and
``/v1/messages`` (Anthropic) with faithful response shapes, and is steered per request
by the JSON header ``x-standin-scenario`` (see `Scenario`).

Standard library only, so it can also run as a demo backend::

    python -m otel_llmcost.demo.provider --port 8099
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import random
import re
import socket
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, get_args, get_type_hints
from urllib.parse import urlsplit

__all__ = ["MAX_RECORDED_REQUESTS", "SCENARIO_HEADER", "RecordedRequest", "Scenario", "StandInProvider", "main"]

logger = logging.getLogger(__name__)

SCENARIO_HEADER = "x-standin-scenario"
MAX_RECORDED_REQUESTS = 10_000
"""Bound on `StandInProvider.requests`, so a long-running demo server cannot grow without limit."""

_MAX_WORDS = 16
_LOREM = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et dolore"
).split()
_EMBEDDING_DIMS = 8
_POLL_INTERVAL = 0.05
"""How often the serve loop checks for `stop` (the stdlib default, 0.5 s, makes every stop slow)."""
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
_INPUT_KEYS = ("messages", "input", "system", "instructions")
_MAX_TOKENS_KEYS = ("max_completion_tokens", "max_tokens", "max_output_tokens")


@dataclass(frozen=True)
class Scenario:
    """Per-request control of the stand-in's answer; every field is optional.

    Sent as the JSON object header ``x-standin-scenario`` (``Scenario(...).headers()``
    builds it for an SDK's ``extra_headers=``). Token fields use each provider's native
    meaning: ``input_tokens`` is OpenAI's ``prompt_tokens``/``input_tokens`` INCLUDING
    cached tokens, but Anthropic's ``input_tokens`` EXCLUDING cache reads and writes.
    Without it, the uncached input is estimated as ``max(1, characters // 4)`` and OpenAI
    adds the cache fields on top. ``output_tokens`` defaults to the number of words
    returned plus ``reasoning_tokens``.
    """

    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int = 0
    """OpenAI ``cached_tokens``; Anthropic ``cache_read_input_tokens``."""
    cache_write_5m: int = 0
    """Anthropic 5-minute cache writes; OpenAI reports the sum of both writes as ``cache_write_tokens``."""
    cache_write_1h: int = 0
    reasoning_tokens: int = 0
    """OpenAI ``reasoning_tokens``; Anthropic ``output_tokens_details.thinking_tokens`` (only when set)."""
    chunks: int | None = None
    """Content events in a stream: the text is cut into this many slices (at most one per character).
    Default: one per word."""
    model: str | None = None
    """Model reported in the response (e.g. a dated id); default: the requested model."""
    service_tier: str | None = None
    """Default ``"default"`` (OpenAI) / ``"standard"`` (Anthropic ``usage.service_tier``)."""
    provider_cost: float | None = None
    """Adds ``"cost"`` to OpenAI usage objects, as OpenRouter does."""
    fail_times: int = 0
    """Fail while the request's ``x-stainless-retry-count`` is below this, to exercise SDK retries."""
    fail_status: int = 500
    error_status: int | None = None
    """Always fail with this status."""
    error_type: str | None = None
    """Error ``type`` in the body; default derived from the status."""
    stream_error_after: int | None = None
    """Drop the connection after this many content events, without the terminating events."""
    omit_usage: bool = False
    """Report no usage at all, even when ``stream_options.include_usage`` asked for it."""
    delay_ms: int = 0
    """Sleep before answering (e.g. to trigger client timeouts)."""
    finish_reason: str | None = None
    """Provider-native: Chat ``finish_reason`` / Anthropic ``stop_reason``; the Responses API ignores it."""

    def headers(self) -> dict[str, str]:
        """The ``extra_headers`` that make the stand-in play this scenario."""
        changed = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != f.default}
        return {SCENARIO_HEADER: json.dumps(changed)}

    @classmethod
    def from_header(cls, raw: str | None) -> Scenario:
        """Parse and type-check the header strictly, so a typo fails loudly instead of being ignored."""
        if not raw:
            return cls()
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("must be a JSON object")
        hints = get_type_hints(cls)
        for key, value in data.items():
            if key not in hints:
                raise ValueError(f"unknown key {key!r}")
            allowed = get_args(hints[key]) or (hints[key],)
            if float in allowed:
                allowed += (int,)
            if not isinstance(value, allowed):
                raise ValueError(f"{key!r} must be {hints[key]}, got {value!r}")
        return cls(**data)

    def failure(self, retry_count: int) -> tuple[int, str] | None:
        """The (status, error type) to answer this attempt with, if it must fail."""
        if self.error_status is not None:
            status = self.error_status
        elif retry_count < self.fail_times:
            status = self.fail_status
        else:
            return None
        return status, self.error_type or _ERROR_TYPES.get(status, "api_error")


@dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request as received, so tests can assert on what the SDK really sent."""

    method: str
    path: str
    headers: dict[str, str]
    """Lower-case header names."""
    body: Any
    """Parsed JSON, or None when the body was not JSON."""


# --- what to answer -------------------------------------------------------------------


@dataclass(frozen=True)
class _Reply:
    """One request's answer, provider-neutral: text, stream slices and token counts."""

    body: dict[str, Any]
    scenario: Scenario
    model: str
    text: str
    pieces: list[str]
    estimated_input: int
    output_tokens: int
    created: int = field(default_factory=lambda: int(time.time()))

    @classmethod
    def plan(cls, body: dict[str, Any], scenario: Scenario) -> _Reply:
        text = _output_text(body)
        words = re.findall(r"\S+\s*", text)
        return cls(
            body=body,
            scenario=scenario,
            model=scenario.model or str(body.get("model", "")),
            text=text,
            pieces=words if scenario.chunks is None else _slices(text, scenario.chunks),
            estimated_input=max(1, sum(_text_chars(body.get(key)) for key in _INPUT_KEYS) // 4),
            output_tokens=(
                scenario.output_tokens
                if scenario.output_tokens is not None
                else len(words) + scenario.reasoning_tokens
            ),
        )

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def cache_write(self) -> int:
        return self.scenario.cache_write_5m + self.scenario.cache_write_1h

    @property
    def openai_input(self) -> int:
        """OpenAI input tokens, which include cache reads and writes."""
        if self.scenario.input_tokens is not None:
            return self.scenario.input_tokens
        return self.estimated_input + self.scenario.cached_tokens + self.cache_write

    @property
    def anthropic_input(self) -> int:
        """Anthropic input tokens, which exclude cache reads and writes."""
        if self.scenario.input_tokens is not None:
            return self.scenario.input_tokens
        return self.estimated_input


def _text_chars(value: Any) -> int:
    """Characters of text in a messages/input/system value: strings, content parts, lists of them."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(_text_chars(item) for item in value)
    if isinstance(value, dict):
        return sum(_text_chars(value[key]) for key in ("content", "text") if key in value)
    return 0


def _output_text(body: dict[str, Any]) -> str:
    """JSON matching a requested json_schema (so ``.parse()`` works), else lorem ipsum."""
    fmt = (
        body.get("response_format")  # Chat Completions
        or (body.get("text") or {}).get("format")  # Responses
        or (body.get("output_config") or {}).get("format")  # Anthropic
        or {}
    )
    if fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or fmt).get("schema") or {}
        return json.dumps(_placeholder(schema, schema.get("$defs", {})))
    limit = next((body[key] for key in _MAX_TOKENS_KEYS if isinstance(body.get(key), int)), _MAX_WORDS)
    return " ".join(_LOREM[: max(1, min(limit, _MAX_WORDS))])


def _placeholder(schema: dict[str, Any], defs: dict[str, Any]) -> Any:
    """A value of the schema's type, filling only required properties."""
    if "$ref" in schema:
        return _placeholder(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    for combinator in ("anyOf", "oneOf", "allOf"):
        if schema.get(combinator):
            return _placeholder(schema[combinator][0], defs)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        properties = schema.get("properties", {})
        return {name: _placeholder(properties.get(name, {}), defs) for name in schema.get("required", [])}
    return {"string": "x", "number": 1, "integer": 1, "boolean": True, "array": [], "null": None}.get(kind, "x")


def _slices(text: str, parts: int) -> list[str]:
    """``text`` cut into ``parts`` near-equal, non-empty slices."""
    parts = max(1, min(parts, len(text)))
    return [text[len(text) * i // parts : len(text) * (i + 1) // parts] for i in range(parts)]


def _new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


@dataclass(frozen=True)
class _Frame:
    """One server-sent event; ``content`` marks text deltas, which ``stream_error_after`` counts."""

    data: dict[str, Any] | str
    event: str | None = None
    content: bool = False

    def encode(self) -> bytes:
        data = self.data if isinstance(self.data, str) else json.dumps(self.data, separators=(",", ":"))
        return ((f"event: {self.event}\n" if self.event else "") + f"data: {data}\n\n").encode()


def _named_frames(events: list[tuple[str, dict[str, Any]]], content_event: str) -> list[_Frame]:
    """Frames with ``event:`` lines whose data repeats the name as ``type``, as both Responses and Messages do."""
    return [_Frame({"type": name, **data}, event=name, content=name == content_event) for name, data in events]


_Answer = dict[str, Any] | list[_Frame]
"""An endpoint's answer: a JSON body, or the frames of an event stream."""


# --- OpenAI ---------------------------------------------------------------------------


def _with_cost(usage: dict[str, Any], scenario: Scenario) -> dict[str, Any]:
    return usage if scenario.provider_cost is None else {**usage, "cost": scenario.provider_cost}


def _chat_usage(reply: _Reply) -> dict[str, Any]:
    prompt_details: dict[str, int] = {"cached_tokens": reply.scenario.cached_tokens, "audio_tokens": 0}
    if reply.cache_write:
        prompt_details["cache_write_tokens"] = reply.cache_write
    usage = {
        "prompt_tokens": reply.openai_input,
        "completion_tokens": reply.output_tokens,
        "total_tokens": reply.openai_input + reply.output_tokens,
        "prompt_tokens_details": prompt_details,
        "completion_tokens_details": {
            "reasoning_tokens": reply.scenario.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    return _with_cost(usage, reply.scenario)


def _chat_completions(reply: _Reply) -> _Answer:
    scenario = reply.scenario
    head = {
        "id": _new_id("chatcmpl-"),
        "created": reply.created,
        "model": reply.model,
        "service_tier": scenario.service_tier or "default",
        "system_fingerprint": "fp_standin",
    }
    finish_reason = scenario.finish_reason or "stop"
    if not reply.stream:
        message = {"role": "assistant", "content": reply.text, "refusal": None, "annotations": []}
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
        usage = {} if scenario.omit_usage else {"usage": _chat_usage(reply)}
        return {**head, "object": "chat.completion", "choices": [choice], **usage}

    # The real API sends `"usage": null` on every chunk, then a usage-only chunk, only when asked.
    with_usage = bool((reply.body.get("stream_options") or {}).get("include_usage")) and not scenario.omit_usage

    def chunk(delta: dict[str, Any] | None, finish: str | None = None, usage: Any = None) -> dict[str, Any]:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        return {**head, "object": "chat.completion.chunk", "choices": choices, **({"usage": usage} if with_usage else {})}

    frames = [_Frame(chunk({"role": "assistant", "content": "", "refusal": None}))]
    frames += [_Frame(chunk({"content": piece}), content=True) for piece in reply.pieces]
    frames.append(_Frame(chunk({}, finish_reason)))
    if with_usage:
        frames.append(_Frame(chunk(None, usage=_chat_usage(reply))))
    return [*frames, _Frame("[DONE]")]


def _responses(reply: _Reply) -> _Answer:
    scenario, body = reply.scenario, reply.body
    message_id = _new_id("msg_")
    part = {"type": "output_text", "text": reply.text, "annotations": [], "logprobs": []}
    item = {"id": message_id, "type": "message", "status": "completed", "role": "assistant", "content": [part]}
    usage = None
    if not scenario.omit_usage:
        usage = _with_cost(
            {
                "input_tokens": reply.openai_input,
                "input_tokens_details": {"cached_tokens": scenario.cached_tokens, "cache_write_tokens": reply.cache_write},
                "output_tokens": reply.output_tokens,
                "output_tokens_details": {"reasoning_tokens": scenario.reasoning_tokens},
                "total_tokens": reply.openai_input + reply.output_tokens,
            },
            scenario,
        )
    final = {
        "id": _new_id("resp_"),
        "object": "response",
        "created_at": reply.created,
        "completed_at": reply.created,
        "status": "completed",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "metadata": body.get("metadata") or {},
        "model": reply.model,
        "output": [item],
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "service_tier": scenario.service_tier or "default",
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": usage,
        "user": None,
    }
    if not reply.stream:
        return final

    pending = {**final, "status": "in_progress", "completed_at": None, "output": [], "usage": None}
    at = {"item_id": message_id, "output_index": 0, "content_index": 0}
    events = [
        ("response.created", {"response": pending}),
        ("response.in_progress", {"response": pending}),
        ("response.output_item.added", {"output_index": 0, "item": {**item, "status": "in_progress", "content": []}}),
        ("response.content_part.added", {**at, "part": {**part, "text": ""}}),
        *[("response.output_text.delta", {**at, "delta": piece, "logprobs": []}) for piece in reply.pieces],
        ("response.output_text.done", {**at, "text": reply.text, "logprobs": []}),
        ("response.content_part.done", {**at, "part": part}),
        ("response.output_item.done", {"output_index": 0, "item": item}),
        ("response.completed", {"response": final}),
    ]
    numbered = [(name, {"sequence_number": number, **data}) for number, (name, data) in enumerate(events)]
    return _named_frames(numbered, "response.output_text.delta")


def _embeddings(reply: _Reply) -> _Answer:
    inputs = reply.body.get("input")
    # A string, a token array, or a list of either: one embedding per string / token array.
    items = inputs if isinstance(inputs, list) and inputs and not isinstance(inputs[0], int) else [inputs]
    dims = reply.body.get("dimensions") or _EMBEDDING_DIMS
    as_base64 = reply.body.get("encoding_format") == "base64"
    data = []
    for index, item in enumerate(items):
        rng = random.Random(json.dumps(item))
        vector = [rng.randint(-256, 256) / 256 for _ in range(dims)]  # exact in float32, so both encodings agree
        encoded: Any = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode() if as_base64 else vector
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    usage = {"prompt_tokens": reply.openai_input, "total_tokens": reply.openai_input}
    answer = {"object": "list", "data": data, "model": reply.model}
    return answer if reply.scenario.omit_usage else {**answer, "usage": _with_cost(usage, reply.scenario)}


# --- Anthropic ------------------------------------------------------------------------


def _messages(reply: _Reply) -> _Answer:
    scenario = reply.scenario
    usage: dict[str, Any] = {
        "input_tokens": reply.anthropic_input,
        "cache_creation_input_tokens": reply.cache_write,
        "cache_read_input_tokens": scenario.cached_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": scenario.cache_write_5m,
            "ephemeral_1h_input_tokens": scenario.cache_write_1h,
        },
        "output_tokens": reply.output_tokens,
        "service_tier": scenario.service_tier or "standard",
    }
    if scenario.reasoning_tokens:
        usage["output_tokens_details"] = {"thinking_tokens": scenario.reasoning_tokens}
    stop_reason = scenario.finish_reason or "end_turn"
    message = {
        "id": _new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": reply.model,
        "content": [{"type": "text", "text": reply.text}],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        **({} if scenario.omit_usage else {"usage": usage}),
    }
    if not reply.stream:
        return message

    # message_start carries the input side and a provisional output count; message_delta
    # carries CUMULATIVE totals (input and cache fields repeated, output final), as the real API does.
    start: dict[str, Any] = {**message, "content": [], "stop_reason": None}
    delta: dict[str, Any] = {"delta": {"stop_reason": stop_reason, "stop_sequence": None}}
    if not scenario.omit_usage:
        start["usage"] = {**usage, "output_tokens": 1}
        cumulative = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")
        delta["usage"] = {key: usage[key] for key in cumulative}
        if "output_tokens_details" in usage:
            delta["usage"]["output_tokens_details"] = usage["output_tokens_details"]
    events = [
        ("message_start", {"message": start}),
        ("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
        ("ping", {}),
        *[("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": p}}) for p in reply.pieces],
        ("content_block_stop", {"index": 0}),
        ("message_delta", delta),
        ("message_stop", {}),
    ]
    return _named_frames(events, "content_block_delta")


# --- HTTP -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Dialect:
    """What differs between the providers outside the endpoints: request-id header and error body."""

    request_id_header: str
    error_body: Callable[[str, str], dict[str, Any]]


_OPENAI = _Dialect(
    "x-request-id",
    lambda kind, message: {"error": {"message": message, "type": kind, "param": None, "code": None}},
)
_ANTHROPIC = _Dialect(
    "request-id",
    lambda kind, message: {"type": "error", "error": {"type": kind, "message": message}},
)
_ROUTES: dict[str, tuple[_Dialect, Callable[[_Reply], _Answer]]] = {
    "/v1/chat/completions": (_OPENAI, _chat_completions),
    "/v1/responses": (_OPENAI, _responses),
    "/v1/embeddings": (_OPENAI, _embeddings),
    "/v1/messages": (_ANTHROPIC, _messages),
}


def _retry_count(headers: Message) -> int:
    """The SDKs number each attempt in ``x-stainless-retry-count``; absent means a first attempt."""
    try:
        return int(headers.get("x-stainless-retry-count", 0))
    except ValueError:
        return 0


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: JSON answers carry Content-Length, streams are chunked
    disable_nagle_algorithm = True  # headers, body and SSE chunks are separate small writes: no 40 ms stalls
    server: _Server

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        body = _json_or_none(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        headers = {name.lower(): value for name, value in self.headers.items()}
        self.server.provider.requests.append(RecordedRequest("POST", path, headers, body))

        dialect, endpoint = _ROUTES.get(path, (_OPENAI, None))
        self._request_id_header = dialect.request_id_header
        try:
            scenario = Scenario.from_header(self.headers.get(SCENARIO_HEADER))
        except ValueError as exc:
            return self._send_error(dialect, 400, "invalid_request_error", f"bad {SCENARIO_HEADER} header: {exc}")
        if endpoint is None:
            return self._send_error(dialect, 404, "not_found_error", f"stand-in provider has no route {path}")
        if not isinstance(body, dict):
            return self._send_error(dialect, 400, "invalid_request_error", "request body must be a JSON object")
        time.sleep(scenario.delay_ms / 1000)
        failure = scenario.failure(_retry_count(self.headers))
        if failure is not None:
            status, kind = failure
            return self._send_error(dialect, status, kind, f"stand-in scenario error {status} ({kind})")
        answer = endpoint(_Reply.plan(body, scenario))
        if isinstance(answer, list):
            self._send_stream(answer, scenario.stream_error_after)
        else:
            self._send_json(200, answer)

    def _send_error(self, dialect: _Dialect, status: int, kind: str, message: str) -> None:
        # retry-after-ms (honoured by both SDKs) keeps their retries fast instead of backing off ~0.5-8 s.
        self._send_json(status, dialect.error_body(kind, message), {"retry-after-ms": "1"})

    def _send_json(self, status: int, payload: dict[str, Any], extra: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self._start(status, {"Content-Type": "application/json", "Content-Length": str(len(data)), **(extra or {})})
        self.wfile.write(data)

    def _send_stream(self, frames: list[_Frame], error_after: int | None) -> None:
        """Write SSE frames with chunked encoding, or stop after ``error_after`` content frames.

        Stopping omits the zero-length terminating chunk, so the client's HTTP layer sees a
        truncated body and the SDK raises mid-iteration rather than ending the stream quietly.
        """
        self._start(200, {"Content-Type": "text/event-stream; charset=utf-8", "Transfer-Encoding": "chunked"})
        cut = None
        if error_after is not None:
            content_at = [index for index, frame in enumerate(frames) if frame.content]
            # Before the (n+1)-th content frame, or right after the last one if n covers them all.
            cut = (content_at + [content_at[-1] + 1])[min(error_after, len(content_at))]
        for frame in frames[:cut]:
            self._write_chunk(frame.encode())
        if cut is None:
            self._write_chunk(b"")
        else:
            self.close_connection = True

    def _start(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in {**headers, self._request_id_header: _new_id("req_")}.items():
            self.send_header(name, value)
        self.end_headers()

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base-class signature
        logger.debug("%s " + format, self.address_string(), *args)


class _Server(ThreadingHTTPServer):
    """Threading server that tracks open connections, so `stop` does not leave keep-alive threads behind."""

    daemon_threads = True
    request_queue_size = 256  # many clients connecting at once (races, load): no resets

    def __init__(self, address: tuple[str, int], provider: StandInProvider) -> None:
        self.provider = provider
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already gone

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-answer (timeouts, abandoned streams) are routine: no stderr traceback.
        logger.debug("connection from %s ended with an error", client_address, exc_info=True)


class StandInProvider:
    """Local HTTP server speaking the OpenAI and Anthropic wire formats.

    Use as a context manager, or `start`/`stop`. Point ``OpenAI(base_url=openai_base_url)``
    and ``Anthropic(base_url=anthropic_base_url)`` at it; every request is kept in
    `requests` (the most recent `MAX_RECORDED_REQUESTS`).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._address = (host, port)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.requests: deque[RecordedRequest] = deque(maxlen=MAX_RECORDED_REQUESTS)

    def start(self) -> StandInProvider:
        """Serve on a background daemon thread; port 0 picks a free ephemeral port."""
        if self._server is not None:
            raise RuntimeError("StandInProvider is already running")
        self._server = _Server(self._address, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(_POLL_INTERVAL,), name="standin-provider", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close open connections; idempotent."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        thread.join()
        self._server = self._thread = None

    def clear(self) -> None:
        """Forget recorded requests."""
        self.requests.clear()

    def __enter__(self) -> StandInProvider:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("StandInProvider is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url


def main(argv: Sequence[str] | None = None) -> None:
    """Run the stand-in in the foreground until Ctrl-C (for demos and manual testing)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099, help="0 picks a free port")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
    with StandInProvider(args.host, args.port) as provider:
        print(f"OpenAI base_url={provider.openai_base_url}  Anthropic base_url={provider.anthropic_base_url}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
