"""Pricing tests against hand-computed USD.

Expected values are written from LIST PRICES (USD per million tokens) copied once from
genai-prices 0.2.3's bundled data, standard prices and the tier variants (``price_variants``)
in force since 2026-10:

  gpt-4o             2.50 in / 1.25 cached / 10 out          priority 4.25 / 2.125 / 17
                                                             batch 1.25 / (none: 1.25) / 5
                                                             (no flex variant)
  gpt-5              1.25 in / 0.125 cached / 10 out         priority 2.50 / 0.25 / 20
  gpt-5-nano         0.05 in / 0.005 cached / 0.40 out       (no priority variant)
  gpt-5.4            2.50 in / 0.25 cached / 15 out          priority 5 / 0.50 / 30, flat
                     above 272k input: 5 / 0.50 / 22.5
  o3                 2.00 in / 0.50 cached / 8 out
  o4-mini            1.10 in / 0.275 cached / 4.40 out       priority and fast 2.00 / 0.50 / 8
                                                             flex 0.55 / 0.138 / 2.20
                                                             batch 0.55 / (none: 0.275) / 2.20
  claude-sonnet-4-5  3 in / 15 out / 0.30 read / 3.75 5m write / 6 1h write
                     above 200k input: 6 / 22.5 / 0.60 / 7.5 / 12     batch: all halved
  claude-haiku-4-5   1 in / 5 out / 0.10 read / 1.25 5m write / 2 1h write   batch: all halved
  claude-3-7-sonnet  3 in / 15 out / 0.30 read                (no batch variant)
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path

import genai_prices
import pytest
import yaml
from genai_prices.data_snapshot import get_snapshot
from genai_prices.types import ModelInfo, ModelPrice, Provider

import otel_llmcost.pricing as pricing
from otel_llmcost._bounded import BoundedCache
from otel_llmcost.pricing import Cost, PriceBook, price
from otel_llmcost.semconv import (ENV_PRICES_FILE, PROVIDER_ANTHROPIC, PROVIDER_OPENAI,
                                  SOURCE_LOCAL, SOURCE_PROVIDER, STATUS_ESTIMATED,
                                  STATUS_EXACT, STATUS_UNKNOWN)
from otel_llmcost.usage import Usage

M = 1e-6  # USD per token = USD per MTok x M
OPENAI, ANTHROPIC = PROVIDER_OPENAI, PROVIDER_ANTHROPIC
SONNET = "claude-sonnet-4-5"


def close(actual: float | None, expected: float) -> bool:
    return actual is not None and math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-15)


def assert_cost(cost: Cost, *, input: float, output: float, cache_read: float = 0.0,
                cache_write: float = 0.0, savings: float = 0.0) -> None:
    expected = {"input": input, "cache_read": cache_read, "cache_write": cache_write,
                "output": output, "savings": savings,
                "amount": input + cache_read + cache_write + output}
    actual = {name: getattr(cost, name) for name in expected}
    assert all(close(actual[name], value) for name, value in expected.items()), (actual, expected)


def assert_adds_up(cost: Cost) -> None:
    assert cost.amount is not None
    parts = (cost.input, cost.cache_read, cost.cache_write, cost.output)
    assert all(part is not None for part in parts)
    assert math.isclose(sum(parts), cost.amount, rel_tol=1e-12)  # type: ignore[arg-type]


@pytest.fixture
def book() -> PriceBook:
    return PriceBook()


@pytest.fixture
def fresh_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the lazy module-level book rebuild (and re-read the env) on next use."""
    monkeypatch.setattr(pricing, "_default_book", None)


# --- list prices ---------------------------------------------------------------------

def test_plain_openai_call(book: PriceBook) -> None:
    cost = book.price(OPENAI, "gpt-4o", Usage(input_tokens=1000, output_tokens=500))
    assert_cost(cost, input=1000 * 2.5 * M, output=500 * 10 * M)
    assert (cost.status, cost.source) == (STATUS_EXACT, SOURCE_LOCAL)


def test_module_price_uses_default_book(fresh_default: None,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_PRICES_FILE, raising=False)
    cost = price(OPENAI, "gpt-4o", Usage(input_tokens=1000, output_tokens=500))
    assert_cost(cost, input=1000 * 2.5 * M, output=500 * 10 * M)


def test_openai_cached_tokens_gpt4o_half_price(book: PriceBook) -> None:
    cost = book.price(OPENAI, "gpt-4o", Usage(input_tokens=1000, cache_read_tokens=400,
                                               output_tokens=100))
    assert_cost(cost, input=600 * 2.5 * M, cache_read=400 * 1.25 * M, output=100 * 10 * M,
                savings=400 * (2.5 - 1.25) * M)


def test_openai_cached_tokens_gpt5_tenth_price(book: PriceBook) -> None:
    cost = book.price(OPENAI, "gpt-5", Usage(input_tokens=10_000, cache_read_tokens=8000,
                                              output_tokens=100))
    assert_cost(cost, input=2000 * 1.25 * M, cache_read=8000 * 0.125 * M, output=100 * 10 * M,
                savings=8000 * (1.25 - 0.125) * M)


def test_anthropic_cache_read_and_5m_and_1h_writes(book: PriceBook) -> None:
    usage = Usage(input_tokens=10_000, cache_read_tokens=2000, cache_write_tokens=3000,
                  cache_write_1h_tokens=1000, output_tokens=100)
    cost = book.price(ANTHROPIC, SONNET, usage)
    write = 2000 * 3.75 * M + 1000 * 6 * M  # 0.0135, not 3000 at the 5m rate (0.01125)
    assert_cost(cost, input=5000 * 3 * M, cache_read=2000 * 0.3 * M, cache_write=write,
                output=100 * 15 * M,
                savings=2000 * (3 - 0.3) * M - (2000 * (3.75 - 3) * M + 1000 * (6 - 3) * M))
    assert not close(cost.cache_write, 3000 * 3.75 * M)


def test_reasoning_tokens_are_output(book: PriceBook) -> None:
    with_reasoning = book.price(OPENAI, "o3", Usage(input_tokens=100, output_tokens=1000,
                                                    reasoning_tokens=800))
    assert_cost(with_reasoning, input=100 * 2 * M, output=1000 * 8 * M)


def test_long_context_cliff_prices_every_token_at_tier(book: PriceBook) -> None:
    above = book.price(ANTHROPIC, SONNET, Usage(input_tokens=200_001, cache_read_tokens=1000,
                                                 output_tokens=1000))
    assert_cost(above, input=199_001 * 6 * M, cache_read=1000 * 0.6 * M,
                output=1000 * 22.5 * M, savings=1000 * (6 - 0.6) * M)
    at = book.price(ANTHROPIC, SONNET, Usage(input_tokens=200_000, cache_read_tokens=1000,
                                              output_tokens=1000))
    assert_cost(at, input=199_000 * 3 * M, cache_read=1000 * 0.3 * M, output=1000 * 15 * M,
                savings=1000 * (3 - 0.3) * M)


@pytest.mark.parametrize(("provider", "model", "input_tokens", "output_tokens"), [
    (OPENAI, "gpt-4o", 1200, 100),
    (ANTHROPIC, SONNET, 200_000, 1000),
    (ANTHROPIC, SONNET, 200_001, 1000),  # past the long-context cliff
])
def test_price_tokens_is_price_of_uncached_usage(book: PriceBook, provider: str, model: str,
                                                 input_tokens: int, output_tokens: int) -> None:
    expected = book.price(provider, model, Usage(input_tokens=input_tokens,
                                                 output_tokens=output_tokens)).amount
    assert book.price_tokens(provider, model, input_tokens, output_tokens) == expected


def test_price_tokens_of_unknown_model_is_none(book: PriceBook) -> None:
    assert book.price_tokens(OPENAI, "no-such-model", 100, 100) is None
    assert book.price_tokens(OPENAI, None, 100, 100) is None


@pytest.mark.parametrize(("provider", "dated", "canonical"), [
    (OPENAI, "gpt-4o-2024-08-06", "gpt-4o"),
    (ANTHROPIC, "claude-sonnet-4-5-20250929", SONNET),
])
def test_dated_model_ids_resolve(book: PriceBook, provider: str, dated: str,
                                 canonical: str) -> None:
    usage = Usage(input_tokens=1000, output_tokens=100)
    assert book.price(provider, dated, usage) == book.price(provider, canonical, usage)
    assert book.price(provider, dated, usage).status == STATUS_EXACT


# --- service tiers ---------------------------------------------------------------------

@pytest.mark.parametrize(("provider", "model", "tier"), [
    (OPENAI, "gpt-5", "flex"), (OPENAI, "gpt-5", "batch"), (ANTHROPIC, SONNET, "batch"),
])
def test_flex_and_batch_halve_every_class(book: PriceBook, provider: str, model: str,
                                          tier: str) -> None:
    usage = Usage(input_tokens=10_000, cache_read_tokens=4000, cache_write_tokens=2000,
                  output_tokens=300)
    standard = book.price(provider, model, usage)
    halved = book.price(provider, model, usage, service_tier=tier)
    for name in ("amount", "input", "cache_read", "cache_write", "output", "savings"):
        assert close(getattr(halved, name), 0.5 * getattr(standard, name))
    assert halved.status == STATUS_EXACT


def test_anthropic_batch_hand_computed(book: PriceBook) -> None:
    cost = book.price(ANTHROPIC, "claude-haiku-4-5", Usage(input_tokens=1000, output_tokens=100),
                      service_tier="batch")
    assert_cost(cost, input=1000 * 0.5 * M, output=100 * 2.5 * M)


# o4-mini's variants in genai-prices 0.2.3 (USD/MTok, input / cached input / output):
#   standard 1.10 / 0.275 / 4.40, flex 0.55 / 0.138 / 2.20, priority and fast 2.00 / 0.50 / 8,
#   batch 0.55 / (not set: the standard 0.275) / 2.20.
# Flex cached (0.138, not 0.1375) and batch cached (not halved) show the data, not a
# multiplier, is used.
@pytest.mark.parametrize(("tier", "input_mtok", "cached_mtok", "output_mtok"), [
    ("flex", 0.55, 0.138, 2.2),
    ("batch", 0.55, 0.275, 2.2),
    ("priority", 2.0, 0.5, 8.0),
    ("fast", 2.0, 0.5, 8.0),
])
def test_tier_variant_from_data(book: PriceBook, tier: str, input_mtok: float,
                                cached_mtok: float, output_mtok: float) -> None:
    cost = book.price(OPENAI, "o4-mini", Usage(input_tokens=10_000, cache_read_tokens=4000,
                                                output_tokens=1000), service_tier=tier)
    assert_cost(cost, input=6000 * input_mtok * M, cache_read=4000 * cached_mtok * M,
                output=1000 * output_mtok * M, savings=4000 * (input_mtok - cached_mtok) * M)
    assert cost.status == STATUS_EXACT


def test_gpt4o_batch_cached_input_keeps_standard_rate(book: PriceBook) -> None:
    # Data: batch 1.25 in / 5 out, no cached price, so the standard 1.25 (not 0.625) applies.
    cost = book.price(OPENAI, "gpt-4o", Usage(input_tokens=1000, cache_read_tokens=400,
                                               output_tokens=100), service_tier="batch")
    assert_cost(cost, input=600 * 1.25 * M, cache_read=400 * 1.25 * M, output=100 * 5 * M)
    assert cost.status == STATUS_EXACT


def test_priority_variant_without_long_context_surcharge(book: PriceBook) -> None:
    # gpt-5.4 priority is flat 5 / 0.50 / 30 in the data; 2x the >272k standard would be 10/1/45.
    cost = book.price(OPENAI, "gpt-5.4", Usage(input_tokens=300_000, cache_read_tokens=100_000,
                                                output_tokens=1000), service_tier="priority")
    assert_cost(cost, input=200_000 * 5 * M, cache_read=100_000 * 0.5 * M,
                output=1000 * 30 * M, savings=100_000 * 4.5 * M)


@pytest.mark.parametrize(("provider", "model", "tier"), [
    (OPENAI, "gpt-4o", "flex"),  # no flex variant for gpt-4o: fallback 0.5x
    (ANTHROPIC, "claude-3-7-sonnet-latest", "batch"),  # no batch variant: fallback 0.5x
])
def test_tier_without_variant_uses_fallback_multiplier(book: PriceBook, provider: str,
                                                       model: str, tier: str) -> None:
    usage = Usage(input_tokens=1000, cache_read_tokens=400, output_tokens=100)
    cost = book.price(provider, model, usage, service_tier=tier)
    assert close(cost.amount, 0.5 * (book.price(provider, model, usage).amount or 0.0))
    assert cost.status == STATUS_EXACT


def test_reseller_gets_no_tier_variants(book: PriceBook) -> None:
    # Azure borrows OpenAI's gpt-4o prices but not its tiers (as genai-prices' calc_price).
    usage = Usage(input_tokens=1000, output_tokens=100)
    cost = book.price("azure", "gpt-4o", usage, service_tier="priority")
    assert close(cost.amount, 1000 * 2.5 * M + 100 * 10 * M)
    assert cost.status == STATUS_ESTIMATED


@pytest.mark.parametrize(("model", "input_mtok", "output_mtok"), [
    ("o4-mini", 2.0, 8.0),  # priority variants, ~1.82x standard
    ("gpt-5", 2.5, 20.0),   # 2x
    ("gpt-4o-2024-08-06", 4.25, 17.0),  # 1.7x, dated id
])
def test_priority_known_model(book: PriceBook, model: str, input_mtok: float,
                              output_mtok: float) -> None:
    cost = book.price(OPENAI, model, Usage(input_tokens=1000, output_tokens=100),
                      service_tier="priority")
    assert_cost(cost, input=1000 * input_mtok * M, output=100 * output_mtok * M)
    assert cost.status == STATUS_EXACT


def test_priority_unpublished_model_is_estimated_at_double(book: PriceBook) -> None:
    # gpt-5-nano has no priority variant: fallback 2 x (0.05 in / 0.005 cached / 0.40 out).
    cost = book.price(OPENAI, "gpt-5-nano", Usage(input_tokens=1000, cache_read_tokens=200,
                                                   output_tokens=100), service_tier="priority")
    assert_cost(cost, input=800 * 0.1 * M, cache_read=200 * 0.01 * M, output=100 * 0.8 * M,
                savings=200 * 0.09 * M)
    assert cost.status == STATUS_ESTIMATED


@pytest.mark.parametrize(("provider", "model", "tier"), [
    (OPENAI, "gpt-4o", None), (OPENAI, "gpt-4o", "default"), (OPENAI, "gpt-4o", "auto"),
    (OPENAI, "gpt-4o", "scale"), (ANTHROPIC, SONNET, "standard"), (ANTHROPIC, SONNET, "priority"),
])
def test_standard_tiers_are_list_price(book: PriceBook, provider: str, model: str,
                                       tier: str | None) -> None:
    usage = Usage(input_tokens=1000, output_tokens=100)
    cost = book.price(provider, model, usage, service_tier=tier)
    assert cost == book.price(provider, model, usage)
    assert cost.status == STATUS_EXACT


def test_unknown_tier_is_list_price_but_estimated(book: PriceBook) -> None:
    usage = Usage(input_tokens=1000, output_tokens=100)
    cost = book.price(OPENAI, "gpt-4o", usage, service_tier="turbo-deluxe")
    assert close(cost.amount, book.price(OPENAI, "gpt-4o", usage).amount or 0.0)
    assert cost.status == STATUS_ESTIMATED


# --- provider-reported cost, unknown models, estimates ---------------------------------

def test_provider_cost_wins_and_components_are_scaled(book: PriceBook) -> None:
    usage = Usage(input_tokens=1000, cache_read_tokens=400, output_tokens=100)
    local = book.price(OPENAI, "gpt-4o", usage)  # 0.0015 + 0.0005 + 0.001 = 0.003
    cost = book.price(OPENAI, "gpt-4o", usage, provider_cost=0.006)
    assert cost.amount == 0.006
    assert (cost.source, cost.status) == (SOURCE_PROVIDER, STATUS_EXACT)
    assert_cost(cost, input=0.003, cache_read=0.001, output=0.002, savings=2 * 400 * 1.25 * M)
    assert close(cost.input, 2 * (local.input or 0.0))
    assert_adds_up(cost)


def test_provider_cost_for_unknown_model_has_no_breakdown(book: PriceBook) -> None:
    cost = book.price(OPENAI, "openrouter/some-new-model", Usage(input_tokens=10),
                      provider_cost=0.0042)
    assert cost == Cost(0.0042, None, None, None, None, None, STATUS_EXACT, SOURCE_PROVIDER,
                        book.version)


@pytest.mark.parametrize(("provider", "model"), [
    (OPENAI, "gpt-nonexistent-9"), (OPENAI, None), ("no-such-provider", "gpt-4o"),
])
def test_unknown_model_is_never_zero(book: PriceBook, provider: str, model: str | None) -> None:
    cost = book.price(provider, model, Usage(input_tokens=1000, output_tokens=100,
                                             estimated=True))
    assert cost == Cost(None, None, None, None, None, None, STATUS_UNKNOWN, SOURCE_LOCAL,
                        book.version)


def test_estimated_usage_is_priced_but_flagged(book: PriceBook) -> None:
    cost = book.price(OPENAI, "gpt-4o", Usage(input_tokens=1000, output_tokens=500,
                                               estimated=True))
    assert_cost(cost, input=1000 * 2.5 * M, output=500 * 10 * M)
    assert cost.status == STATUS_ESTIMATED


def test_savings_negative_when_writes_exceed_reads(book: PriceBook) -> None:
    cost = book.price(ANTHROPIC, SONNET, Usage(input_tokens=5000, cache_write_tokens=4000,
                                                cache_write_1h_tokens=1000, output_tokens=10))
    assert_cost(cost, input=1000 * 3 * M, cache_write=3000 * 3.75 * M + 1000 * 6 * M,
                output=10 * 15 * M, savings=-(3000 * 0.75 * M + 1000 * 3 * M))
    assert cost.savings is not None and cost.savings < 0


@pytest.mark.parametrize(("provider", "model", "usage", "tier", "provider_cost"), [
    (OPENAI, "gpt-4o", Usage(input_tokens=123, output_tokens=45), None, None),
    (OPENAI, "gpt-5", Usage(input_tokens=9999, cache_read_tokens=7777, output_tokens=333,
                            reasoning_tokens=300), "priority", None),
    (ANTHROPIC, SONNET, Usage(input_tokens=250_000, cache_read_tokens=1, cache_write_tokens=777,
                              cache_write_1h_tokens=333, output_tokens=4321), "batch", None),
    (ANTHROPIC, SONNET, Usage(input_tokens=3, cache_write_tokens=2, output_tokens=1), None, 0.7),
    (OPENAI, "o4-mini", Usage(input_tokens=10, output_tokens=10), "flex", 1e-5),
])
def test_components_add_up(book: PriceBook, provider: str, model: str, usage: Usage,
                           tier: str | None, provider_cost: float | None) -> None:
    assert_adds_up(book.price(provider, model, usage, service_tier=tier,
                              provider_cost=provider_cost))


# --- consistency with genai-prices itself ----------------------------------------------

BATCH = {"processing": "batch"}
LONG_SONNET = Usage(input_tokens=200_001, cache_read_tokens=5, cache_write_tokens=70,
                    cache_write_1h_tokens=30, output_tokens=9)


@pytest.mark.parametrize(("provider", "model", "usage", "tier", "context"), [
    (OPENAI, "gpt-4o-2024-08-06", Usage(input_tokens=1234, cache_read_tokens=1000,
                                        output_tokens=56), None, None),
    (ANTHROPIC, SONNET, Usage(input_tokens=199_999, cache_read_tokens=5, cache_write_tokens=70,
                              cache_write_1h_tokens=30, output_tokens=9), None, None),
    (ANTHROPIC, SONNET, LONG_SONNET, None, None),
    (ANTHROPIC, SONNET, LONG_SONNET, "batch", BATCH),
    (OPENAI, "gpt-4o", Usage(input_tokens=1234, cache_read_tokens=1000, output_tokens=56),
     "batch", BATCH),
    (OPENAI, "o4-mini", Usage(input_tokens=1234, cache_read_tokens=1000, output_tokens=56),
     "flex", {"service_tier": "flex"}),
    (OPENAI, "gpt-5.4", Usage(input_tokens=300_000, cache_read_tokens=1000, output_tokens=56),
     "priority", {"service_tier": "priority"}),
])
def test_matches_genai_prices_calc_price(book: PriceBook, provider: str, model: str,
                                         usage: Usage, tier: str | None,
                                         context: dict[str, str] | None) -> None:
    reference = genai_prices.calc_price(genai_prices.Usage(
        input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens, cache_write_tokens=usage.cache_write_tokens,
        cache_write_1h_tokens=usage.cache_write_1h_tokens), model, provider_id=provider,
        price_context=context)
    cost = book.price(provider, model, usage, service_tier=tier)
    assert close(cost.amount, float(reference.total_price))


# --- overrides ---------------------------------------------------------------------------

YAML_OVERRIDES = """
- provider: openai
  model: "ft:gpt-4o-mini-2024-07-18:acme"
  match: prefix
  input_mtok: 0.5
  output_mtok: 2
  cache_read_mtok: 0.25
- provider: openai
  model: acme-llama-70b
  input_mtok: 1
  output_mtok: 3
  tiers:
    - {above_input_tokens: 100000, input_mtok: 2, output_mtok: 6}
- {provider: anthropic, model: "claude-", match: prefix, discount: 0.2}
- {provider: anthropic, model: my-claude, input_mtok: 1, output_mtok: 5, cache_write_mtok: 1.25}
"""


def _json_overrides() -> str:
    return json.dumps(yaml.safe_load(YAML_OVERRIDES))


@pytest.fixture(params=["prices.yaml", "prices.json"])
def overrides_file(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    path = tmp_path / str(request.param)
    path.write_text(YAML_OVERRIDES if path.suffix == ".yaml" else _json_overrides())
    return path


def test_override_adds_fine_tuned_model(overrides_file: Path) -> None:
    book = PriceBook(str(overrides_file))
    # genai-prices lists ft:gpt-4o-mini at 0.30 / 1.20; the override (0.5 / 2) wins.
    cost = book.price(OPENAI, "ft:gpt-4o-mini-2024-07-18:acme::B7x9", Usage(
        input_tokens=1000, cache_read_tokens=200, output_tokens=100))
    assert_cost(cost, input=800 * 0.5 * M, cache_read=200 * 0.25 * M, output=100 * 2 * M,
                savings=200 * 0.25 * M)
    assert cost.status == STATUS_EXACT


def test_override_self_hosted_model_with_tier(overrides_file: Path) -> None:
    book = PriceBook(str(overrides_file))
    small = book.price(OPENAI, "acme-llama-70b", Usage(input_tokens=100_000, output_tokens=10))
    assert_cost(small, input=100_000 * 1 * M, output=10 * 3 * M)
    large = book.price(OPENAI, "acme-llama-70b", Usage(input_tokens=100_001, output_tokens=10))
    assert_cost(large, input=100_001 * 2 * M, output=10 * 6 * M)
    assert book.price(OPENAI, "acme-llama-70b-v2", Usage(input_tokens=1)).amount is None


def test_override_discount_and_missing_cache_rates(overrides_file: Path) -> None:
    book = PriceBook(str(overrides_file))
    cost = book.price(ANTHROPIC, SONNET, Usage(input_tokens=1000, cache_read_tokens=100,
                                                output_tokens=100))
    assert_cost(cost, input=900 * 3 * 0.8 * M, cache_read=100 * 0.3 * 0.8 * M,
                output=100 * 15 * 0.8 * M, savings=100 * (3 - 0.3) * 0.8 * M)
    # No 1h rate on an Anthropic model: 2x input, no estimate flag. No read rate: input rate.
    # ("my-claude" does not start with "claude-", so no discount.)
    mine = book.price(ANTHROPIC, "my-claude", Usage(input_tokens=1000, cache_read_tokens=100,
                                                     cache_write_tokens=300,
                                                     cache_write_1h_tokens=100))
    assert_cost(mine, input=600 * 1 * M, cache_read=100 * 1 * M, output=0.0,
                cache_write=200 * 1.25 * M + 100 * 2 * M, savings=-(200 * 0.25 + 100 * 1) * M)
    assert mine.status == STATUS_EXACT
    assert book.price(OPENAI, "gpt-4o", Usage(input_tokens=1000)).amount == 1000 * 2.5 * M


def test_discount_applies_to_tier_variants(overrides_file: Path) -> None:
    # Sonnet's batch variant (1.5 in / 7.5 out) with the 20% "claude-" discount.
    cost = PriceBook(str(overrides_file)).price(
        ANTHROPIC, SONNET, Usage(input_tokens=1000, output_tokens=100), service_tier="batch")
    assert_cost(cost, input=1000 * 1.5 * 0.8 * M, output=100 * 7.5 * 0.8 * M)


@pytest.mark.parametrize(("tier", "factor", "status"), [
    ("flex", 0.5, STATUS_EXACT), ("priority", 2.0, STATUS_ESTIMATED),
])
def test_overridden_model_tiers_use_fallback(overrides_file: Path, tier: str, factor: float,
                                             status: str) -> None:
    cost = PriceBook(str(overrides_file)).price(
        OPENAI, "acme-llama-70b", Usage(input_tokens=1000, output_tokens=100), service_tier=tier)
    assert_cost(cost, input=1000 * 1 * factor * M, output=100 * 3 * factor * M)
    assert cost.status == status


def test_override_version_names_the_file(overrides_file: Path) -> None:
    digest = hashlib.sha256(overrides_file.read_bytes()).hexdigest()[:8]
    version = PriceBook(str(overrides_file)).version
    assert version == f"genai-prices=={genai_prices.__version__}+overrides:{digest}"
    assert PriceBook().version == f"genai-prices=={genai_prices.__version__}"


@pytest.mark.parametrize(("name", "content", "message"), [
    ("bad.json", "[{", "invalid JSON"),
    ("bad.yaml", "- {provider: openai, model: [", "invalid YAML"),
    ("top.json", '{"provider": "openai"}', "expected a list"),
    ("missing.json", '[{"provider": "openai", "model": "x", "input_mtok": 1}]', "output_mtok"),
    ("typo.json", '[{"provider": "openai", "model": "x", "input_mtok": 1, "output_mtok": 1,'
                  ' "cache_read_mtoks": 1}]', "unknown keys"),
    ("neg.json", '[{"provider": "openai", "model": "x", "input_mtok": -1, "output_mtok": 1}]',
     "non-negative"),
    ("disc.json", '[{"provider": "openai", "model": "x", "discount": 1.5}]', "discount"),
    ("match.json", '[{"provider": "openai", "model": "x", "match": "regex", "discount": 0.1}]',
     "match"),
    ("dup.json", '[{"provider": "openai", "model": "x", "discount": 0.1},'
                 ' {"provider": "openai", "model": "X", "discount": 0.2}]', "duplicate"),
    ("tier.json", '[{"provider": "openai", "model": "x", "input_mtok": 1, "output_mtok": 1,'
                  ' "tiers": [{"above_input_tokens": "lots", "input_mtok": 1,'
                  ' "output_mtok": 1}]}]', "above_input_tokens"),
])
def test_broken_override_file_raises_value_error(tmp_path: Path, name: str, content: str,
                                                 message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        PriceBook(str(path))


def test_missing_override_file_raises_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        PriceBook(str(tmp_path / "absent.json"))


def test_default_book_logs_broken_file_once_and_uses_list_prices(
        fresh_default: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "broken.json"
    path.write_text("not json")
    monkeypatch.setenv(ENV_PRICES_FILE, str(path))
    usage = Usage(input_tokens=1000, output_tokens=500)
    with caplog.at_level(logging.ERROR, logger=pricing.__name__):
        first = price(OPENAI, "gpt-4o", usage)
        second = price(OPENAI, "gpt-4o", usage)
    ours = [r for r in caplog.records if r.name.startswith(pricing.__name__)]  # not asyncio's
    assert len(ours) == 1 and ENV_PRICES_FILE in ours[0].getMessage()
    assert first == second
    assert_cost(first, input=1000 * 2.5 * M, output=500 * 10 * M)
    assert "+overrides" not in first.version


def test_default_book_reads_env_file(fresh_default: None, overrides_file: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_PRICES_FILE, str(overrides_file))
    cost = price(OPENAI, "acme-llama-70b", Usage(input_tokens=10, output_tokens=10))
    assert_cost(cost, input=10 * 1 * M, output=10 * 3 * M)
    monkeypatch.delenv(ENV_PRICES_FILE)  # read once: later env changes are not seen
    assert price(OPENAI, "acme-llama-70b", Usage(input_tokens=10)).amount is not None


# --- caching -----------------------------------------------------------------------------

def test_cache_stays_bounded_for_many_unknown_models(book: PriceBook) -> None:
    snapshot = get_snapshot()
    genai_cache_sizes = (len(snapshot._lookup_cache), len(snapshot._provider_cache))
    book.price(OPENAI, "gpt-4o", Usage(input_tokens=1))
    for index in range(5000):
        assert book.price(OPENAI, f"unknown-model-{index}", Usage(input_tokens=1)).amount is None
    assert len(book._unknown) <= 1024
    assert len(book._known) <= 1024
    assert (OPENAI, "gpt-4o") in book._known  # unknown names do not evict known models
    assert (len(snapshot._lookup_cache), len(snapshot._provider_cache)) == genai_cache_sizes


def test_bounded_cache_forgets_oldest_first() -> None:
    cache: BoundedCache[int, int] = BoundedCache(3)
    for key in range(10_000):
        cache.add(key, key)
    assert list(cache) == [9997, 9998, 9999]
    assert cache.add(9998, -1) is False  # an existing key is updated, nothing is evicted
    assert dict(cache) == {9997: 9997, 9998: -1, 9999: 9999}
    assert cache.add(10_000, 0) is True


def test_second_call_does_not_touch_genai_prices(book: PriceBook,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"calc_price": 0, "model_calc": 0, "find_model": 0, "get_prices": 0}

    def counting(name: str, original):  # type: ignore[no-untyped-def]
        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            calls[name] += 1
            return original(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(genai_prices, "calc_price", counting("calc_price", genai_prices.calc_price))
    monkeypatch.setattr(ModelPrice, "calc_price", counting("model_calc", ModelPrice.calc_price))
    monkeypatch.setattr(Provider, "find_model", counting("find_model", Provider.find_model))
    monkeypatch.setattr(ModelInfo, "get_prices", counting("get_prices", ModelInfo.get_prices))
    usage = Usage(input_tokens=1000, output_tokens=100)

    first = book.price(OPENAI, "gpt-4o-2024-08-06", usage, service_tier="priority")
    # Compiled once, with genai-prices' matcher, resolving every tier's variants at once.
    assert calls["find_model"] == 1 and calls["get_prices"] > 1
    compiled = dict(calls)
    second = book.price(OPENAI, "gpt-4o-2024-08-06", usage, service_tier="priority")
    flex = book.price(OPENAI, "gpt-4o-2024-08-06", usage, service_tier="flex")
    standard = book.price(OPENAI, "gpt-4o-2024-08-06", usage)
    assert calls == compiled and compiled["calc_price"] == compiled["model_calc"] == 0
    assert second == first
    assert_cost(first, input=1000 * 4.25 * M, output=100 * 17 * M)
    assert close(flex.amount, 0.5 * (standard.amount or 0.0))
