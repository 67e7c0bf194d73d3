"""OpenAI instrumentation through the real openai SDK over real HTTP to the stand-in."""

from __future__ import annotations

import gc
import math

import openai
import pytest
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import BaseModel

from otel_llmcost import semconv as sc
from otel_llmcost.instrumentation import openai as openai_adapters
from tests.conftest import scenario

MSGS = [{"role": "user", "content": "What does the cache cost?"}]
# gpt-4o list prices (USD per token): input 2.50/M, cached input 1.25/M, output 10/M.
GPT4O_IN, GPT4O_CACHED, GPT4O_OUT = 2.5e-6, 1.25e-6, 10e-6
CACHED_CALL = dict(input_tokens=1000, cached_tokens=400, output_tokens=100)
# 600 uncached + 400 cached + 100 output
CACHED_CALL_USD = 600 * GPT4O_IN + 400 * GPT4O_CACHED + 100 * GPT4O_OUT


def assert_cost(span, amount, status=sc.STATUS_EXACT):
    attrs = span.attributes
    assert attrs[sc.LLMCOST_PRICING_STATUS] == status
    assert math.isclose(attrs[sc.GEN_AI_USAGE_COST_AMOUNT], amount, rel_tol=1e-9)
    parts = sum(attrs[k] for k in (sc.LLMCOST_COST_INPUT, sc.LLMCOST_COST_CACHE_READ,
                                   sc.LLMCOST_COST_CACHE_WRITE, sc.LLMCOST_COST_OUTPUT))
    assert math.isclose(parts, amount, rel_tol=1e-9)
    assert attrs[sc.GEN_AI_USAGE_COST_CURRENCY] == "USD"


def assert_cached_call(span):
    attrs = span.attributes
    assert attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] == 1000  # OpenAI already includes cached
    assert attrs[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 400
    assert attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 100
    assert_cost(span, CACHED_CALL_USD)
    assert math.isclose(attrs[sc.LLMCOST_CACHE_SAVINGS], 400 * (GPT4O_IN - GPT4O_CACHED))


def test_chat_create_span_follows_semconv(telemetry, openai_client, provider):
    response = openai_client.chat.completions.create(
        model="gpt-4o", messages=MSGS, max_tokens=64, **scenario(**CACHED_CALL))
    span = telemetry.span()
    assert span.name == "chat gpt-4o"
    assert span.kind is SpanKind.CLIENT
    attrs = span.attributes
    assert attrs[sc.GEN_AI_OPERATION_NAME] == "chat"
    assert attrs[sc.GEN_AI_PROVIDER_NAME] == "openai"
    assert attrs[sc.GEN_AI_REQUEST_MODEL] == "gpt-4o"
    assert attrs[sc.GEN_AI_REQUEST_MAX_TOKENS] == 64
    assert attrs[sc.SERVER_ADDRESS] == "127.0.0.1"
    assert attrs[sc.SERVER_PORT] == int(provider.url.rsplit(":", 1)[1])
    assert attrs[sc.GEN_AI_RESPONSE_ID] == response.id
    assert attrs[sc.GEN_AI_RESPONSE_MODEL] == response.model
    assert attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert attrs[sc.GEN_AI_USAGE_COST_SOURCE] == "local"
    assert attrs[sc.LLMCOST_PRICING_VERSION].startswith("genai-prices==")
    assert sc.GEN_AI_INPUT_MESSAGES not in attrs  # content capture is off by default
    assert sc.GEN_AI_OUTPUT_MESSAGES not in attrs
    assert_cached_call(span)


def test_metrics_partition_cost_and_tokens(telemetry, openai_client):
    openai_client.chat.completions.create(model="gpt-4o", messages=MSGS,
                                          **scenario(**CACHED_CALL))
    points = telemetry.metric_points()
    cost = {p.attributes[sc.LLMCOST_COST_COMPONENT]: p.value for p in points[sc.METRIC_COST]}
    assert cost == pytest.approx({"input": 600 * GPT4O_IN, "cache_read": 400 * GPT4O_CACHED,
                                  "output": 100 * GPT4O_OUT})
    tokens = {p.attributes[sc.LLMCOST_TOKEN_KIND]: p.value for p in points[sc.METRIC_TOKENS]}
    assert tokens == {"input_uncached": 600, "cache_read": 400, "output": 100}
    (request_cost,) = points[sc.METRIC_REQUEST_COST]
    assert request_cost.count == 1 and math.isclose(request_cost.sum, CACHED_CALL_USD)
    assert list(request_cost.explicit_bounds) == list(sc.COST_BUCKETS)
    usage = {p.attributes[sc.GEN_AI_TOKEN_TYPE]: p.sum for p in points[sc.METRIC_TOKEN_USAGE]}
    assert usage == {"input": 1000, "output": 100}
    (duration,) = points[sc.METRIC_OPERATION_DURATION]
    assert duration.count == 1 and list(duration.explicit_bounds) == list(sc.DURATION_BUCKETS)
    (savings,) = points[sc.METRIC_CACHE_SAVINGS]
    assert savings.attributes[sc.LLMCOST_CACHE_EFFECT] == sc.CACHE_EFFECT_SAVING
    for point in points[sc.METRIC_COST] + points[sc.METRIC_TOKENS]:
        assert set(point.attributes) <= {sc.GEN_AI_OPERATION_NAME, sc.GEN_AI_PROVIDER_NAME,
                                         sc.GEN_AI_REQUEST_MODEL, sc.LLMCOST_FEATURE,
                                         sc.LLMCOST_COST_COMPONENT, sc.LLMCOST_TOKEN_KIND}


async def test_chat_create_async(telemetry, async_openai_client):
    await async_openai_client.chat.completions.create(model="gpt-4o", messages=MSGS,
                                                      **scenario(**CACHED_CALL))
    assert_cached_call(telemetry.span())


def test_chat_stream_injects_and_hides_usage(telemetry, openai_client, provider):
    provider.clear()
    stream = openai_client.chat.completions.create(
        model="gpt-4o", messages=MSGS, stream=True, **scenario(chunks=5, **CACHED_CALL))
    chunks = list(stream)
    sent = provider.requests[-1].body
    assert sent["stream_options"] == {"include_usage": True}
    # The caller sees exactly what it would see without usage: no usage-only chunk, and
    # no chunk carries a `usage` key in its dict form.
    assert all(chunk.choices for chunk in chunks)
    assert all("usage" not in chunk.to_dict() for chunk in chunks)
    assert_cached_call(telemetry.span())
    assert telemetry.span().attributes[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0


def test_chat_stream_caller_asked_for_usage_sees_it(telemetry, openai_client):
    chunks = list(openai_client.chat.completions.create(
        model="gpt-4o", messages=MSGS, stream=True, stream_options={"include_usage": True},
        **scenario(**CACHED_CALL)))
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    assert_cached_call(telemetry.span())


async def test_chat_stream_async_with_context_manager(telemetry, async_openai_client):
    stream = await async_openai_client.chat.completions.create(
        model="gpt-4o", messages=MSGS, stream=True, **scenario(**CACHED_CALL))
    async with stream as entered:
        chunks = [chunk async for chunk in entered]
    assert all(chunk.choices for chunk in chunks)
    assert_cached_call(telemetry.span())


def test_chat_stream_without_usage_is_estimated(telemetry, openai_client, provider,
                                               monkeypatch):
    monkeypatch.setenv(sc.ENV_STREAM_USAGE, "off")
    provider.clear()
    text = "".join(chunk.choices[0].delta.content or "" for chunk in
                   openai_client.chat.completions.create(model="gpt-4o", messages=MSGS,
                                                         stream=True))
    assert "stream_options" not in provider.requests[-1].body
    span = telemetry.span()
    attrs = span.attributes
    assert attrs[sc.LLMCOST_PRICING_STATUS] == sc.STATUS_ESTIMATED
    assert attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] > 0
    assert attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] > 0
    from otel_llmcost import tokens
    assert attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == tokens.count(text)
    assert_cost(span, attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] * GPT4O_IN
                + attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] * GPT4O_OUT, sc.STATUS_ESTIMATED)


def test_chat_stream_closed_after_first_chunk(telemetry, openai_client):
    stream = openai_client.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True,
                                                   **scenario(chunks=10, **CACHED_CALL))
    next(iter(stream))
    stream.close()
    span = telemetry.span()  # ended by close(), before any garbage collection
    assert span.end_time is not None
    assert span.attributes[sc.LLMCOST_PRICING_STATUS] == sc.STATUS_ESTIMATED
    assert span.status.status_code is not StatusCode.ERROR


def test_chat_stream_abandoned_is_ended_by_gc(telemetry, openai_client):
    stream = openai_client.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True,
                                                   **scenario(chunks=10))
    for _ in stream:
        break
    del stream
    gc.collect()
    assert len(telemetry.finished()) == 1


def test_chat_stream_failing_midway(telemetry, openai_client):
    stream = openai_client.chat.completions.create(
        model="gpt-4o", messages=MSGS, stream=True,
        **scenario(chunks=8, stream_error_after=3))
    seen = []
    with pytest.raises(Exception) as raised:
        for chunk in stream:
            seen.append(chunk)
    span = telemetry.span()
    assert 3 <= len(seen) < 8  # a role chunk, then 3 content chunks, then the break
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE] == type(raised.value).__qualname__
    assert span.attributes[sc.LLMCOST_PRICING_STATUS] == sc.STATUS_ESTIMATED


def test_chat_stream_helper(telemetry, openai_client):
    with openai_client.chat.completions.stream(model="gpt-4o", messages=MSGS,
                                               **scenario(**CACHED_CALL)) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    assert final.choices[0].message.content
    assert_cached_call(telemetry.span())


class Answer(BaseModel):
    answer: str
    confidence: float


def test_chat_parse(telemetry, openai_client):
    parsed = openai_client.chat.completions.parse(
        model="gpt-4o", messages=MSGS, response_format=Answer, **scenario(**CACHED_CALL))
    assert isinstance(parsed.choices[0].message.parsed, Answer)
    assert_cached_call(telemetry.span())


async def test_chat_parse_async(telemetry, async_openai_client):
    await async_openai_client.chat.completions.parse(
        model="gpt-4o", messages=MSGS, response_format=Answer, **scenario(**CACHED_CALL))
    assert_cached_call(telemetry.span())


def test_chat_with_raw_response(telemetry, openai_client):
    raw = openai_client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MSGS, **scenario(**CACHED_CALL))
    assert raw.headers.get("content-type", "").startswith("application/json")
    completion = raw.parse()
    assert completion.usage.prompt_tokens == 1000
    assert_cached_call(telemetry.span())


def test_chat_with_raw_response_stream(telemetry, openai_client):
    raw = openai_client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MSGS, stream=True, **scenario(**CACHED_CALL))
    chunks = list(raw.parse())
    assert chunks and all(chunk.choices for chunk in chunks)
    assert_cached_call(telemetry.span())


async def test_chat_with_raw_response_async(telemetry, async_openai_client):
    raw = await async_openai_client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MSGS, **scenario(**CACHED_CALL))
    assert raw.parse().usage.prompt_tokens == 1000
    assert_cached_call(telemetry.span())


def test_with_streaming_response(telemetry, openai_client):
    with openai_client.chat.completions.with_streaming_response.create(
            model="gpt-4o", messages=MSGS, **scenario(**CACHED_CALL)) as response:
        completion = response.parse()
    assert completion.usage.completion_tokens == 100
    assert_cached_call(telemetry.span())


def test_responses_create(telemetry, openai_client):
    response = openai_client.responses.create(model="gpt-4o", input="Hello",
                                              max_output_tokens=50, **scenario(**CACHED_CALL))
    span = telemetry.span()
    assert span.name == "chat gpt-4o"
    assert span.attributes[sc.GEN_AI_REQUEST_MAX_TOKENS] == 50
    assert span.attributes[sc.GEN_AI_RESPONSE_ID] == response.id
    assert_cached_call(span)


async def test_responses_create_async_stream(telemetry, async_openai_client):
    stream = await async_openai_client.responses.create(
        model="gpt-4o", input="Hello", stream=True, **scenario(**CACHED_CALL))
    events = [event async for event in stream]
    assert events[-1].type == "response.completed"
    assert_cached_call(telemetry.span())


def test_responses_stream_helper(telemetry, openai_client):
    with openai_client.responses.stream(model="gpt-4o", input="Hello",
                                        **scenario(**CACHED_CALL)) as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    assert final.usage.input_tokens == 1000
    assert_cached_call(telemetry.span())


async def test_responses_stream_helper_async(telemetry, async_openai_client):
    async with async_openai_client.responses.stream(model="gpt-4o", input="Hello",
                                                    **scenario(**CACHED_CALL)) as stream:
        async for _ in stream:
            pass
    assert_cached_call(telemetry.span())


def test_responses_with_raw_response(telemetry, openai_client):
    raw = openai_client.responses.with_raw_response.create(model="gpt-4o", input="Hello",
                                                           **scenario(**CACHED_CALL))
    assert raw.parse().usage.input_tokens == 1000
    assert_cached_call(telemetry.span())


def test_responses_conversation_parameter_gives_conversation_id(telemetry, openai_client):
    openai_client.responses.create(model="gpt-4o", input="Hi", conversation="conv_123")
    assert telemetry.span().attributes[sc.GEN_AI_CONVERSATION_ID] == "conv_123"
    openai_client.responses.create(model="gpt-4o", input="Hi")
    assert sc.GEN_AI_CONVERSATION_ID not in telemetry.finished()[-1].attributes


@pytest.mark.parametrize("use_async", [False, True])
async def test_embeddings(telemetry, openai_client, async_openai_client, use_async):
    kwargs = dict(model="text-embedding-3-small", input=["a", "b"],
                  **scenario(input_tokens=5000))
    if use_async:
        result = await async_openai_client.embeddings.create(**kwargs)
    else:
        result = openai_client.embeddings.create(**kwargs)
    assert len(result.data) == 2
    span = telemetry.span()
    assert span.name == "embeddings text-embedding-3-small"
    assert span.attributes[sc.GEN_AI_OPERATION_NAME] == "embeddings"
    assert span.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == 5000
    assert_cost(span, 5000 * 0.02e-6)  # text-embedding-3-small: $0.02 per M tokens


def test_embeddings_with_raw_response(telemetry, openai_client):
    raw = openai_client.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input="a", **scenario(input_tokens=100))
    assert len(raw.parse().data) == 1
    assert_cost(telemetry.span(), 100 * 0.02e-6)


def test_provider_error_passes_through_unchanged(telemetry, openai_client):
    with pytest.raises(openai.BadRequestError) as raised:
        openai_client.chat.completions.create(model="gpt-4o", messages=MSGS,
                                              **scenario(error_status=400))
    assert raised.value.status_code == 400
    span = telemetry.span()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE] == "BadRequestError"
    assert sc.GEN_AI_USAGE_COST_AMOUNT not in span.attributes
    (duration,) = telemetry.metric_points()[sc.METRIC_OPERATION_DURATION]
    assert duration.attributes[sc.ERROR_TYPE] == "BadRequestError"


def test_sdk_retries_are_counted_and_billed_once(telemetry, provider):
    client = openai.OpenAI(base_url=provider.openai_base_url, api_key="k", max_retries=2)
    provider.clear()
    client.chat.completions.create(model="gpt-4o", messages=MSGS,
                                   **scenario(fail_times=2, fail_status=503, **CACHED_CALL))
    assert len(provider.requests) == 3
    span = telemetry.span()
    assert span.attributes[sc.LLMCOST_RETRIES] == 2
    assert_cached_call(span)
    assert telemetry.sums(sc.METRIC_TOKENS, sc.LLMCOST_TOKEN_KIND)["output"] == 100


def test_dated_model_and_reasoning_tokens(telemetry, openai_client):
    openai_client.chat.completions.create(
        model="gpt-4o", messages=MSGS,
        **scenario(model="gpt-4o-2024-08-06", input_tokens=2000, output_tokens=500))
    span = telemetry.span()
    assert span.attributes[sc.GEN_AI_RESPONSE_MODEL] == "gpt-4o-2024-08-06"
    assert_cost(span, 2000 * GPT4O_IN + 500 * GPT4O_OUT)
    # gpt-5: input 1.25/M, output 10/M; reasoning tokens are output tokens.
    openai_client.chat.completions.create(
        model="gpt-5", messages=MSGS,
        **scenario(input_tokens=1000, output_tokens=3000, reasoning_tokens=2500))
    span = telemetry.finished()[-1]
    assert span.attributes[sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] == 2500
    assert_cost(span, 1000 * 1.25e-6 + 3000 * 10e-6)


def test_flex_service_tier_halves_cost(telemetry, openai_client):
    openai_client.chat.completions.create(
        model="gpt-4o", messages=MSGS, **scenario(service_tier="flex", **CACHED_CALL))
    span = telemetry.span()
    assert span.attributes[sc.LLMCOST_SERVICE_TIER] == "flex"
    assert_cost(span, CACHED_CALL_USD / 2)


def test_provider_reported_cost_wins(telemetry, openai_client):
    openai_client.chat.completions.create(
        model="gpt-4o", messages=MSGS, **scenario(provider_cost=0.0123, **CACHED_CALL))
    span = telemetry.span()
    assert span.attributes[sc.GEN_AI_USAGE_COST_SOURCE] == "provider"
    assert_cost(span, 0.0123)


def test_unknown_model_is_never_priced_zero(telemetry, openai_client):
    openai_client.chat.completions.create(model="acme-llm-9000", messages=MSGS,
                                          **scenario(**CACHED_CALL))
    attrs = telemetry.span().attributes
    assert attrs[sc.LLMCOST_PRICING_STATUS] == sc.STATUS_UNKNOWN
    assert sc.GEN_AI_USAGE_COST_AMOUNT not in attrs
    assert attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] == 1000
    points = telemetry.metric_points()
    assert sum(p.value for p in points[sc.METRIC_UNPRICED_CALLS]) == 1
    assert not points[sc.METRIC_COST]


def test_suppressed_instrumentation_makes_no_span(telemetry, openai_client):
    with suppress_instrumentation():
        openai_client.chat.completions.create(model="gpt-4o", messages=MSGS)
    assert telemetry.finished() == []


def test_fault_in_our_code_never_reaches_the_caller(telemetry, openai_client, monkeypatch,
                                                    caplog):
    def broken(self, response):
        raise KeyError("surprise response shape")
    monkeypatch.setattr(openai_adapters.ChatAdapter, "reply", broken)
    for _ in range(3):
        response = openai_client.chat.completions.create(model="gpt-4o", messages=MSGS)
        assert response.choices[0].message.content
    assert len(telemetry.finished()) == 3  # spans still end
    faults = [r for r in caplog.records if "internal fault" in r.getMessage()]
    assert len(faults) <= 1  # logged once, not per call


def test_cost_exemplar_points_at_the_call_span_even_for_streams(telemetry, openai_client):
    for _ in openai_client.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True,
                                                   **scenario(**CACHED_CALL)):
        pass
    span = telemetry.span()
    points = telemetry.metric_points()
    for name in (sc.METRIC_REQUEST_COST, sc.METRIC_OPERATION_DURATION):
        (point,) = points[name]
        assert [e.span_id for e in point.exemplars] == [span.context.span_id], name


async def test_chat_with_raw_response_async_stream(telemetry, async_openai_client):
    raw = await async_openai_client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MSGS, stream=True, **scenario(**CACHED_CALL))
    chunks = [chunk async for chunk in raw.parse()]
    assert chunks and all(chunk.choices for chunk in chunks)
    assert_cached_call(telemetry.span())
