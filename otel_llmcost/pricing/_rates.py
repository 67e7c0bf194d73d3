"""Compiled per-token rates: plain floats so pricing a call is arithmetic, not a lookup engine."""

from __future__ import annotations

from dataclasses import dataclass

from otel_llmcost.semconv import PROVIDER_ANTHROPIC

_TOKENS_PER_MTOK = 1_000_000


@dataclass(frozen=True, slots=True)
class Band:
    """USD per token of each token class, for one range of total input tokens."""

    input: float
    output: float
    cache_read: float
    cache_write_5m: float
    cache_write_1h: float

    def scaled(self, factor: float) -> Band:
        return Band(self.input * factor, self.output * factor, self.cache_read * factor,
                    self.cache_write_5m * factor, self.cache_write_1h * factor)


@dataclass(frozen=True, slots=True)
class Rates:
    """Everything needed to price one model.

    ``tiers`` are long-context cliffs, highest threshold first: once a call's total
    input tokens exceed a threshold, every token of every class is priced at that band
    (the model genai-prices and the providers use). Service tiers are a separate axis: a
    model has one ``Rates`` per service tier (see ``_tiers``).
    """

    base: Band
    tiers: tuple[tuple[int, Band], ...] = ()

    def band(self, input_tokens: int) -> Band:
        for above, band in self.tiers:
            if input_tokens > above:
                return band
        return self.base

    def scaled(self, factor: float) -> Rates:
        return Rates(self.base.scaled(factor),
                     tuple((above, band.scaled(factor)) for above, band in self.tiers))


def make_band(provider: str, input_mtok: float, output_mtok: float,
              cache_read_mtok: float | None = None, cache_write_mtok: float | None = None,
              cache_write_1h_mtok: float | None = None) -> Band:
    """Build a band from USD-per-million prices, filling the cache rates a source left out.

    No cache-read rate: reads cost the input rate (no discount is claimed). No cache-write
    rate: every write costs the input rate. A 5-minute write rate but no 1-hour rate: the
    1-hour rate is 2x input on Anthropic (its published 1-hour multiplier, so this is not
    flagged as an estimate), and the 5-minute rate elsewhere (no TTL distinction).
    """
    if cache_read_mtok is None:
        cache_read_mtok = input_mtok
    if cache_write_1h_mtok is None:
        if cache_write_mtok is None:
            cache_write_1h_mtok = input_mtok
        elif provider == PROVIDER_ANTHROPIC:
            cache_write_1h_mtok = 2 * input_mtok
        else:
            cache_write_1h_mtok = cache_write_mtok
    if cache_write_mtok is None:
        cache_write_mtok = input_mtok
    return Band(*(mtok / _TOKENS_PER_MTOK for mtok in (
        input_mtok, output_mtok, cache_read_mtok, cache_write_mtok, cache_write_1h_mtok)))
