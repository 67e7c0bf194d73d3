"""Head sampling selectable by name: ``OTEL_TRACES_SAMPLER=llmcost``.

`LLMCostSampler` is parent-based and consistent (W3C/OpenTelemetry probability sampling,
see `_threshold`): a root span is kept iff the trace's randomness reaches the rejection
threshold of ``LLMCOST_SAMPLE_RATE``, and the threshold is written to ``tracestate`` as
``ot=th:…`` so that downstream services and tools agree and can re-weight. A child follows
its parent's decision and reads the parent's threshold from the parent span's trace state
itself (the Python SDK does not pass it to samplers). Kept spans carry
``llmcost.sampling.adjusted_count`` (1/p) and ``llmcost.sampling.rule``.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, TraceState, get_current_span
from opentelemetry.util.types import Attributes

from otel_llmcost import semconv as sc
from otel_llmcost.sampling import _threshold as th

__all__ = ["LLMCostSampler", "sampler_from_env"]

_LOG = logging.getLogger("otel_llmcost")
_OT = "ot"


class LLMCostSampler(Sampler):
    """Parent-based consistent probability sampler (``rate`` in [0, 1])."""

    def __init__(self, rate: float = 1.0) -> None:
        self.rate = min(1.0, max(0.0, rate))
        self._threshold = th.threshold(self.rate) if self.rate > 0 else th.MAX_THRESHOLD
        self._th = th.encode(self._threshold)
        self._kept_attributes = {
            sc.LLMCOST_SAMPLING_ADJUSTED_COUNT: th.adjusted_count(self._threshold)
            if self.rate > 0 else 0.0,
            sc.LLMCOST_SAMPLING_RULE: sc.SAMPLING_RULE_PROBABILITY}

    def should_sample(self, parent_context: Context | None, trace_id: int, name: str,
                      kind: SpanKind | None = None, attributes: Attributes = None,
                      links: Sequence[Link] | None = None,
                      trace_state: TraceState | None = None) -> SamplingResult:
        parent = get_current_span(parent_context).get_span_context()
        if parent.is_valid:
            return _follow(parent.trace_state, parent.trace_flags.sampled)
        state = trace_state or TraceState()
        fields = th.parse_ot(state.get(_OT))
        if th.randomness(trace_id, fields.get("rv")) < self._threshold:
            return SamplingResult(Decision.DROP, None, state)
        fields["th"] = self._th
        value = th.format_ot(fields)
        if value is not None:
            state = state.update(_OT, value) if _OT in state else state.add(_OT, value)
        return SamplingResult(Decision.RECORD_AND_SAMPLE, self._kept_attributes, state)

    def get_description(self) -> str:
        return f"LLMCostSampler{{rate={self.rate}}}"


def _follow(state: TraceState, sampled: bool) -> SamplingResult:
    """A child keeps its parent's decision, and its adjusted count when the parent has one."""
    if not sampled:
        return SamplingResult(Decision.DROP, None, state)
    parent_th = th.parse_ot(state.get(_OT)).get("th")
    t = th.decode(parent_th) if parent_th is not None else None
    attributes: dict[str, Any] | None = None
    if t is not None:
        attributes = {sc.LLMCOST_SAMPLING_ADJUSTED_COUNT: th.adjusted_count(t),
                      sc.LLMCOST_SAMPLING_RULE: sc.SAMPLING_RULE_PROBABILITY}
    return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, state)


def sampler_from_env(arg: str | None = None) -> LLMCostSampler:
    """Entry point ``llmcost`` (group ``opentelemetry_traces_sampler``).

    ``OTEL_TRACES_SAMPLER_ARG`` arrives as ``arg`` (None when unset); when it is unset or
    empty the rate is ``LLMCOST_SAMPLE_RATE`` (default 1.0: sampling is opt-in).
    """
    raw = arg if arg not in (None, "") else os.environ.get(sc.ENV_SAMPLE_RATE, "1.0")
    try:
        rate = float(raw)  # type: ignore[arg-type]
        if not 0.0 <= rate <= 1.0:
            raise ValueError(raw)
    except ValueError:
        _LOG.warning("otel-llmcost: sampling rate %r is not a number in [0, 1]; using 1.0", raw)
        rate = 1.0
    return LLMCostSampler(rate)
