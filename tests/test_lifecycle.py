"""Instrument/uninstrument, coexistence with other instrumentations, and import hygiene."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import textwrap

import anthropic
import openai
from wrapt import BaseObjectProxy

from otel_llmcost.instrumentation import AnthropicInstrumentor, OpenAIInstrumentor
from otel_llmcost.instrumentation import _wrappers
from otel_llmcost.instrumentation.openai import ChatAdapter

MSGS = [{"role": "user", "content": "hi"}]


def patched_methods():
    classes = [openai.resources.chat.completions.Completions,
               openai.resources.chat.completions.AsyncCompletions,
               openai.resources.responses.Responses, openai.resources.responses.AsyncResponses,
               openai.resources.embeddings.Embeddings, openai.resources.embeddings.AsyncEmbeddings,
               anthropic.resources.messages.Messages, anthropic.resources.messages.AsyncMessages,
               openai._base_client.BaseClient, anthropic._base_client.BaseClient]
    return {f"{cls.__module__}.{cls.__qualname__}.{name}" for cls in classes
            for name, value in vars(cls).items() if isinstance(value, BaseObjectProxy)}


def test_uninstrument_unwraps_every_target(telemetry, openai_client, anthropic_client):
    before = patched_methods()
    assert len(before) >= 15
    OpenAIInstrumentor().uninstrument()
    AnthropicInstrumentor().uninstrument()
    try:
        assert patched_methods() == set()
        openai_client.chat.completions.create(model="gpt-4o", messages=MSGS)
        anthropic_client.messages.create(model="claude-haiku-4-5", max_tokens=8, messages=MSGS)
        assert telemetry.finished() == []
    finally:
        provider_kwargs = telemetry.providers
        OpenAIInstrumentor().instrument(**provider_kwargs)
        AnthropicInstrumentor().instrument(**provider_kwargs)
    assert patched_methods() == before
    openai_client.chat.completions.create(model="gpt-4o", messages=MSGS)
    assert len(telemetry.finished()) == 1


def test_warns_how_to_disable_another_openai_instrumentation(tmp_path, monkeypatch, caplog):
    dist = tmp_path / "other_openai_instr-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: other-openai-instr\n"
                                   "Version: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[opentelemetry_instrumentor]\nopenai = other.openai_instr:OpenAIInstrumentor\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", raising=False)
    with caplog.at_level(logging.WARNING, logger="otel_llmcost"):
        _wrappers._warn_about_other_instrumentations("openai", "llmcost_openai")
    (record,) = [r for r in caplog.records if "other-openai-instr" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=openai" in record.getMessage()
    assert "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=llmcost_openai" in record.getMessage()
    caplog.clear()
    monkeypatch.setenv("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "openai")
    _wrappers._warn_about_other_instrumentations("openai", "llmcost_openai")
    assert not [r for r in caplog.records if "other-openai-instr" in r.getMessage()]


def test_fault_when_starting_a_call_still_calls_the_provider(telemetry, openai_client,
                                                             monkeypatch):
    def broken(self, kwargs):
        raise RuntimeError("bug in our request reader")
    monkeypatch.setattr(ChatAdapter, "request", broken)
    response = openai_client.chat.completions.create(model="gpt-4o", messages=MSGS)
    assert response.choices
    assert telemetry.finished() == []


def test_import_and_instrument_do_no_network_io():
    """Importing and instrumenting must not open a socket (air-gapped hosts)."""
    code = textwrap.dedent("""
        import socket
        def refuse(*args, **kwargs):
            raise AssertionError("network I/O at import/instrument time")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse
        import otel_llmcost
        from otel_llmcost import tokens, pricing
        from otel_llmcost.instrumentation import OpenAIInstrumentor, AnthropicInstrumentor
        OpenAIInstrumentor().instrument()
        AnthropicInstrumentor().instrument()
        assert tokens.wait_ready(60)
        from otel_llmcost.usage import Usage
        assert pricing.price("openai", "gpt-4o", Usage(input_tokens=10)).amount > 0
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env={"PATH": "", "TIKTOKEN_CACHE_DIR": "/nonexistent"})
    assert out.stdout.strip() == "ok", out.stderr
    assert socket  # the parent process is untouched
