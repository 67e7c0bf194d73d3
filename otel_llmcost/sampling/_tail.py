"""The tail stage: a span processor that owns the exporting processors.

Spans of a local trace (every span of one trace id started in this process) wait here
until all of them have ended; then the trace is decided as a whole by `_rules.Rules` and
either handed to the exporting processors or dropped. Memory is bounded by
``Policy.buffer_spans`` (ended spans held, and traces tracked): past it the oldest trace
is decided early. A trace whose spans never all end is decided after ``Policy.timeout_s``.
Decisions are remembered (bounded) so that late spans follow their trace.

Without tail rules (``tail=False``) nothing is held: the processor only counts.
"""

from __future__ import annotations

import random
import threading
import time
from collections import OrderedDict
from typing import Callable, Mapping, Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanContext, StatusCode, TraceFlags, TraceState

from otel_llmcost import _faults, semconv as sc
from otel_llmcost.instrumentation._content import Build
from otel_llmcost.sampling import _threshold as th
from otel_llmcost.sampling._policy import Policy
from otel_llmcost.sampling._rules import Facts, Rules
from otel_llmcost.sampling._size import span_size
from otel_llmcost.sampling._tax import Stats

_PROBABILITY = sc.SAMPLING_RULE_PROBABILITY
_UNKNOWN = object()
# A decided batch: spans, the rule that keeps them (probability: exported as recorded),
# and the content builders stashed for them by span id.
_Batch = tuple[list[ReadableSpan], str, Mapping[int, Build]]


class _Trace:
    __slots__ = ("facts", "spans", "open", "first_seen", "content")

    def __init__(self, head: bool, now: float) -> None:
        self.facts = Facts(head=head)
        self.spans: list[ReadableSpan] = []
        self.open = 0
        self.first_seen = now
        self.content: dict[int, Build] | None = None

    def add(self, span: ReadableSpan) -> None:
        self.spans.append(span)
        facts = self.facts
        scope = span.instrumentation_scope
        if scope is not None and scope.name == sc.INSTRUMENTATION_SCOPE:
            attributes = span.attributes or {}
            if sc.GEN_AI_OPERATION_NAME in attributes:
                facts.llm_calls += 1
                cost = attributes.get(sc.GEN_AI_USAGE_COST_AMOUNT)
                if cost is not None:
                    facts.cost += cost
        if span.status.status_code is StatusCode.ERROR:
            facts.error = True
        start, end = span.start_time or 0, span.end_time or 0
        if facts.start_ns == 0 or start < facts.start_ns:
            facts.start_ns = start
        if end > facts.end_ns:
            facts.end_ns = end


class TailProcessor(SpanProcessor):
    """Decides whole local traces, then feeds the kept ones to ``exporters``."""

    def __init__(self, policy: Policy, exporters: Sequence[SpanProcessor], stats: Stats,
                 tail: bool, clock: Callable[[], float] = time.monotonic,
                 size_every: int = 8) -> None:
        self._policy = policy
        # Exported bytes are estimated from a random 1 in ``size_every`` spans, scaled up:
        # unbiased, and 8 times cheaper than sizing each span (about 4 µs a span).
        self._size_share = 1.0 / size_every
        self._size_scale = size_every
        self._exporters = tuple(exporters)
        self._stats = stats
        self._tail = tail
        self._rules = Rules(policy)
        self._clock = clock
        self._lock = threading.Lock()
        self._traces: OrderedDict[int, _Trace] = OrderedDict()
        self._decided: OrderedDict[int, str | None] = OrderedDict()

    @property
    def top_threshold(self) -> float | None:
        """The learned ``LLMCOST_KEEP_TOP_PERCENT`` threshold (None until learned)."""
        top = self._rules.top
        return top.threshold if top is not None else None

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if not self._tail:
            return
        context = span.get_span_context()
        tid, now = context.trace_id, self._clock()
        with self._lock:
            trace = self._traces.get(tid)
            if trace is None:
                if tid in self._decided:
                    return  # a late span: it follows its trace's decision when it ends
                trace = self._traces[tid] = _Trace(context.trace_flags.sampled, now)
            trace.open += 1
            ready: list[_Batch] = []
            self._housekeep(now, ready)
        self._export(ready)

    def on_end(self, span: ReadableSpan) -> None:
        stats = self._stats
        if not self._tail:
            sampled = span.context.trace_flags.sampled
            size = self._size(span) if sampled else 0
            with self._lock:
                stats.seen += 1
                if sampled:
                    stats.export((span.attributes or {}).get(sc.LLMCOST_SAMPLING_RULE), 1, size)
                else:
                    stats.dropped[sc.DROP_SAMPLED_OUT] += 1
            return
        tid, now = span.context.trace_id, self._clock()
        ready: list[_Batch] = []
        with self._lock:
            stats.seen += 1
            trace = self._traces.get(tid)
            if trace is None:
                decision = self._decided.get(tid, _UNKNOWN)
                if decision is _UNKNOWN:  # started before the tail stage was installed
                    trace = self._traces[tid] = _Trace(span.context.trace_flags.sampled, now)
                    trace.open = 1
                elif decision is None:
                    stats.dropped[sc.DROP_SAMPLED_OUT] += 1
                else:
                    ready.append(([span], decision, {}))  # type: ignore[arg-type]
            if trace is not None:
                trace.add(span)
                stats.buffered += 1
                trace.open -= 1
                if trace.open <= 0:
                    self._decide(tid, trace, now, ready)
            self._housekeep(now, ready)
        self._export(ready)

    def stash_content(self, context: SpanContext, build: Build) -> None:
        """How to build a span's content, called on export only if a rule keeps its trace."""
        with self._lock:
            trace = self._traces.get(context.trace_id)
            if trace is not None:
                if trace.content is None:
                    trace.content = {}
                trace.content[context.span_id] = build

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        ready: list[_Batch] = []
        with self._lock:
            self._housekeep(self._clock(), ready)
        self._export(ready)
        return all([p.force_flush(timeout_millis) for p in self._exporters])

    def shutdown(self) -> None:
        ready: list[_Batch] = []
        with self._lock:
            now = self._clock()
            for tid, trace in list(self._traces.items()):
                self._decide(tid, trace, now, ready)
        self._export(ready)
        for processor in self._exporters:
            processor.shutdown()

    def _size(self, span: ReadableSpan) -> int:
        if random.random() >= self._size_share:
            return 0
        return span_size(span) * self._size_scale

    # -- under the lock ---------------------------------------------------------------

    def _housekeep(self, now: float, ready: list[_Batch]) -> None:
        """Decide the oldest traces while the buffer is over its bound or they timed out."""
        traces, stats, policy = self._traces, self._stats, self._policy
        while traces:
            tid, trace = next(iter(traces.items()))
            if stats.buffered > policy.buffer_spans or len(traces) > policy.buffer_spans:
                stats.overflows += 1
            elif now - trace.first_seen >= policy.timeout_s:
                stats.timeouts += 1
            else:
                break
            self._decide(tid, trace, now, ready)

    def _decide(self, tid: int, trace: _Trace, now: float, ready: list[_Batch]) -> None:
        """Decide a trace; if kept, its spans join ``ready`` for export."""
        del self._traces[tid]
        stats = self._stats
        spans = trace.spans
        stats.buffered -= len(spans)
        decision = self._rules.decide(trace.facts, now)
        keep = decision.rule or (_PROBABILITY if trace.facts.head else None)
        self._decided[tid] = keep
        if len(self._decided) > self._policy.buffer_spans:
            self._decided.popitem(last=False)
        if keep is None:
            reason = sc.DROP_RATE_LIMITED if decision.rate_limited else sc.DROP_SAMPLED_OUT
            stats.dropped[reason] += len(spans)
        elif spans:
            ready.append((spans, keep, trace.content or {}))

    # -- outside the lock ---------------------------------------------------------------

    def _export(self, ready: list[_Batch]) -> None:
        if not ready:
            return
        exporters = self._exporters
        counted = []
        for spans, keep, content in ready:
            size = 0
            for span in spans:
                out = span if keep == _PROBABILITY else _relabel(span, keep, content)
                size += self._size(out)
                for processor in exporters:
                    processor.on_end(out)
            counted.append((keep, len(spans), size))
        with self._lock:
            for keep, count, size in counted:
                self._stats.export(keep, count, size)


def _relabel(span: ReadableSpan, rule: str, content: Mapping[int, Build]) -> ReadableSpan:
    """A sampled copy of a rule-kept span: adjusted count 1, the rule, its content, no th."""
    context = span.context
    attributes = dict(span.attributes or {})
    attributes[sc.LLMCOST_SAMPLING_ADJUSTED_COUNT] = 1.0
    attributes[sc.LLMCOST_SAMPLING_RULE] = rule
    build = content.get(context.span_id)
    if build is not None:
        try:
            attributes.update(build())
        except Exception as fault:  # noqa: BLE001 - never break the app
            _faults.report("sampling.content", fault)
    return ReadableSpan(
        name=span.name,
        context=SpanContext(context.trace_id, context.span_id, is_remote=False,
                            trace_flags=TraceFlags(context.trace_flags | TraceFlags.SAMPLED),
                            trace_state=_without_th(context.trace_state)),
        parent=span.parent, resource=span.resource, attributes=attributes,
        events=span.events, links=span.links, kind=span.kind, status=span.status,
        start_time=span.start_time, end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope)


def _without_th(state: TraceState) -> TraceState:
    """The specification: a non-probabilistic decision erases ``th``."""
    value = state.get("ot") if state else None
    if value is None:
        return state
    fields = th.parse_ot(value)
    if fields.pop("th", None) is None:
        return state
    rest = th.format_ot(fields) if fields else None
    return state.update("ot", rest) if rest else state.delete("ot")
