"""Sampling selectable by name: ``OTEL_TRACES_SAMPLER=llmcost``, head then tail.

`LLMCostSampler` is the head: parent-based and consistent (W3C/OpenTelemetry probability
sampling, see `_threshold`). A root span is picked iff the trace's randomness reaches the
rejection threshold of ``LLMCOST_SAMPLE_RATE``, and the threshold is written to
``tracestate`` as ``ot=th:…`` so that downstream services and tools agree and can
re-weight. A child follows its parent's decision and reads the parent's threshold from the
parent span's trace state itself (the Python SDK does not pass it to samplers). Picked
spans carry ``llmcost.sampling.adjusted_count`` (1/p) and ``llmcost.sampling.rule``.

When the policy has tail rules, `install` puts the tail stage (`_tail.TailProcessor`) in
front of the exporting span processors and tells the sampler to *record* (not drop) the
traces it did not pick, so that a rule can still keep them once they end.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any, Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, TraceState, get_current_span
from opentelemetry.util.types import Attributes

from otel_llmcost import _faults, semconv as sc
from otel_llmcost.attribution import ScopeOnEverySpan
from otel_llmcost.instrumentation import _content
from otel_llmcost.sampling import _threshold as th
from otel_llmcost.sampling._policy import Policy
from otel_llmcost.sampling._tail import TailProcessor
from otel_llmcost.sampling._tax import Stats

__all__ = ["LLMCostSampler", "Policy", "TailProcessor", "install", "sampler_from_env"]

_LOG = logging.getLogger("otel_llmcost")
_OT = "ot"


class LLMCostSampler(Sampler):
    """Parent-based consistent probability sampler (``rate`` in [0, 1]).

    ``policy`` carries the tail rules that `install` reads; by default the rate's own.
    """

    def __init__(self, rate: float = 1.0, policy: Policy | None = None) -> None:
        self.rate = min(1.0, max(0.0, rate))
        self.policy = policy or Policy(rate=self.rate)
        # Set by `install`: record unpicked traces for the tail stage, count head drops.
        self.record_unpicked = False
        self.stats: Stats | None = None
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
        parent_span = get_current_span(parent_context)
        parent = parent_span.get_span_context()
        if parent.is_valid:
            if parent.trace_flags.sampled:
                return _follow(parent.trace_state, attributes)
            # Unpicked upstream: record it for the tail stage if we have one (a remote
            # parent's trace gets its own local tail decision), else drop as it did.
            if self.record_unpicked and (parent.is_remote or parent_span.is_recording()):
                return SamplingResult(Decision.RECORD_ONLY, attributes, parent.trace_state)
            return self._drop(parent.trace_state)
        state = trace_state or TraceState()
        fields = th.parse_ot(state.get(_OT))
        if th.randomness(trace_id, fields.get("rv")) < self._threshold:
            if self.record_unpicked:
                return SamplingResult(Decision.RECORD_ONLY, attributes, state)
            return self._drop(state)
        fields["th"] = self._th
        value = th.format_ot(fields)
        if value is not None:
            state = state.update(_OT, value) if _OT in state else state.add(_OT, value)
        return SamplingResult(Decision.RECORD_AND_SAMPLE,
                              _merged(attributes, self._kept_attributes), state)

    def get_description(self) -> str:
        return f"LLMCostSampler{{rate={self.rate}}}"

    def _drop(self, state: TraceState) -> SamplingResult:
        if self.stats is not None:
            self.stats.head_drop()
        return SamplingResult(Decision.DROP, None, state)


def _merged(attributes: Attributes, ours: dict[str, Any]) -> Attributes:
    """The span's own start attributes plus ours (the SDK starts the span with these only)."""
    return {**attributes, **ours} if attributes else ours


def _follow(state: TraceState, attributes: Attributes) -> SamplingResult:
    """A child of a picked parent is picked, with the parent's adjusted count if it has one."""
    parent_th = th.parse_ot(state.get(_OT)).get("th")
    t = th.decode(parent_th) if parent_th is not None else None
    if t is not None:
        attributes = _merged(attributes, {
            sc.LLMCOST_SAMPLING_ADJUSTED_COUNT: th.adjusted_count(t),
            sc.LLMCOST_SAMPLING_RULE: sc.SAMPLING_RULE_PROBABILITY})
    return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, state)


def sampler_from_env(arg: str | None = None) -> LLMCostSampler:
    """Entry point ``llmcost`` (group ``opentelemetry_traces_sampler``).

    ``OTEL_TRACES_SAMPLER_ARG`` arrives as ``arg`` (None when unset); when it is unset or
    empty the rate is ``LLMCOST_SAMPLE_RATE`` (default 1.0: sampling is opt-in). The
    tail rules and the rest of the policy come from the other ``LLMCOST_*`` variables.
    """
    policy = Policy.from_env(arg)
    return LLMCostSampler(policy.rate, policy)


_installed: weakref.WeakKeyDictionary[TracerProvider, TailProcessor] = (
    weakref.WeakKeyDictionary())
_install_lock = threading.Lock()


def install(tracer_provider: Any = None, meter_provider: Any = None) -> TailProcessor | None:
    """Put the tail stage, the self-metrics and `ScopeOnEverySpan` on an SDK
    ``TracerProvider`` (idempotent).

    Call it after adding your exporting processors: with an `LLMCostSampler` whose policy
    has tail rules, the provider's `BatchSpanProcessor`s and `SimpleSpanProcessor`s move
    behind the tail stage, which alone decides what they export. Otherwise nothing is
    held and the stage only counts. Returns None for a provider that is not the SDK's.
    """
    provider = tracer_provider or trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        _LOG.debug("otel-llmcost: no SDK TracerProvider; sampling self-metrics are off")
        return None
    with _install_lock:
        found = _installed.get(provider)
        if found is not None:
            return found
        sampler = provider.sampler
        ours = isinstance(sampler, LLMCostSampler)
        policy = sampler.policy if ours else Policy.from_env()
        tail = ours and policy.tail
        stats = Stats()
        multi = provider._active_span_processor  # noqa: SLF001 - no public way to reorder
        if tail:
            exporting = [p for p in multi._span_processors if _exports(p)]  # noqa: SLF001
            stage = TailProcessor(policy, exporting, stats, tail=True)
            with multi._lock:  # noqa: SLF001
                multi._span_processors = tuple(  # noqa: SLF001
                    p for p in multi._span_processors if not _exports(p)) + (stage,)
        else:
            stage = TailProcessor(policy, (), stats, tail=False)
            provider.add_span_processor(stage)
        provider.add_span_processor(ScopeOnEverySpan())
        if ours:
            sampler.stats = stats
            sampler.record_unpicked = tail
        if tail and policy.capture == sc.CAPTURE_KEPT:
            _content.set_sink(stage.stash_content)
        stats.register(policy, lambda: stage.top_threshold, meter_provider)
        _installed[provider] = stage
        return stage


def _exports(processor: Any) -> bool:
    return isinstance(processor, (BatchSpanProcessor, SimpleSpanProcessor))


def post_instrument() -> None:
    """Entry point ``llmcost_tail`` (group ``opentelemetry_post_instrument``)."""
    try:
        install()
    except Exception as fault:  # noqa: BLE001 - never break the app
        _faults.report("sampling.install", fault)
