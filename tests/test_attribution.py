"""Attribution (customer, conversation, feature) across scopes, threads, tasks and baggage."""

from __future__ import annotations

import asyncio
import math
import threading
from concurrent.futures import ThreadPoolExecutor

from opentelemetry import baggage, context

import otel_llmcost
from otel_llmcost import semconv as sc
from tests.conftest import scenario

MSGS = [{"role": "user", "content": "hi"}]


def who(span):
    return tuple(span.attributes.get(k) for k in (
        sc.LLMCOST_CUSTOMER_ID, sc.GEN_AI_CONVERSATION_ID, sc.LLMCOST_FEATURE))


def call(client, **kw):
    return client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, **kw)


def test_scope_sets_span_attributes_and_only_feature_reaches_metrics(telemetry, openai_client):
    with otel_llmcost.attributes(customer_id="acme", conversation_id="c-1", feature="search"):
        call(openai_client)
    call(openai_client)
    first, second = telemetry.finished()
    assert who(first) == ("acme", "c-1", "search")
    assert who(second) == (None, None, None)  # never invented
    points = telemetry.metric_points()
    for point in points[sc.METRIC_COST] + points[sc.METRIC_TOKENS]:
        assert sc.LLMCOST_CUSTOMER_ID not in point.attributes
        assert sc.GEN_AI_CONVERSATION_ID not in point.attributes
    assert {p.attributes.get(sc.LLMCOST_FEATURE) for p in points[sc.METRIC_COST]} == {
        "search", None}


def test_nested_scopes_override_only_their_keys(telemetry, openai_client):
    with otel_llmcost.attributes(customer_id="acme", feature="chat"):
        with otel_llmcost.attributes(conversation_id="c-2"):
            call(openai_client)
        with otel_llmcost.attributes(feature="summary"):
            call(openai_client)
        call(openai_client)
    assert [who(s) for s in telemetry.finished()] == [
        ("acme", "c-2", "chat"), ("acme", None, "summary"), ("acme", None, "chat")]


def test_decorator_sync_and_async(telemetry, openai_client, async_openai_client):
    @otel_llmcost.attributes(customer_id="deco")
    def handler():
        call(openai_client)

    @otel_llmcost.attributes(customer_id="adeco")
    async def ahandler():
        await async_openai_client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)

    handler()
    asyncio.run(ahandler())
    assert [who(s)[0] for s in telemetry.finished()] == ["deco", "adeco"]


def test_threads_started_inside_a_scope_inherit_it(telemetry, openai_client):
    class Worker(threading.Thread):  # a subclass overriding run() must work too
        def run(self):
            call(openai_client)

    with otel_llmcost.attributes(customer_id="threaded", feature="batch"):
        workers = [threading.Thread(target=call, args=(openai_client,)), Worker()]
        for worker in workers:
            worker.start()
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(lambda _: call(openai_client), range(2)))
    for worker in workers:
        worker.join()
    outside = threading.Thread(target=call, args=(openai_client,))
    outside.start()
    outside.join()
    found = sorted((who(s) for s in telemetry.finished()), key=repr)
    assert found == sorted([("threaded", None, "batch")] * 4 + [(None, None, None)], key=repr)


def test_asyncio_tasks_keep_their_own_scope(telemetry, async_openai_client):
    async def turn(customer):
        with otel_llmcost.attributes(customer_id=customer, conversation_id=f"conv-{customer}"):
            await asyncio.sleep(0)
            await async_openai_client.chat.completions.create(model="gpt-4o-mini",
                                                              messages=MSGS)

    async def main():
        await asyncio.gather(*(turn(f"c{i}") for i in range(5)))

    asyncio.run(main())
    assert sorted(who(s)[:2] for s in telemetry.finished()) == [
        (f"c{i}", f"conv-c{i}") for i in range(5)]


def test_baggage_sets_attribution_and_scope_wins(telemetry, openai_client):
    ctx = baggage.set_baggage(sc.LLMCOST_CUSTOMER_ID, "from-baggage")
    ctx = baggage.set_baggage(sc.LLMCOST_FEATURE, "web", ctx)
    ctx = baggage.set_baggage(sc.LLMCOST_CUSTOMER_TIER, "free", ctx)
    token = context.attach(ctx)
    try:
        call(openai_client)
        with otel_llmcost.attributes(customer_id="from-code", customer_tier="pro"):
            call(openai_client)
    finally:
        context.detach(token)
    spans = telemetry.finished()
    assert [who(s) for s in spans] == [
        ("from-baggage", None, "web"), ("from-code", None, "web")]
    assert [s.attributes[sc.LLMCOST_CUSTOMER_TIER] for s in spans] == ["free", "pro"]


def test_responses_conversation_param_does_not_override_scope(telemetry, openai_client):
    with otel_llmcost.attributes(conversation_id="app-conv"):
        openai_client.responses.create(model="gpt-4o", input="hi", conversation="conv_api")
    assert telemetry.span().attributes[sc.GEN_AI_CONVERSATION_ID] == "app-conv"


def test_100_concurrent_calls_each_priced_on_their_own_usage(telemetry, openai_client):
    def one(i):
        with otel_llmcost.attributes(customer_id=f"cust-{i}"):
            return call(openai_client, **scenario(input_tokens=1000 + i, output_tokens=10 + i))

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(one, range(100)))
    spans = telemetry.finished()
    assert len(spans) == 100
    for span in spans:
        i = int(span.attributes[sc.LLMCOST_CUSTOMER_ID].split("-")[1])
        assert span.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == 1000 + i
        # gpt-4o-mini: $0.15 in / $0.60 out per M.
        expected = (1000 + i) * 0.15e-6 + (10 + i) * 0.6e-6
        assert math.isclose(span.attributes[sc.GEN_AI_USAGE_COST_AMOUNT], expected)
    total = sum(telemetry.sums(sc.METRIC_COST, sc.LLMCOST_COST_COMPONENT).values())
    assert math.isclose(total, sum((1000 + i) * 0.15e-6 + (10 + i) * 0.6e-6
                                   for i in range(100)))
