"""What a provider module hands to the generic instrumentation: a request and a reply."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol

from otel_llmcost.instrumentation._content import Message, Part
from otel_llmcost.usage import Usage


@dataclass(slots=True)
class Request:
    """The parts of a call known before it is sent (all cheap to read from kwargs)."""

    provider: str
    operation: str
    model: str | None
    max_tokens: int | None
    stream: bool
    conversation_id: str | None = None
    # We added stream_options.include_usage: hide the usage-only chunk from the caller.
    hide_usage_chunk: bool = False
    # Only called when usage is missing and must be estimated.
    input_texts: Callable[[], Iterable[str]] | None = None
    # Only called when content is captured: (system instructions, input messages).
    content: Callable[[], tuple[list[Part] | None, list[Message]]] | None = None


@dataclass(slots=True)
class Reply:
    """The parts of a response that telemetry and pricing need."""

    model: str | None = None
    id: str | None = None
    finish_reasons: tuple[str, ...] | None = None
    usage: Usage | None = None
    service_tier: str | None = None
    provider_cost: float | None = None
    # Generated text, kept only when usage is missing and output must be estimated.
    output_text: str | None = None
    # Only called when content is captured: the output messages.
    content: Callable[[], list[Message]] | None = None


class Accumulator(Protocol):
    """Watches a stream's chunks and builds the `Reply` from them."""

    def observe(self, chunk: Any) -> bool:
        """Record one chunk; True means hide it from the caller (our injected usage chunk)."""

    def reply(self) -> Reply:
        """The reply as far as the stream got."""


@dataclass(frozen=True, slots=True)
class Target:
    """One patched method: where it lives and how its calls are read."""

    module: str
    name: str  # "Class.method"
    adapter: Any  # an object with request()/reply()/accumulator(); see _wrappers.Adapter
    is_async: bool
    stream_manager: bool = False  # returns a context manager that yields a helper stream
