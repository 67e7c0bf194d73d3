"""Service tiers: which rates a call is billed at, given the ``service_tier`` it reports.

genai-prices' tier variants are the primary source (see ``_listprices``): where the data
lists a model's prices at a tier, they are used as they are, status "exact". genai-prices
0.2.3 covers OpenAI priority (and ``fast``, listed at the priority prices), flex and batch,
and Anthropic batch, for current models. This table is the fallback for a (model, tier) the
data does not cover (older models, models priced by an override file, a model served by a
reseller such as Azure); it multiplies every token class of the standard rates:

=========  =====================  ========================================================
Provider   Tier                   Fallback multiplier
=========  =====================  ========================================================
openai     flex, batch            0.5
openai     priority               2, status "estimated" (the most common premium), e.g.
                                  gpt-5-nano, which has no priority variant
openai     default, auto, scale   1
anthropic  batch                  0.5
anthropic  standard, priority     1
any        None                   1
any        any other string       1, status "estimated"
=========  =====================  ========================================================

Data values kept although they are not the usual fixed multiple of standard (genai-prices
0.2.3; the model's ``price_comments`` give the reason):

* OpenAI batch on gpt-4o, gpt-4o-mini, gpt-4.1, gpt-4.1-mini, gpt-4.1-nano, o1, o3, o3-mini
  and o4-mini sets no cached-input price, so cached input keeps the standard cached rate
  (gpt-4o: 1.25, not 0.625 USD/MTok). Not filled in as a gap: the data says OpenAI's Batch
  table publishes no cached-input rate for these models.
* OpenAI batch on gpt-3.5-turbo-1106 is an empty variant: batch costs standard (the data
  says OpenAI's Batch table lists the standard rates).
* Priority on gpt-5.4 and gpt-5.5, and flex and batch on gpt-5.5-pro, are flat: no
  surcharge above 272k input tokens, unlike their standard rates.
* Published rounded cached rates: gpt-5.4 flex and batch 0.13 (half of 0.25 is 0.125),
  o4-mini flex 0.138, gpt-image-1 and gpt-image-1.5 batch 0.63.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from otel_llmcost.pricing._rates import Rates
from otel_llmcost.semconv import PROVIDER_ANTHROPIC, PROVIDER_OPENAI

# Rates for one tier, and whether pricing at them is an estimate.
TierPrice = tuple[Rates, bool]

_FALLBACK: Final[dict[str, dict[str, tuple[float, bool]]]] = {
    PROVIDER_OPENAI: {"flex": (0.5, False), "batch": (0.5, False), "priority": (2.0, True),
                      "default": (1.0, False), "auto": (1.0, False), "scale": (1.0, False)},
    PROVIDER_ANTHROPIC: {"batch": (0.5, False), "standard": (1.0, False),
                         "priority": (1.0, False)},
}


@dataclass(frozen=True, slots=True)
class TierRates:
    """A model's rates at every tier it may report, compiled once so a call is a dict lookup."""

    by_tier: Mapping[str | None, TierPrice]
    unknown: TierPrice

    def at(self, service_tier: str | None) -> TierPrice:
        """(rates, estimated) for a call served at ``service_tier``."""
        return self.by_tier.get(service_tier, self.unknown)


def tier_rates(provider: str, standard: Rates, listed: Mapping[str, Rates]) -> TierRates:
    """The data's rates for the tiers it lists, the fallback multiplier for the others."""
    by_tier: dict[str | None, TierPrice] = {
        tier: (standard.scaled(multiplier), estimated)
        for tier, (multiplier, estimated) in _FALLBACK.get(provider, {}).items()}
    by_tier.update((tier, (rates, False)) for tier, rates in listed.items())
    by_tier[None] = (standard, False)
    return TierRates(by_tier, (standard, True))
