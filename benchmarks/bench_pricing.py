"""Microseconds per priced call: otel_llmcost.pricing.price() vs genai_prices.calc_price.

Run: python benchmarks/bench_pricing.py. Median of 5 timeit repeats; wall time on shared
machines varies by about +-25 % between runs, so compare the two lines, not runs.
"""

from __future__ import annotations

import statistics
import timeit
from collections.abc import Callable

import genai_prices

from otel_llmcost.pricing import price
from otel_llmcost.semconv import PROVIDER_ANTHROPIC
from otel_llmcost.usage import Usage

MODEL = "claude-sonnet-4-5-20250929"
USAGE = Usage(input_tokens=12_000, cache_read_tokens=8000, cache_write_tokens=2000,
              cache_write_1h_tokens=500, output_tokens=700, reasoning_tokens=200)
GENAI_USAGE = genai_prices.Usage(
    input_tokens=USAGE.input_tokens, cache_read_tokens=USAGE.cache_read_tokens,
    cache_write_tokens=USAGE.cache_write_tokens,
    cache_write_1h_tokens=USAGE.cache_write_1h_tokens, output_tokens=USAGE.output_tokens)


def median_us(call: Callable[[], object], number: int) -> float:
    call()  # compile / warm caches outside the timed runs
    runs = timeit.repeat(call, number=number, repeat=5)
    return statistics.median(runs) / number * 1e6


def main() -> None:
    ours = median_us(lambda: price(PROVIDER_ANTHROPIC, MODEL, USAGE), number=100_000)
    theirs = median_us(lambda: genai_prices.calc_price(GENAI_USAGE, MODEL,
                                                       provider_id=PROVIDER_ANTHROPIC),
                       number=2_000)
    print(f"otel_llmcost.pricing.price   {ours:8.2f} us/call")
    print(f"genai_prices.calc_price      {theirs:8.2f} us/call  ({theirs / ours:.0f}x)")


if __name__ == "__main__":
    main()
