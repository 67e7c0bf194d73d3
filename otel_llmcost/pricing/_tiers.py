"""Service-tier multipliers, applied uniformly to every token class of a call.

genai-prices prices the standard tier; this table turns the ``service_tier`` a response
reports into a multiplier on those rates.

=========  =====================================  ==========================================
Provider   Tier                                   Multiplier
=========  =====================================  ==========================================
openai     flex, batch                            0.5
openai     priority                               per model, ``_OPENAI_PRIORITY`` below
openai     default, auto, scale                   1
anthropic  batch                                  0.5
anthropic  standard, priority                     1
any        None                                   1
any        any other string                       1, status "estimated"
=========  =====================================  ==========================================

An OpenAI ``priority`` call on a model without a published priority price is priced at
2x standard (the most common premium) and flagged "estimated".
"""

from __future__ import annotations

from typing import Final

from otel_llmcost.semconv import PROVIDER_ANTHROPIC, PROVIDER_OPENAI

_PRIORITY: Final = "priority"
_UNPUBLISHED_PRIORITY: Final = 2.0

_FLAT: Final[dict[tuple[str, str], float]] = {
    (PROVIDER_OPENAI, "flex"): 0.5,
    (PROVIDER_OPENAI, "batch"): 0.5,
    (PROVIDER_OPENAI, "default"): 1.0,
    (PROVIDER_OPENAI, "auto"): 1.0,
    (PROVIDER_OPENAI, "scale"): 1.0,
    (PROVIDER_ANTHROPIC, "batch"): 0.5,
    (PROVIDER_ANTHROPIC, "standard"): 1.0,
    (PROVIDER_ANTHROPIC, _PRIORITY): 1.0,
}

# OpenAI pricing page, priority tier (openai.com/api-priority-processing): priority /
# standard USD per MTok input, keyed by genai-prices' canonical model id (dated ids resolve
# to it). Every entry also matches the priority price variants in genai-prices 0.2.3's data;
# gpt-5.3-codex, gpt-5.5 and the gpt-5.6/gpt-6 models are checked against that data only.
# The premium is per model, not per family: gpt-5-mini is 1.8x while gpt-5 is 2x.
_OPENAI_PRIORITY: Final[dict[str, float]] = {
    "gpt-4o": 4.25 / 2.5,              # 1.7
    "gpt-4o-2024-05-13": 8.75 / 5.0,   # 1.75
    "gpt-4o-mini": 0.25 / 0.15,        # 1.67
    "gpt-4.1": 3.5 / 2.0,              # 1.75
    "gpt-4.1-mini": 0.7 / 0.4,         # 1.75
    "gpt-4.1-nano": 0.2 / 0.1,         # 2.0
    "o3": 3.5 / 2.0,                   # 1.75
    "o4-mini": 2.0 / 1.1,              # 1.82
    "gpt-5-mini": 0.45 / 0.25,         # 1.8
    "gpt-5.5": 12.5 / 5.0,             # 2.5
    **dict.fromkeys((
        "gpt-5", "gpt-5.1", "gpt-5.2", "gpt-5.3-codex", "gpt-5.4", "gpt-5.4-mini",
        "gpt-5.6-luna", "gpt-5.6-sol", "gpt-5.6-terra",
        "gpt-6-astra", "gpt-6-luna", "gpt-6-sol", "gpt-6.1-sol", "gpt-6.1-terra",
    ), 2.0),
}

_STANDARD: Final = (1.0, False)


def tier_multiplier(provider: str, service_tier: str | None, model_id: str) -> tuple[float, bool]:
    """(multiplier, estimated) for a call served at ``service_tier``."""
    if service_tier is None:
        return _STANDARD
    flat = _FLAT.get((provider, service_tier))
    if flat is not None:
        return flat, False
    if provider == PROVIDER_OPENAI and service_tier == _PRIORITY:
        published = _OPENAI_PRIORITY.get(model_id)
        return (published, False) if published is not None else (_UNPUBLISHED_PRIORITY, True)
    return 1.0, True
