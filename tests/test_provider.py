"""The stand-in provider must be indistinguishable from the real APIs to the real SDK clients.

Every test drives the unmodified ``openai``/``anthropic`` clients over HTTP (fixtures in
``conftest.py``: ``max_retries=0``, short timeouts), so a wire-format mistake shows up as
an SDK parse error or a wrong value here rather than in the instrumentation tests.
"""

from __future__ import annotations

import http.client
import json
import time
from typing import Any

import anthropic
import openai
import pytest
from pydantic import BaseModel

from otel_llmcost.demo.provider import MAX_RECORDED_REQUESTS, SCENARIO_HEADER, Scenario, StandInProvider

USER = [{"role": "user", "content": "What is the capital of France?"}]  # 30 chars -> 7 tokens
# A cut stream surfaces as the transport's error (httpx or httpx2) or, in openai 3.x,
# wrapped in APIConnectionError.
CUT_STREAM = "peer closed connection|Connection error"
WORDS = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et"


@pytest.fixture(autouse=True)
def _fresh_recording(provider: StandInProvider) -> None:
    provider.clear()


def raw_post(provider: StandInProvider, path: str, body: dict[str, Any], **headers: str) -> tuple[int, Any, bytes]:
    """A bare HTTP/1.1 POST, to check framing that the SDKs hide (ping events, chunking)."""
    conn = http.client.HTTPConnection(provider.url.removeprefix("http://"), timeout=5)
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json", **headers})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def sse_events(payload: bytes) -> list[tuple[str | None, str]]:
    events = []
    for block in payload.decode().strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((lines.get("event"), lines["data"]))
    return events


# --- OpenAI Chat Completions ----------------------------------------------------------


def test_chat_defaults(openai_client: openai.OpenAI, provider: StandInProvider) -> None:
    completion = openai_client.chat.completions.create(model="gpt-4o-mini", messages=USER)

    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "gpt-4o-mini"
    assert completion.service_tier == "default"
    choice = completion.choices[0]
    assert (choice.message.content, choice.finish_reason, choice.logprobs) == (WORDS, "stop", None)
    usage = completion.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (7, 16, 23)
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details is not None and usage.completion_tokens_details.reasoning_tokens == 0
    assert provider.requests[0].body["messages"] == USER


def test_chat_max_tokens_limits_words(openai_client: openai.OpenAI) -> None:
    completion = openai_client.chat.completions.create(model="m", messages=USER, max_completion_tokens=3)

    assert completion.choices[0].message.content == "lorem ipsum dolor"
    assert completion.usage is not None and completion.usage.completion_tokens == 3


async def test_chat_scenario_usage(async_openai_client: openai.AsyncOpenAI) -> None:
    scenario = Scenario(
        input_tokens=1000,
        output_tokens=130,
        cached_tokens=800,
        cache_write_5m=50,
        cache_write_1h=25,
        reasoning_tokens=30,
        model="gpt-4o-2024-08-06",
        service_tier="flex",
        provider_cost=0.0123,
        finish_reason="length",
    )
    completion = await async_openai_client.chat.completions.create(
        model="gpt-4o", messages=USER, extra_headers=scenario.headers()
    )

    assert (completion.model, completion.service_tier) == ("gpt-4o-2024-08-06", "flex")
    assert completion.choices[0].finish_reason == "length"
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens_details and usage.completion_tokens_details
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (1000, 130, 1130)
    assert usage.prompt_tokens_details.cached_tokens == 800
    assert usage.prompt_tokens_details.cache_write_tokens == 75
    assert usage.completion_tokens_details.reasoning_tokens == 30
    assert usage.model_extra == {"cost": 0.0123}


def test_chat_openai_input_defaults_include_cache(openai_client: openai.OpenAI) -> None:
    completion = openai_client.chat.completions.create(
        model="m", messages=USER, extra_headers=Scenario(cached_tokens=100, cache_write_1h=10).headers()
    )

    assert completion.usage is not None and completion.usage.prompt_tokens == 7 + 100 + 10


def test_chat_stream_sdk_chunks(openai_client: openai.OpenAI) -> None:
    chunks = list(openai_client.chat.completions.create(model="m", messages=USER, stream=True))

    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == WORDS
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert len({chunk.id for chunk in chunks}) == 1


def test_chat_stream_without_include_usage_has_no_usage_key(provider: StandInProvider) -> None:
    # Raw HTTP: an instrumented SDK (other test modules instrument for the session) may inject include_usage.
    status, _, payload = raw_post(provider, "/v1/chat/completions", {"model": "m", "messages": USER, "stream": True})
    *chunks, done = sse_events(payload)

    assert status == 200 and done == (None, "[DONE]")
    assert len(chunks) == 1 + 16 + 1
    assert all("usage" not in json.loads(data) for _, data in chunks)
    assert json.loads(chunks[-1][1])["choices"][0]["finish_reason"] == "stop"


async def test_chat_stream_include_usage(async_openai_client: openai.AsyncOpenAI) -> None:
    stream = await async_openai_client.chat.completions.create(
        model="m",
        messages=USER,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=Scenario(chunks=3, cached_tokens=4).headers(),
    )
    chunks = [chunk async for chunk in stream]

    *earlier, last = chunks
    assert all("usage" in c.model_fields_set and c.usage is None for c in earlier)
    assert last.choices == []
    assert last.usage is not None and last.usage.prompt_tokens_details is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (7 + 4, 16)
    assert last.usage.prompt_tokens_details.cached_tokens == 4
    content = [c.choices[0].delta.content for c in earlier if c.choices and c.choices[0].delta.content]
    assert len(content) == 3 and "".join(content) == WORDS


def test_chat_stream_omit_usage_overrides_include_usage(openai_client: openai.OpenAI) -> None:
    chunks = list(
        openai_client.chat.completions.create(
            model="m",
            messages=USER,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers=Scenario(omit_usage=True).headers(),
        )
    )

    assert all("usage" not in chunk.model_fields_set for chunk in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_chat_stream_helper_final_completion(openai_client: openai.OpenAI) -> None:
    with openai_client.chat.completions.stream(
        model="m", messages=USER, stream_options={"include_usage": True}
    ) as stream:
        final = stream.get_final_completion()

    assert final.choices[0].message.content == WORDS
    assert final.usage is not None and final.usage.completion_tokens == 16


class City(BaseModel):
    name: str
    population: int


class Answer(BaseModel):
    city: City
    confident: bool
    tags: list[str]
    score: float


def test_chat_parse_with_pydantic_model(openai_client: openai.OpenAI, provider: StandInProvider) -> None:
    completion = openai_client.chat.completions.parse(model="m", messages=USER, response_format=Answer)

    parsed = completion.choices[0].message.parsed
    assert parsed == Answer(city=City(name="x", population=1), confident=True, tags=[], score=1)
    assert provider.requests[0].body["response_format"]["type"] == "json_schema"
    assert provider.requests[0].headers["x-stainless-helper-method"] == "chat.completions.parse"


def test_parse_helpers_of_responses_and_messages(
    openai_client: openai.OpenAI, anthropic_client: anthropic.Anthropic
) -> None:
    response = openai_client.responses.parse(model="m", input="hi", text_format=City)
    message = anthropic_client.messages.parse(model="claude-x", max_tokens=50, messages=USER, output_format=City)

    assert response.output_parsed == message.parsed_output == City(name="x", population=1)


# --- OpenAI Responses -----------------------------------------------------------------


def test_responses_non_stream(openai_client: openai.OpenAI) -> None:
    response = openai_client.responses.create(
        model="gpt-5",
        input="What is the capital of France?",
        instructions="Be brief.",  # 9 chars: counted as input
        extra_headers=Scenario(cached_tokens=2, cache_write_5m=3, reasoning_tokens=5, provider_cost=0.5).headers(),
    )

    assert response.id.startswith("resp_")
    assert (response.status, response.model, response.service_tier) == ("completed", "gpt-5", "default")
    assert response.output_text == WORDS
    usage = response.usage
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (9 + 2 + 3, 21, 35)
    assert usage.input_tokens_details.cached_tokens == 2
    assert usage.input_tokens_details.cache_write_tokens == 3
    assert usage.output_tokens_details.reasoning_tokens == 5
    assert usage.model_extra == {"cost": 0.5}


def test_responses_raw_stream_event_sequence(openai_client: openai.OpenAI) -> None:
    events = list(
        openai_client.responses.create(
            model="gpt-5", input=USER, stream=True, extra_headers=Scenario(chunks=2).headers()
        )
    )

    assert [event.type for event in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert events[0].response.usage is None  # type: ignore[union-attr]
    completed = events[-1].response  # type: ignore[union-attr]
    assert completed.usage is not None and completed.usage.input_tokens == 7


def test_responses_stream_helper(openai_client: openai.OpenAI) -> None:
    with openai_client.responses.stream(model="gpt-5", input="hello") as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()

    assert "".join(deltas) == final.output_text == WORDS
    assert final.usage is not None and (final.usage.input_tokens, final.usage.output_tokens) == (1, 16)


async def test_responses_stream_helper_async(async_openai_client: openai.AsyncOpenAI) -> None:
    async with async_openai_client.responses.stream(
        model="gpt-5", input="hello", extra_headers=Scenario(model="gpt-5-2025-08-07").headers()
    ) as stream:
        final = await stream.get_final_response()

    assert final.model == "gpt-5-2025-08-07"
    assert final.output_text == WORDS


# --- OpenAI Embeddings ----------------------------------------------------------------


def test_embeddings_default_base64_request(openai_client: openai.OpenAI, provider: StandInProvider) -> None:
    result = openai_client.embeddings.create(model="text-embedding-3-small", input=["hello world", "bye"])
    again = openai_client.embeddings.create(model="text-embedding-3-small", input="hello world")

    assert provider.requests[0].body["encoding_format"] == "base64"  # the SDK asks for base64 by default
    assert [item.index for item in result.data] == [0, 1]
    assert all(len(item.embedding) == 8 and all(isinstance(x, float) for x in item.embedding) for item in result.data)
    assert again.data[0].embedding == result.data[0].embedding  # deterministic
    assert (result.usage.prompt_tokens, result.usage.total_tokens) == (3, 3)


async def test_embeddings_float_async(async_openai_client: openai.AsyncOpenAI) -> None:
    result = await async_openai_client.embeddings.create(
        model="text-embedding-3-small",
        input="hello world",
        encoding_format="float",
        dimensions=4,
        extra_headers=Scenario(input_tokens=42).headers(),
    )

    assert len(result.data[0].embedding) == 4
    assert result.usage.prompt_tokens == 42


# --- Anthropic Messages ---------------------------------------------------------------


def test_messages_defaults_count_system(anthropic_client: anthropic.Anthropic) -> None:
    message = anthropic_client.messages.create(
        model="claude-haiku-4-5", max_tokens=5, system="You are terse.", messages=USER  # 14 + 30 chars
    )

    assert message.id.startswith("msg_")
    assert (message.model, message.stop_reason, message.stop_sequence) == ("claude-haiku-4-5", "end_turn", None)
    assert message.content[0].type == "text" and message.content[0].text == "lorem ipsum dolor sit amet"
    usage = message.usage
    assert (usage.input_tokens, usage.output_tokens) == (11, 5)
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (0, 0)
    assert usage.service_tier == "standard"


async def test_messages_cache_fields(async_anthropic_client: anthropic.AsyncAnthropic) -> None:
    scenario = Scenario(
        input_tokens=20, cached_tokens=1000, cache_write_5m=300, cache_write_1h=200, reasoning_tokens=7
    )
    message = await async_anthropic_client.messages.create(
        model="claude-opus-4-1", max_tokens=100, messages=USER, extra_headers=scenario.headers()
    )

    usage = message.usage
    assert usage.input_tokens == 20  # Anthropic's input_tokens excludes the cache
    assert usage.cache_read_input_tokens == 1000
    assert usage.cache_creation_input_tokens == 500
    assert usage.cache_creation is not None
    assert (usage.cache_creation.ephemeral_5m_input_tokens, usage.cache_creation.ephemeral_1h_input_tokens) == (300, 200)
    assert usage.output_tokens == 16 + 7
    assert usage.output_tokens_details is not None and usage.output_tokens_details.thinking_tokens == 7


def test_messages_raw_stream_usage_is_cumulative(anthropic_client: anthropic.Anthropic) -> None:
    stream = anthropic_client.messages.create(
        model="claude-x",
        max_tokens=50,
        messages=USER,
        stream=True,
        extra_headers=Scenario(output_tokens=40, cached_tokens=9, cache_write_5m=3, chunks=4).headers(),
    )
    events = list(stream)

    assert [event.type for event in events] == [  # the SDK drops the `ping`
        "message_start",
        "content_block_start",
        *["content_block_delta"] * 4,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start, delta = events[0], events[-2]
    assert start.type == "message_start" and delta.type == "message_delta"
    assert start.message.usage.output_tokens == 1  # provisional
    assert (start.message.usage.input_tokens, start.message.usage.cache_read_input_tokens) == (7, 9)
    assert start.message.usage.cache_creation_input_tokens == 3
    assert delta.usage.output_tokens == 40  # cumulative final count, not an increment
    assert (delta.usage.input_tokens, delta.usage.cache_read_input_tokens) == (7, 9)  # repeated, not additional
    assert delta.delta.stop_reason == "end_turn"


def test_messages_stream_helper(anthropic_client: anthropic.Anthropic) -> None:
    with anthropic_client.messages.stream(
        model="claude-x", max_tokens=8, messages=USER, extra_headers=Scenario(cached_tokens=5).headers()
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert text == "lorem ipsum dolor sit amet consectetur adipiscing elit"
    assert final.content[0].type == "text" and final.content[0].text == text
    assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.cache_read_input_tokens) == (7, 8, 5)


async def test_messages_stream_helper_async(async_anthropic_client: anthropic.AsyncAnthropic) -> None:
    async with async_anthropic_client.messages.stream(
        model="claude-x", max_tokens=8, messages=USER, extra_headers=Scenario(finish_reason="max_tokens").headers()
    ) as stream:
        pieces = [piece async for piece in stream.text_stream]
        final = await stream.get_final_message()

    assert len(pieces) == 8
    assert final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == 8


def test_messages_wire_framing(provider: StandInProvider) -> None:
    body = {"model": "claude-x", "max_tokens": 2, "messages": USER, "stream": True}
    status, headers, payload = raw_post(provider, "/v1/messages", body)

    assert status == 200
    assert headers["Transfer-Encoding"] == "chunked"
    assert headers["Content-Type"].startswith("text/event-stream")
    assert headers["request-id"].startswith("req_")
    events = sse_events(payload)
    assert [name for name, _ in events][:4] == ["message_start", "content_block_start", "ping", "content_block_delta"]
    assert all(json.loads(data)["type"] == name for name, data in events)


# --- HTTP behaviour shared by both dialects -------------------------------------------


def test_keep_alive_across_json_and_stream_answers(provider: StandInProvider) -> None:
    conn = http.client.HTTPConnection(provider.url.removeprefix("http://"), timeout=5)
    bodies = [
        {"model": "m", "messages": USER},
        {"model": "m", "messages": USER, "stream": True},
        {"model": "m", "messages": USER},
    ]
    sockets, payloads = [], []
    try:
        for body in bodies:
            conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
            response = conn.getresponse()
            payloads.append(response.read())
            sockets.append(conn.sock)
    finally:
        conn.close()

    assert sockets[0] is not None and sockets.count(sockets[0]) == 3  # one connection served all three
    assert sse_events(payloads[1])[-1] == (None, "[DONE]")
    assert json.loads(payloads[2])["object"] == "chat.completion"


def test_with_raw_response_headers(openai_client: openai.OpenAI, anthropic_client: anthropic.Anthropic) -> None:
    raw = openai_client.chat.completions.with_raw_response.create(model="m", messages=USER)
    raw_message = anthropic_client.messages.with_raw_response.create(model="c", max_tokens=2, messages=USER)

    assert raw.headers["x-request-id"].startswith("req_")
    assert raw.parse().choices[0].message.content == WORDS
    assert raw_message.headers["request-id"].startswith("req_")
    assert raw_message.parse().usage.output_tokens == 2


@pytest.mark.parametrize(
    ("status", "error_type", "expected"),
    [(400, None, openai.BadRequestError), (404, None, openai.NotFoundError), (429, "tokens", openai.RateLimitError)],
)
def test_openai_errors(
    openai_client: openai.OpenAI,
    provider: StandInProvider,
    status: int,
    error_type: str | None,
    expected: type[openai.APIStatusError],
) -> None:
    with pytest.raises(expected) as caught:
        openai_client.responses.create(
            model="m", input="hi", extra_headers=Scenario(error_status=status, error_type=error_type).headers()
        )

    assert caught.value.status_code == status
    assert caught.value.type == (error_type or {400: "invalid_request_error", 404: "not_found_error"}[status])
    assert caught.value.request_id is not None and caught.value.request_id.startswith("req_")
    assert len(provider.requests) == 1


@pytest.mark.parametrize(
    ("status", "expected"),
    [(429, anthropic.RateLimitError), (529, anthropic.OverloadedError), (500, anthropic.InternalServerError)],
)
def test_anthropic_errors(
    anthropic_client: anthropic.Anthropic,
    provider: StandInProvider,
    status: int,
    expected: type[anthropic.APIStatusError],
) -> None:
    with pytest.raises(expected) as caught:
        anthropic_client.messages.create(
            model="c", max_tokens=2, messages=USER, extra_headers=Scenario(error_status=status).headers()
        )

    assert caught.value.status_code == status
    assert isinstance(caught.value.body, dict) and caught.value.body["type"] == "error"
    assert caught.value.request_id is not None
    assert len(provider.requests) == 1


def test_openai_retries_then_succeeds(openai_client: openai.OpenAI, provider: StandInProvider) -> None:
    started = time.monotonic()
    completion = openai_client.with_options(max_retries=2).chat.completions.create(
        model="m", messages=USER, extra_headers=Scenario(fail_times=2).headers()
    )

    assert completion.choices[0].message.content == WORDS
    assert [r.headers["x-stainless-retry-count"] for r in provider.requests] == ["0", "1", "2"]
    assert time.monotonic() - started < 1  # retry-after-ms: 1 overrides the SDK's 0.5 s+ backoff


async def test_anthropic_retries_then_succeeds(
    async_anthropic_client: anthropic.AsyncAnthropic, provider: StandInProvider
) -> None:
    message = await async_anthropic_client.with_options(max_retries=2).messages.create(
        model="c", max_tokens=2, messages=USER, extra_headers=Scenario(fail_times=2, fail_status=529).headers()
    )

    assert message.usage.output_tokens == 2
    assert [r.headers["x-stainless-retry-count"] for r in provider.requests] == ["0", "1", "2"]


def test_retries_exhausted(anthropic_client: anthropic.Anthropic, provider: StandInProvider) -> None:
    with pytest.raises(anthropic.InternalServerError):
        anthropic_client.with_options(max_retries=2).messages.create(
            model="c", max_tokens=2, messages=USER, extra_headers=Scenario(fail_times=3).headers()
        )

    assert len(provider.requests) == 3


def test_openai_stream_error_mid_iteration(openai_client: openai.OpenAI) -> None:
    received = []
    stream = openai_client.chat.completions.create(
        model="m", messages=USER, stream=True, extra_headers=Scenario(stream_error_after=2).headers()
    )
    with pytest.raises(Exception, match=CUT_STREAM):
        for chunk in stream:
            received.append(chunk.choices[0].delta.content)

    assert received == ["", "lorem ", "ipsum "]


async def test_openai_responses_stream_error_after_all_content(async_openai_client: openai.AsyncOpenAI) -> None:
    received = []
    with pytest.raises(Exception, match=CUT_STREAM):
        async with async_openai_client.responses.stream(
            model="m", input="hi", extra_headers=Scenario(chunks=2, stream_error_after=5).headers()
        ) as stream:
            async for event in stream:
                received.append(event.type)

    assert received[-1] == "response.output_text.delta"  # cut before output_text.done / completed
    assert received.count("response.output_text.delta") == 2


def test_anthropic_stream_error_mid_iteration(anthropic_client: anthropic.Anthropic) -> None:
    received = []
    with pytest.raises(Exception, match=CUT_STREAM):  # anthropic does not wrap it in APIConnectionError
        with anthropic_client.messages.stream(
            model="c", max_tokens=8, messages=USER, extra_headers=Scenario(stream_error_after=3).headers()
        ) as stream:
            for text in stream.text_stream:
                received.append(text)

    assert received == ["lorem ", "ipsum ", "dolor "]


def test_timeout_and_late_write_stay_quiet(
    openai_client: openai.OpenAI, capfd: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(openai.APITimeoutError):
        openai_client.chat.completions.create(
            model="m", messages=USER, timeout=0.05, extra_headers=Scenario(delay_ms=200).headers()
        )
    time.sleep(0.25)  # let the server answer into the closed connection

    assert capfd.readouterr().err == ""


@pytest.mark.parametrize(
    "header", ['{"input_token": 3}', '{"input_tokens": "3"}', "[1]", "not json"], ids=["typo", "type", "array", "json"]
)
def test_bad_scenario_header_is_a_400(anthropic_client: anthropic.Anthropic, header: str) -> None:
    with pytest.raises(anthropic.BadRequestError, match=SCENARIO_HEADER):
        anthropic_client.messages.create(
            model="c", max_tokens=2, messages=USER, extra_headers={SCENARIO_HEADER: header}
        )


def test_unknown_route_is_a_404(provider: StandInProvider) -> None:
    status, _, payload = raw_post(provider, "/v1/nope", {})

    assert status == 404
    assert json.loads(payload)["error"]["type"] == "not_found_error"


# --- the provider object --------------------------------------------------------------


def test_recording(openai_client: openai.OpenAI, provider: StandInProvider) -> None:
    openai_client.chat.completions.create(model="m", messages=USER, extra_headers={"X-Custom": "yes"})
    (request,) = provider.requests

    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["x-custom"] == "yes"
    assert request.headers["authorization"] == "Bearer test-key"
    assert request.body == {"model": "m", "messages": USER}
    assert provider.requests.maxlen == MAX_RECORDED_REQUESTS
    provider.clear()
    assert not provider.requests


def test_scenario_headers_round_trip() -> None:
    scenario = Scenario(input_tokens=5, omit_usage=True, provider_cost=1)

    assert json.loads(Scenario().headers()[SCENARIO_HEADER]) == {}
    assert json.loads(scenario.headers()[SCENARIO_HEADER]) == {"input_tokens": 5, "omit_usage": True, "provider_cost": 1}
    assert Scenario.from_header(scenario.headers()[SCENARIO_HEADER]) == scenario


def test_lifecycle() -> None:
    server = StandInProvider()
    with pytest.raises(RuntimeError):
        server.url
    with server:
        assert server.openai_base_url == server.url + "/v1"
        assert server.anthropic_base_url == server.url
        status, _, _ = raw_post(server, "/v1/embeddings", {"model": "e", "input": "x"})
        assert status == 200
    server.stop()  # idempotent
