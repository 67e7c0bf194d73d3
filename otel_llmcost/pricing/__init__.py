"""Turns a `Usage` into USD. Public surface: `Cost`, `PriceBook`, `price`.

List prices come from the genai-prices data bundled in its wheel (never downloaded),
overridden by an optional local file (see ``_overrides``); a call reporting a service tier
is priced at the data's rates for that tier, or a fallback multiplier (see ``_tiers``).
Each (provider, model) is compiled once into float rates for every tier, so pricing a call
is a dict lookup plus arithmetic.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import NamedTuple

from otel_llmcost._bounded import BoundedCache
from otel_llmcost.pricing._listprices import ListRates, list_rates, list_version
from otel_llmcost.pricing._overrides import Overrides, load
from otel_llmcost.pricing._rates import Rates
from otel_llmcost.pricing._tiers import TierRates, tier_rates
from otel_llmcost.semconv import (ENV_PRICES_FILE, SOURCE_LOCAL, SOURCE_PROVIDER,
                                  STATUS_ESTIMATED, STATUS_EXACT, STATUS_UNKNOWN)
from otel_llmcost.usage import Usage

__all__ = ("Cost", "PriceBook", "preload", "price", "price_tokens")

_log = logging.getLogger(__name__)

# Distinct (provider, model) pairs kept compiled; unknown ones are cached apart so a flood of
# unknown names cannot evict the known models.
_CACHE_SIZE = 1024

_Parts = tuple[float, float, float, float, float]


class Cost(NamedTuple):
    """The price of one call, in USD (immutable; a NamedTuple because it is built per call).

    ``amount`` is None when the model is unknown: an unknown model is never priced $0.
    ``input`` (uncached input), ``cache_read``, ``cache_write`` and ``output`` add up to
    ``amount``. ``savings`` is what cache reads saved minus the cache-write premium paid
    (negative when writes cost more than reads saved).
    """

    amount: float | None
    input: float | None
    cache_read: float | None
    cache_write: float | None
    output: float | None
    savings: float | None
    status: str
    source: str
    version: str


class PriceBook:
    """Prices calls from list prices plus an optional override file.

    Separate from the module-level ``price()`` so tests and multi-tenant apps can hold
    books with different overrides. Construction is cheap and raises ``ValueError`` if the
    override file is unreadable or invalid.
    """

    def __init__(self, overrides_path: str | None = None) -> None:
        self._overrides = load(overrides_path) if overrides_path else Overrides([], [], "")
        self.version: str = list_version() + (
            f"+overrides:{self._overrides.digest}" if overrides_path else "")
        self._known: BoundedCache[tuple[str, str | None], TierRates] = BoundedCache(_CACHE_SIZE)
        self._unknown: BoundedCache[tuple[str, str | None], None] = BoundedCache(_CACHE_SIZE)
        self._unknown_cost = Cost(None, None, None, None, None, None, STATUS_UNKNOWN,
                                  SOURCE_LOCAL, self.version)

    def price(self, provider: str, model: str | None, usage: Usage, *,
              service_tier: str | None = None, provider_cost: float | None = None) -> Cost:
        """Cost of one call; ``provider_cost`` (a cost the response reported) wins over ours."""
        tiers = self._tiers(provider, model)
        if tiers is None:
            if provider_cost is None:
                return self._unknown_cost
            return Cost(provider_cost, None, None, None, None, None, STATUS_EXACT,
                        SOURCE_PROVIDER, self.version)
        rates, tier_estimated = tiers.at(service_tier)
        parts = _parts(rates, usage)
        amount = parts[0] + parts[1] + parts[2] + parts[3]
        if provider_cost is not None:
            return _reported(provider_cost, amount, parts, self.version)
        status = STATUS_ESTIMATED if usage.estimated or tier_estimated else STATUS_EXACT
        return Cost(amount, *parts, status, SOURCE_LOCAL, self.version)

    def price_tokens(self, provider: str, model: str | None, input_tokens: int,
                     output_tokens: int) -> float | None:
        """USD of uncached input and output tokens at the standard tier; None if the model
        has no price. The budgets' worst case, priced on every call: no `Usage` or `Cost`."""
        tiers = self._tiers(provider, model)
        if tiers is None:
            return None
        band = tiers.at(None)[0].band(input_tokens)
        return input_tokens * band.input + output_tokens * band.output

    def _tiers(self, provider: str, model: str | None) -> TierRates | None:
        key = (provider, model)
        tiers = self._known.get(key)
        if tiers is None and key not in self._unknown:
            tiers = self._compile(provider, model)
        return tiers

    def _compile(self, provider: str, model: str | None) -> TierRates | None:
        tiers = None if model is None else self._rates(provider, model)
        if tiers is None:
            self._unknown.add((provider, model), None)
        else:
            self._known.add((provider, model), tiers)
        return tiers

    def _rates(self, provider: str, model: str) -> TierRates | None:
        """Override or list rates, discounted. Overridden prices have no tier variants."""
        override = self._overrides.rates(provider, model)
        listed = ListRates(override, {}) if override is not None else list_rates(provider, model)
        if listed is None:
            return None
        standard, by_tier = listed
        factor = self._overrides.factor(provider, model)
        if factor != 1.0:
            standard = standard.scaled(factor)
            by_tier = {tier: rates.scaled(factor) for tier, rates in by_tier.items()}
        return tier_rates(provider, standard, by_tier)


def _parts(rates: Rates, usage: Usage) -> _Parts:
    """(input, cache_read, cache_write, output, savings) in USD."""
    band = rates.band(usage.input_tokens)
    read = usage.cache_read_tokens
    write_1h = usage.cache_write_1h_tokens
    write = ((usage.cache_write_tokens - write_1h) * band.cache_write_5m
             + write_1h * band.cache_write_1h)
    # What reads saved against the input rate, minus the premium writes paid over it.
    savings = (read * (band.input - band.cache_read)
               - (write - usage.cache_write_tokens * band.input))
    return (usage.uncached_input_tokens * band.input, read * band.cache_read, write,
            usage.output_tokens * band.output, savings)


def _reported(provider_cost: float, amount: float, parts: _Parts, version: str) -> Cost:
    """The provider's amount, split in the proportions of our own breakdown."""
    if amount == 0 and provider_cost != 0:  # we priced it at 0: no proportions to split by
        return Cost(provider_cost, None, None, None, None, None, STATUS_EXACT, SOURCE_PROVIDER,
                    version)
    scale = provider_cost / amount if amount else 0.0
    input_, read, write, output, savings = (part * scale for part in parts)
    return Cost(provider_cost, input_, read, write, output, savings, STATUS_EXACT,
                SOURCE_PROVIDER, version)


_default_book: PriceBook | None = None
_default_lock = threading.Lock()


def _default() -> PriceBook:
    """The process-wide book, built on first use so importing never reads files.

    A broken override file must not take the app down: it is logged once and list prices
    are used.
    """
    global _default_book
    if _default_book is not None:
        return _default_book
    with _default_lock:
        if _default_book is None:
            path = os.environ.get(ENV_PRICES_FILE)
            try:
                _default_book = PriceBook(path)
            except ValueError as exc:
                _log.error("ignoring %s, using list prices only: %s", ENV_PRICES_FILE, exc)
                _default_book = PriceBook()
        return _default_book


def price(provider: str, model: str | None, usage: Usage, *, service_tier: str | None = None,
          provider_cost: float | None = None) -> Cost:
    """Cost of one call, from the default book (overrides from ``LLMCOST_PRICES_FILE``).

    ``provider`` is the ``gen_ai.provider.name`` value; ``service_tier`` the tier the
    response reports; ``provider_cost`` a cost the response reports itself (e.g. OpenRouter).
    """
    return (_default_book or _default()).price(provider, model, usage, service_tier=service_tier,
                                               provider_cost=provider_cost)


def price_tokens(provider: str, model: str | None, input_tokens: int,
                 output_tokens: int) -> float | None:
    """`PriceBook.price_tokens` on the default book."""
    return (_default_book or _default()).price_tokens(provider, model, input_tokens,
                                                      output_tokens)


_preload_started = False


def preload() -> None:
    """Import the price data and build the default book on a daemon thread.

    Called at instrument time so the first priced call does not pay genai-prices' import
    (~170 ms) on the request path. Idempotent (one thread for all instrumentors); never raises.
    """
    global _preload_started
    with _default_lock:
        if _preload_started:
            return
        _preload_started = True
    threading.Thread(target=_preload, name="otel-llmcost-prices", daemon=True).start()


def _preload() -> None:
    try:
        import genai_prices.data  # noqa: F401 - the import is the point

        _default()
    except Exception:  # noqa: BLE001 - pricing falls back to lazy loading on first use
        _log.warning("otel-llmcost: price data preload failed", exc_info=True)
