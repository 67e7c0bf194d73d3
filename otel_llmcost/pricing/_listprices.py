"""List prices from the genai-prices data bundled in the installed wheel.

Only the bundled snapshot is read: genai-prices' ``UpdatePrices`` downloader is never
started and its ``get_snapshot()`` (which an app could point at downloaded data) is not
used, so ``version`` always names the data actually used and nothing touches the network.
Its matcher resolves aliases and dated ids (``gpt-4o-2024-08-06`` -> ``gpt-4o``); its
snapshot lookup caches are bypassed because they grow with every distinct model name.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from functools import cache
from importlib.metadata import version
from typing import TYPE_CHECKING

from otel_llmcost.pricing._rates import Band, Rates, make_band

if TYPE_CHECKING:
    from genai_prices.types import TieredPrices

_PRICE_KEYS = ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok",
               "cache_write_1h_mtok")


@cache
def list_version() -> str:
    """The pricing-data version stamped on every cost."""
    return f"genai-prices=={version('genai-prices')}"


def list_rates(provider: str, model: str) -> Rates | None:
    """Compile one model's current list prices, or None if genai-prices cannot price its tokens.

    Prices are those in force at compile time: a process running across a scheduled price
    change in the data keeps the old rates for models it already compiled until restarted.
    """
    # Imported here: genai-prices takes ~170 ms to import and is only needed on a cache miss.
    from genai_prices.data import providers
    from genai_prices.data_snapshot import find_provider_by_id

    found = find_provider_by_id(providers, provider)
    info = found.find_model(model, all_providers=providers) if found else None
    if info is None:
        return None
    prices = info.get_prices(datetime.now(tz=timezone.utc))
    values = [getattr(prices, key) for key in _PRICE_KEYS]
    if values[0] is None:  # priced per second, character or request, not per token
        return None
    starts = sorted({tier.start for value in values
                     if value is not None and not isinstance(value, Decimal)
                     for tier in value.tiers}, reverse=True)
    return Rates(info.id, _band(provider, values, 0),
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
