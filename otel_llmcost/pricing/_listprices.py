"""List prices from the genai-prices data bundled in the installed wheel.

Only the bundled snapshot is read: genai-prices' ``UpdatePrices`` downloader is never
started and its ``get_snapshot()`` (which an app could point at downloaded data) is not
used, so ``version`` always names the data actually used and nothing touches the network.
Its matcher resolves aliases and dated ids (``gpt-4o-2024-08-06`` -> ``gpt-4o``); its
snapshot lookup caches are bypassed because they grow with every distinct model name.

Service-tier prices come from the model's ``price_variants``: partial price sets in USD
per MTok (not multipliers), each selected by an exact ``when`` match on a request context
and optionally limited to a start date. genai-prices resolves them per price key: the
first matching variant that sets a key wins, and a key none sets keeps the standard price
(``ModelInfo.get_prices``, which compiling calls, so the resolution is the data's own). The
tier a provider reports selects the context ``{"service_tier": tier}``, except ``batch``,
which the data keys as ``{"processing": "batch"}``. Variants on other axes (Anthropic
``speed``, OpenRouter ``route``, Perplexity ``search_type``) are not service tiers and are
not compiled.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from decimal import Decimal
from functools import cache
from importlib.metadata import version
from typing import TYPE_CHECKING, NamedTuple

from otel_llmcost.pricing._rates import Band, Rates, make_band

if TYPE_CHECKING:
    from genai_prices.types import ModelInfo, ModelPrice, TieredPrices

_PRICE_KEYS = ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok",
               "cache_write_1h_mtok")
_BATCH = "batch"
_BATCH_CONTEXT: Mapping[str, str] = {"processing": _BATCH}
_TIER_KEY = "service_tier"


class ListRates(NamedTuple):
    """A model's standard rates and the rates the data lists for it per reported tier."""

    standard: Rates
    by_tier: dict[str, Rates]


@cache
def list_version() -> str:
    """The pricing-data version stamped on every cost."""
    return f"genai-prices=={version('genai-prices')}"


def list_rates(provider: str, model: str) -> ListRates | None:
    """Compile one model's current list prices, or None if genai-prices cannot price its tokens.

    Prices are those in force at compile time: a process running across a scheduled price
    change in the data keeps the old rates for models it already compiled until restarted.
    """
    # Imported here: genai-prices takes ~170 ms to import and is only needed on a cache miss.
    from genai_prices.data import providers
    from genai_prices.data_snapshot import find_provider_by_id

    found = find_provider_by_id(providers, provider)
    info = found.find_model(model, all_providers=providers) if found is not None else None
    if found is None or info is None:
        return None
    now = datetime.now(tz=timezone.utc)
    standard = info.get_prices(now)
    if standard.input_mtok is None:  # priced per second, character or request, not per token
        return None
    # As in genai-prices' calc_price: a model borrowed from a fallback provider (Azure
    # serving OpenAI's) gets none of its variants, which are the original provider's tiers.
    own = any(info is candidate for candidate in found.models)
    contexts = _tier_contexts(info, now) if own else {}
    return ListRates(_compile(provider, standard),
                     {tier: _compile(provider, info.get_prices(now, context))
                      for tier, context in contexts.items()})


def _tier_contexts(info: ModelInfo, now: datetime) -> dict[str, Mapping[str, str]]:
    """Reported tier -> the price context selecting its variants, for variants active now."""
    contexts: dict[str, Mapping[str, str]] = {}
    for variant in info.price_variants or ():
        if variant.constraint is not None and not variant.constraint.active(now):
            continue
        if variant.when == _BATCH_CONTEXT:
            contexts[_BATCH] = variant.when
        elif len(variant.when) == 1 and _TIER_KEY in variant.when:
            contexts[variant.when[_TIER_KEY]] = variant.when
    return contexts


def _compile(provider: str, prices: ModelPrice) -> Rates:
    values = [getattr(prices, key) for key in _PRICE_KEYS]
    starts = sorted({tier.start for value in values
                     if value is not None and not isinstance(value, Decimal)
                     for tier in value.tiers}, reverse=True)
    return Rates(_band(provider, values, 0),
                 tuple((start, _band(provider, values, start + 1)) for start in starts))


def _band(provider: str, values: list[Decimal | TieredPrices | None], input_tokens: int) -> Band:
    input_mtok, output_mtok, *cache_mtok = (_mtok_at(value, input_tokens) for value in values)
    assert input_mtok is not None  # list_rates only compiles models with an input price
    # Embedding models have no output price; they produce no output tokens either.
    return make_band(provider, input_mtok, output_mtok or 0.0, *cache_mtok)


def _mtok_at(value: Decimal | TieredPrices | None, input_tokens: int) -> float | None:
    """The price applying to a call with ``input_tokens`` total input (genai-prices' cliff rule)."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return float(value)
    for tier in reversed(value.tiers):
        if input_tokens > tier.start:
            return float(tier.price)
    return float(value.base)
