"""Anthropic instrumentation through the real anthropic SDK over real HTTP to the stand-in."""

from __future__ import annotations

import math

import anthropic
import pytest
from opentelemetry.trace import SpanKind, StatusCode

from otel_llmcost import semconv as sc, tokens
from tests.conftest import scenario
from tests.test_openai import assert_cost

MODEL = "claude-sonnet-4-5"
MSGS = [{"role": "user", "content": "Summarise the contract."}]
# claude-sonnet-4-5 list prices, USD per token: input 3/M, output 15/M, cache read 0.30/M,
# 5-minute cache write 3.75/M, 1-hour cache write 6/M. Above 200k input tokens:
# 6 / 22.5 / 0.60 / 7.50 / 12 per M, applied to every token of the call.
IN, OUT, READ, W5M, W1H = 3e-6, 15e-6, 0.3e-6, 3.75e-6, 6e-6
CACHED = dict(input_tokens=1000, cached_tokens=2000, cache_write_5m=100, cache_write_1h=200,
              output_tokens=50)
CACHED_USD = 1000 * IN + 2000 * READ + 100 * W5M + 200 * W1H + 50 * OUT


def assert_cached_call(span):
    attrs = span.attributes
    # Anthropic's input_tokens excludes cache tokens; the span's input count includes them.
    assert attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] == 1000 + 2000 + 300
    assert attrs[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 2000
    assert attrs[sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] == 300
    assert attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 50
    assert_cost(span, CACHED_USD)
    assert math.isclose(attrs[sc.LLMCOST_COST_CACHE_WRITE], 100 * W5M + 200 * W1H)
    saved = 2000 * (IN - READ) - (100 * (W5M - IN) + 200 * (W1H - IN))
    assert math.isclose(attrs[sc.LLMCOST_CACHE_SAVINGS], saved)


def test_messages_create(telemetry, anthropic_client):
    message = anthropic_client.messages.create(model=MODEL, max_tokens=256, messages=MSGS,
                                               **scenario(**CACHED))
    span = telemetry.span()
    assert span.name == f"chat {MODEL}"
    assert span.kind is SpanKind.CLIENT
    attrs = span.attributes
    assert attrs[sc.GEN_AI_PROVIDER_NAME] == "anthropic"
    assert attrs[sc.GEN_AI_REQUEST_MAX_TOKENS] == 256
    assert attrs[sc.GEN_AI_RESPONSE_ID] == message.id
    assert attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("end_turn",)
    assert_cached_call(span)
    tokens_by_kind = telemetry.sums(sc.METRIC_TOKENS, sc.LLMCOST_TOKEN_KIND)
    assert tokens_by_kind == {"input_uncached": 1000, "cache_read": 2000, "cache_write": 300,
                              "output": 50}


async def test_messages_create_async(telemetry, async_anthropic_client):
    await async_anthropic_client.messages.create(model=MODEL, max_tokens=256, messages=MSGS,
                                                 **scenario(**CACHED))
    assert_cached_call(telemetry.span())


def test_messages_create_stream_counts_output_once(telemetry, anthropic_client):
    events = list(anthropic_client.messages.create(
        model=MODEL, max_tokens=256, messages=MSGS, stream=True, **scenario(**CACHED)))
    assert events[0].type == "message_start" and events[-1].type == "message_stop"
    span = telemetry.span()
    # message_start's provisional output count must not be added to message_delta's total.
    assert span.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 50
    assert span.attributes[sc.GEN_AI_REQUEST_STREAM] is True
    assert_cached_call(span)


async def test_messages_create_stream_async(telemetry, async_anthropic_client):
    stream = await async_anthropic_client.messages.create(
        model=MODEL, max_tokens=256, messages=MSGS, stream=True, **scenario(**CACHED))
    async for _ in stream:
        pass
    assert_cached_call(telemetry.span())


def test_messages_stream_helper(telemetry, anthropic_client):
    with anthropic_client.messages.stream(model=MODEL, max_tokens=256, messages=MSGS,
                                          **scenario(**CACHED)) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.usage.output_tokens == 50
    assert_cached_call(telemetry.span())


async def test_messages_stream_helper_async(telemetry, async_anthropic_client):
    async with async_anthropic_client.messages.stream(
            model=MODEL, max_tokens=256, messages=MSGS, **scenario(**CACHED)) as stream:
        final = await stream.get_final_message()
    assert final.usage.input_tokens == 1000
    assert_cached_call(telemetry.span())


def test_messages_stream_helper_left_early(telemetry, anthropic_client):
    with anthropic_client.messages.stream(model=MODEL, max_tokens=256, messages=MSGS,
                                          **scenario(chunks=10, **CACHED)) as stream:
        for _ in stream:
            break
    span = telemetry.span()
    attrs = span.attributes
    # message_start gave exact input usage; the output is estimated from what streamed.
    assert attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] == 3300
    assert attrs[sc.LLMCOST_PRICING_STATUS] == sc.STATUS_ESTIMATED


def test_messages_stream_closed_after_first_event(telemetry, anthropic_client):
    stream = anthropic_client.messages.create(model=MODEL, max_tokens=256, messages=MSGS,
                                              stream=True, **scenario(chunks=10, **CACHED))
    next(iter(stream))
    stream.close()
    span = telemetry.span()
    assert span.attributes[sc.LLMCOST_PRICING_STATUS] == sc.STATUS_ESTIMATED


def test_messages_stream_failing_midway(telemetry, anthropic_client):
    with pytest.raises(Exception) as raised:
        for _ in anthropic_client.messages.create(
                model=MODEL, max_tokens=256, messages=MSGS, stream=True,
                **scenario(chunks=10, stream_error_after=2, **CACHED)):
            pass
    span = telemetry.span()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE] == type(raised.value).__qualname__


def test_messages_with_raw_response(telemetry, anthropic_client):
    raw = anthropic_client.messages.with_raw_response.create(
        model=MODEL, max_tokens=256, messages=MSGS, **scenario(**CACHED))
    assert raw.parse().usage.cache_read_input_tokens == 2000
    assert_cached_call(telemetry.span())


def test_messages_with_raw_response_stream(telemetry, anthropic_client):
    raw = anthropic_client.messages.with_raw_response.create(
        model=MODEL, max_tokens=256, messages=MSGS, stream=True, **scenario(**CACHED))
    assert [e.type for e in raw.parse()][-1] == "message_stop"
    assert_cached_call(telemetry.span())


@pytest.mark.skipif(not hasattr(anthropic.resources.messages.Messages, "parse"),
                    reason="messages.parse exists from anthropic 0.69 on")
def test_messages_parse(telemetry, anthropic_client):
    anthropic_client.messages.parse(model=MODEL, max_tokens=256, messages=MSGS,
                                    **scenario(**CACHED))
    assert_cached_call(telemetry.span())


@pytest.mark.parametrize("native_input,tier", [(200_000 - 2300, "base"),
                                               (200_001 - 2300, "long")])
def test_long_context_tier_prices_every_token_higher(telemetry, anthropic_client,
                                                     native_input, tier):
    anthropic_client.messages.create(
        model=MODEL, max_tokens=256, messages=MSGS,
        **scenario(input_tokens=native_input, cached_tokens=2000, cache_write_5m=300,
                   output_tokens=1000))
    total_input = native_input + 2300
    assert telemetry.span().attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == total_input
    f_in, f_out = (1, 1) if tier == "base" else (2, 1.5)
    expected = (native_input * IN * f_in + 2000 * READ * f_in + 300 * W5M * f_in
                + 1000 * OUT * f_out)
    assert_cost(telemetry.span(), expected)


def test_dated_model_id(telemetry, anthropic_client):
    anthropic_client.messages.create(
        model="claude-haiku-4-5-20251001", max_tokens=64, messages=MSGS,
        **scenario(input_tokens=1000, output_tokens=100))
    # claude-haiku-4-5: $1 in / $5 out per M.
    assert_cost(telemetry.span(), 1000 * 1e-6 + 100 * 5e-6)


def test_rate_limit_error_passes_through(telemetry, anthropic_client):
    with pytest.raises(anthropic.RateLimitError):
        anthropic_client.messages.create(model=MODEL, max_tokens=64, messages=MSGS,
                                         **scenario(error_status=429))
    span = telemetry.span()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE] == "RateLimitError"


def test_sdk_retries_counted(telemetry, provider):
    client = anthropic.Anthropic(base_url=provider.anthropic_base_url, api_key="k",
                                 max_retries=2)
    provider.clear()
    client.messages.create(model=MODEL, max_tokens=64, messages=MSGS,
                           **scenario(fail_times=1, fail_status=529, **CACHED))
    assert len(provider.requests) == 2
    span = telemetry.span()
    assert span.attributes[sc.LLMCOST_RETRIES] == 1
    assert_cached_call(span)


def test_missing_usage_is_estimated_from_text(telemetry, anthropic_client):
    message = anthropic_client.messages.create(model=MODEL, max_tokens=64, messages=MSGS,
                                               **scenario(omit_usage=True))
    attrs = telemetry.span().attributes
    assert attrs[sc.LLMCOST_PRICING_STATUS] == sc.STATUS_ESTIMATED
    assert attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == tokens.count(message.content[0].text)


async def test_messages_with_raw_response_async(telemetry, async_anthropic_client):
    raw = await async_anthropic_client.messages.with_raw_response.create(
        model=MODEL, max_tokens=256, messages=MSGS, **scenario(**CACHED))
    parsed = raw.parse()  # anthropic 2.x: a coroutine; 0.x: the message
    if hasattr(parsed, "__await__"):
        parsed = await parsed
    assert parsed.usage.cache_read_input_tokens == 2000
    assert_cached_call(telemetry.span())
