"""`Usage`: one call's token counts, normalised across providers.

Every provider module maps its response shape to this type and nothing else, so pricing
and telemetry never need to know provider quirks (OpenAI counts cached tokens inside
``prompt_tokens``; Anthropic's ``input_tokens`` excludes them).
"""

from __future__ import annotations

from typing import NamedTuple


class Usage(NamedTuple):
    """Token counts of one call (immutable; a NamedTuple because it is built on every call).

    ``input_tokens`` counts ALL input tokens, cache reads and writes included; the cache
    fields are subsets of it. ``output_tokens`` includes ``reasoning_tokens``.
    ``cache_write_1h_tokens`` is the part of ``cache_write_tokens`` written with a 1-hour
    TTL (Anthropic); the rest was written with the default 5-minute TTL.
    ``estimated`` is true when any count was estimated locally rather than reported.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False

    @property
    def uncached_input_tokens(self) -> int:
        """Input tokens billed at the plain input rate."""
        return self.input_tokens - self.cache_read_tokens - self.cache_write_tokens
