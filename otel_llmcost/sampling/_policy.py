"""The sampling policy: every knob, read once from the environment and validated."""

from __future__ import annotations

from dataclasses import dataclass

from otel_llmcost import _env, semconv as sc


@dataclass(frozen=True, slots=True)
class Policy:
    """What to keep: the head rate, the tail rules, content capture and telemetry prices."""

    rate: float = 1.0
    keep_cost_usd: float | None = None
    keep_top_percent: float | None = None
    keep_errors: bool = True
    keep_slow_ms: float | None = None
    keep_max_per_second: float | None = None
    buffer_spans: int = 8192
    timeout_s: float = 30.0
    capture: str = sc.CAPTURE_OFF
    usd_per_gb: float | None = None
    usd_per_million_spans: float | None = None

    @property
    def has_rules(self) -> bool:
        """Whether any tail rule can keep a trace the head did not pick."""
        return (self.keep_errors or self.keep_cost_usd is not None
                or self.keep_top_percent is not None or self.keep_slow_ms is not None)

    @property
    def tail(self) -> bool:
        """Whether traces must wait for a tail decision (else export follows the head)."""
        return (self.rate < 1.0 and self.has_rules) or self.capture == sc.CAPTURE_KEPT

    @classmethod
    def from_env(cls, rate_arg: str | None = None) -> Policy:
        """The policy of ``LLMCOST_*`` variables; ``rate_arg`` is ``OTEL_TRACES_SAMPLER_ARG``."""
        return cls(
            rate=_env.number(sc.ENV_SAMPLE_RATE, 1.0, high=1.0) if rate_arg in (None, "")
            else _env.number("OTEL_TRACES_SAMPLER_ARG", 1.0, high=1.0, raw=rate_arg),
            keep_cost_usd=_env.optional(sc.ENV_KEEP_COST_USD),
            keep_top_percent=_env.optional(sc.ENV_KEEP_TOP_PERCENT, high=100.0, positive=True),
            keep_errors=_env.flag(sc.ENV_KEEP_ERRORS, True),
            keep_slow_ms=_env.optional(sc.ENV_KEEP_SLOW_MS),
            keep_max_per_second=_env.optional(sc.ENV_KEEP_MAX_PER_SECOND, positive=True),
            buffer_spans=int(_env.number(sc.ENV_TAIL_BUFFER_SPANS, 8192, positive=True)),
            timeout_s=_env.number(sc.ENV_TAIL_TIMEOUT_S, 30.0, positive=True),
            capture=_env.capture_mode(),
            usd_per_gb=_env.optional(sc.ENV_TELEMETRY_USD_PER_GB),
            usd_per_million_spans=_env.optional(sc.ENV_TELEMETRY_USD_PER_MILLION_SPANS),
        )
