"""OpenTelemetry instrumentors for LLM SDKs, loaded by ``opentelemetry-instrument``.

Entry points ``llmcost_openai`` and ``llmcost_anthropic`` (group
``opentelemetry_instrumentor``) point at the classes below.
"""

from __future__ import annotations

from otel_llmcost import semconv as sc
from otel_llmcost.instrumentation import anthropic as _anthropic, openai as _openai
from otel_llmcost.instrumentation._wrappers import LLMInstrumentor


class OpenAIInstrumentor(LLMInstrumentor):
    """Chat Completions, Responses and Embeddings of the ``openai`` SDK (≥ 1.0)."""

    package = "openai"
    min_version = "1.0"
    entry_point = sc.ENTRY_POINT_OPENAI
    targets = _openai.TARGETS
    retry_module = _openai.RETRY_MODULE


class AnthropicInstrumentor(LLMInstrumentor):
    """Messages (create, parse, stream) of the ``anthropic`` SDK (≥ 0.30)."""

    package = "anthropic"
    min_version = "0.30"
    entry_point = sc.ENTRY_POINT_ANTHROPIC
    targets = _anthropic.TARGETS
    retry_module = _anthropic.RETRY_MODULE
    builtin_tracing = _anthropic.BUILTIN_TRACING


__all__ = ["AnthropicInstrumentor", "OpenAIInstrumentor"]
