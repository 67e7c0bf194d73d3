"""A seeded multi-turn workload for the rollup processor, run under ``opentelemetry-instrument``.

Conversations of several turns (each turn one agent trace: a root span, one to three
real ``openai`` SDK calls to the stand-in provider at ``WORKLOAD_PROVIDER_URL`` and an
``execute_tool`` span), for customers drawn from a small power law; the context grows
every turn. Attribution goes through ``otel_llmcost.attributes``, as an app would.
``WORKLOAD_CONVERSATIONS`` and ``WORKLOAD_SEED`` size and seed it; conversation ids start
with ``WORKLOAD_PREFIX``.
"""

from __future__ import annotations

import os
import random

import openai
from opentelemetry import trace

import otel_llmcost
from otel_llmcost import semconv as sc
from otel_llmcost.demo.provider import Scenario
from otel_llmcost.processor.records import TOOL_OPERATION

tracer = trace.get_tracer("rollup_workload")


def main() -> None:
    rng = random.Random(int(os.environ.get("WORKLOAD_SEED", "1")))
    client = openai.OpenAI(base_url=os.environ["WORKLOAD_PROVIDER_URL"] + "/v1",
                           api_key="test", max_retries=0)
    customers = [f"customer-{i}" for i in range(8)]
    for number in range(int(os.environ.get("WORKLOAD_CONVERSATIONS", "6"))):
        customer = rng.choices(customers, weights=[1 / (i + 1) for i in range(8)])[0]
        conversation = f"{os.environ.get('WORKLOAD_PREFIX', 'conv')}-{number}"
        context = rng.randrange(500, 2000)
        for turn in range(rng.randrange(1, 6)):
            with otel_llmcost.attributes(customer_id=customer, conversation_id=conversation), \
                    tracer.start_as_current_span("agent.turn"):
                for _ in range(rng.randrange(1, 4)):
                    client.chat.completions.create(
                        model="gpt-4o-mini", messages=[{"role": "user", "content": "next"}],
                        extra_headers=Scenario(input_tokens=context,
                                               output_tokens=rng.randrange(50, 400)).headers())
                    context += rng.randrange(200, 800)
                with tracer.start_as_current_span("execute_tool lookup", attributes={
                        sc.GEN_AI_OPERATION_NAME: TOOL_OPERATION}):
                    pass


if __name__ == "__main__":
    main()
