"""A small instrumented app: real openai/anthropic SDK calls against the local stand-in.

Run it under the real auto-instrumentation command to see spans that carry cost::

    opentelemetry-instrument --traces_exporter console --metrics_exporter console \\
        python -m otel_llmcost.demo.example

It starts the stand-in provider on a free loopback port, makes a handful of calls that
exercise the pricing rules (prompt-cache reads, 5-minute and 1-hour cache writes, a
streamed call, a retried call, a flex-tier call, an unknown model), and ends with a
table of what each call cost, read from the spans the instrumentation produced.
"""

from __future__ import annotations

import threading
import warnings
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from rich.console import Console
from rich.table import Table

import otel_llmcost
from otel_llmcost import semconv as sc
from otel_llmcost.demo.provider import Scenario, StandInProvider


class _Collector(SpanProcessor):
    """Keeps the LLM spans this process ends, for the closing table."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []
        self._lock = threading.Lock()

    def on_end(self, span: ReadableSpan) -> None:
        scope = span.instrumentation_scope
        if scope is not None and scope.name == sc.INSTRUMENTATION_SCOPE:
            with self._lock:
                self.spans.append(span)


def _scenario(**keys: Any) -> dict[str, Any]:
    return {"extra_headers": Scenario(**keys).headers()}


def _run_calls(provider: StandInProvider) -> None:
    import anthropic
    import openai

    oai = openai.OpenAI(base_url=provider.openai_base_url, api_key="demo", max_retries=2)
    claude = anthropic.Anthropic(base_url=provider.anthropic_base_url, api_key="demo")
    question = [{"role": "user", "content": "Which plan fits a team of 40?"}]
    with otel_llmcost.attributes(customer_id="acme", feature="support-chat",
                                 conversation_id="conv-acme-1"):
        oai.chat.completions.create(model="gpt-4o", messages=question, **_scenario(
            input_tokens=12_000, cached_tokens=10_240, output_tokens=350))
        for _ in oai.chat.completions.create(model="gpt-4o-mini", messages=question,
                                             stream=True, **_scenario(output_tokens=120)):
            pass
        oai.chat.completions.create(model="gpt-4o", messages=question, **_scenario(
            fail_times=1, fail_status=503, input_tokens=800, output_tokens=60))
    with otel_llmcost.attributes(customer_id="globex", feature="contract-review"):
        claude.messages.create(model="claude-sonnet-4-5", max_tokens=1024, messages=question,
                               **_scenario(input_tokens=900, cache_write_5m=20_000,
                                           cache_write_1h=30_000, output_tokens=700))
        with claude.messages.stream(model="claude-sonnet-4-5", max_tokens=1024,
                                    messages=question,
                                    **_scenario(input_tokens=900, cached_tokens=50_000,
                                                output_tokens=640)) as stream:
            stream.get_final_message()
    with otel_llmcost.attributes(customer_id="initech", feature="batch-enrichment"):
        oai.chat.completions.create(model="gpt-5", messages=question, **_scenario(
            service_tier="flex", input_tokens=4_000, output_tokens=2_500,
            reasoning_tokens=2_000))
        oai.embeddings.create(model="text-embedding-3-small", input=["a", "b", "c"],
                              **_scenario(input_tokens=3_000))
        oai.chat.completions.create(model="in-house-llm-7b", messages=question)


def _table(spans: list[ReadableSpan]) -> Table:
    table = Table(title="LLM calls and what they cost (from the spans)")
    for column in ("span", "customer", "input", "cached", "cache write", "output",
                   "cost USD", "pricing", "retries"):
        table.add_column(column, justify="left" if column in ("span", "customer") else "right")
    total = 0.0
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        a = span.attributes or {}
        cost = a.get(sc.GEN_AI_USAGE_COST_AMOUNT)
        total += cost or 0.0
        table.add_row(span.name, str(a.get(sc.LLMCOST_CUSTOMER_ID, "-")),
                      str(a.get(sc.GEN_AI_USAGE_INPUT_TOKENS, "-")),
                      str(a.get(sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, "-")),
                      str(a.get(sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, "-")),
                      str(a.get(sc.GEN_AI_USAGE_OUTPUT_TOKENS, "-")),
                      f"{cost:.6f}" if cost is not None else "unpriced",
                      str(a.get(sc.LLMCOST_PRICING_STATUS, "-")),
                      str(a.get(sc.LLMCOST_RETRIES, 0)))
    table.add_section()
    table.add_row("total", "", "", "", "", "", f"{total:.6f}", "", "")
    return table


def main() -> None:
    # The example prices list-priced models that the anthropic SDK flags as nearing end of life.
    warnings.filterwarnings("ignore", message="The model .* is deprecated")
    console = Console()
    if not console.is_terminal:  # piped: wide enough for the table
        console.width = 132
    provider = trace.get_tracer_provider()
    collector = _Collector()
    if isinstance(provider, TracerProvider):
        provider.add_span_processor(collector)
    else:
        console.print("[yellow]No OpenTelemetry SDK is configured: run this under "
                      "`opentelemetry-instrument` to see spans with cost.[/]")
    with StandInProvider() as stand_in:
        _run_calls(stand_in)
    if collector.spans:
        console.print(_table(collector.spans))
    elif isinstance(provider, TracerProvider):
        console.print("[red]No LLM spans were recorded: is otel-llmcost installed in this "
                      "environment (and not disabled in OTEL_PYTHON_DISABLED_INSTRUMENTATIONS)?[/]")


if __name__ == "__main__":
    main()
