"""Tail rules: which finished local trace to keep. Pure: no spans, no locks, no clocks.

The caller summarises a trace into `Facts` and passes the time in; `Rules.decide` returns
the rule that keeps it (or None) and whether the rate cap refused a match.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

from otel_llmcost import semconv as sc
from otel_llmcost.sampling._policy import Policy

# The top-N % threshold is learned from the costs of this many recent LLM traces.
TOP_WINDOW = 2048
_RECOMPUTE_EVERY = 64


@dataclass(slots=True)
class Facts:
    """What the rules need of a local trace, accumulated as its spans end."""

    head: bool  # the head (probability) sampler picked it
    cost: float = 0.0  # USD, sum of gen_ai.usage.cost.amount on our LLM spans
    llm_calls: int = 0
    error: bool = False
    start_ns: int = 0
    end_ns: int = 0


class Decision(NamedTuple):
    rule: str | None  # None: not kept by a rule
    rate_limited: bool  # a rule matched but the cap refused it


class TopPercent:
    """Online threshold of the top ``percent`` % of recent trace costs."""

    __slots__ = ("_k_share", "_window", "_min_seen", "_since", "threshold")

    def __init__(self, percent: float, window: int = TOP_WINDOW) -> None:
        self._k_share = percent / 100.0
        self._window: deque[float] = deque(maxlen=window)
        # Too few traces make a meaningless quantile: wait for 100/N of them (1 % → 100).
        self._min_seen = min(window, max(_RECOMPUTE_EVERY, math.ceil(1.0 / self._k_share)))
        self._since = 0
        self.threshold: float | None = None

    def observe(self, cost: float) -> None:
        self._window.append(cost)
        self._since += 1
        if len(self._window) >= self._min_seen and (
                self.threshold is None or self._since >= _RECOMPUTE_EVERY):
            self._since = 0
            k = max(1, math.floor(len(self._window) * self._k_share))
            self.threshold = heapq.nlargest(k, self._window)[-1]


class RateCap:
    """Token bucket: ``per_second`` keeps per second, with one second of burst."""

    __slots__ = ("_rate", "_tokens", "_last")

    def __init__(self, per_second: float) -> None:
        self._rate = per_second
        self._tokens = per_second
        self._last: float | None = None

    def allow(self, now_s: float) -> bool:
        if self._last is not None:
            self._tokens = min(self._rate, self._tokens + (now_s - self._last) * self._rate)
        self._last = now_s
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class Rules:
    """The tail rules of a `Policy`, with their state (learned threshold, rate cap)."""

    __slots__ = ("_policy", "top", "_cap", "_slow_ns")

    def __init__(self, policy: Policy) -> None:
        self._policy = policy
        self.top = TopPercent(policy.keep_top_percent) if policy.keep_top_percent else None
        self._cap = RateCap(policy.keep_max_per_second) if policy.keep_max_per_second else None
        self._slow_ns = (policy.keep_slow_ms * 1e6 if policy.keep_slow_ms is not None
                         else None)

    def match(self, facts: Facts) -> str | None:
        """The first rule (in `semconv.SAMPLING_RULES` order) that keeps the trace."""
        policy = self._policy
        if facts.llm_calls:
            if policy.keep_cost_usd is not None and facts.cost >= policy.keep_cost_usd:
                return sc.SAMPLING_RULE_COST
            top = self.top
            if top is not None and top.threshold is not None and facts.cost >= top.threshold \
                    and facts.cost > 0:
                return sc.SAMPLING_RULE_TOP_PERCENT
        if facts.error and policy.keep_errors:
            return sc.SAMPLING_RULE_ERROR
        if self._slow_ns is not None and facts.end_ns - facts.start_ns >= self._slow_ns:
            return sc.SAMPLING_RULE_SLOW
        return None

    def decide(self, facts: Facts, now_s: float) -> Decision:
        """Match, then learn from the trace; the cap applies only to traces the head missed
        (a head-picked trace is exported anyway, so labelling it costs nothing)."""
        rule = self.match(facts)
        if self.top is not None and facts.llm_calls:
            self.top.observe(facts.cost)
        if rule is not None and not facts.head and self._cap is not None \
                and not self._cap.allow(now_s):
            return Decision(None, True)
        return Decision(rule, False)
