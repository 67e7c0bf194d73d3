"""The invocation: one object owns a call's span and metrics from start to end.

Flow: `Request` → span started (attributes samplers can use) → provider call →
`Reply` → `Usage` → `Cost` → span attributes (only if the span records) and metrics
(always, whatever the sampling decision, so cost metrics count 100 % of calls).
"""

from __future__ import annotations

import contextvars
import time
from typing import Any, Mapping

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_llmcost import _env, _faults, attribution, budgets, pricing, semconv as sc, tokens
from otel_llmcost.instrumentation import _content
from otel_llmcost.instrumentation._counters import Key, PartitionedCounter
from otel_llmcost.instrumentation._types import Reply, Request
from otel_llmcost.usage import Usage
from otel_llmcost.version import __version__

# The invocation whose provider call is in flight, so SDK retries can be counted on it.
CURRENT: contextvars.ContextVar[Invocation | None] = contextvars.ContextVar(
    "otel_llmcost_invocation", default=None)


class Telemetry:
    """Tracer and instruments, created once per `instrument()`."""

    def __init__(self, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        self.capture = _env.capture_mode()
        self.content_max_chars = _env.content_max_chars()
        self.tracer = trace.get_tracer(sc.INSTRUMENTATION_SCOPE, __version__, tracer_provider)
        meter = metrics.get_meter(sc.INSTRUMENTATION_SCOPE, __version__, meter_provider)
        self.duration = _histogram(meter, sc.M_OPERATION_DURATION)
        self.token_usage = _histogram(meter, sc.M_TOKEN_USAGE)
        self.cost = PartitionedCounter(meter, sc.M_COST, sc.LLMCOST_COST_COMPONENT,
                                       sc.COST_COMPONENTS)
        self.request_cost = _histogram(meter, sc.M_REQUEST_COST)
        self.tokens = PartitionedCounter(meter, sc.M_TOKENS, sc.LLMCOST_TOKEN_KIND,
                                         sc.TOKEN_KINDS)
        self.cache_savings = PartitionedCounter(
            meter, sc.M_CACHE_SAVINGS, sc.LLMCOST_CACHE_EFFECT,
            (sc.CACHE_EFFECT_SAVING, sc.CACHE_EFFECT_PREMIUM))
        self.unpriced = PartitionedCounter(meter, sc.M_UNPRICED_CALLS)


def _histogram(meter: metrics.Meter, metric: sc.MetricDef) -> metrics.Histogram:
    return meter.create_histogram(metric.name, unit=metric.unit, description=metric.description,
                                  explicit_bucket_boundaries_advisory=list(metric.buckets))


class Invocation:
    """One LLM call in flight. `end()` is idempotent and never raises."""

    __slots__ = ("_tel", "request", "span", "_context", "_start", "_token", "_current",
                 "retries", "_ended", "_metric_attrs", "first_chunk_at", "_scope", "_hold")

    def __init__(self, tel: Telemetry, request: Request, server: tuple[str | None, int | None]
                 ) -> None:
        self._tel = tel
        self.request = request
        self.retries = 0
        self._ended = False
        self.first_chunk_at: float | None = None
        self._hold: budgets.Hold | None = None
        self._scope = scope = attribution.current()
        model = request.model
        attrs: dict[str, Any] = {
            sc.GEN_AI_OPERATION_NAME: request.operation,
            sc.GEN_AI_PROVIDER_NAME: request.provider,
        }
        if model:
            attrs[sc.GEN_AI_REQUEST_MODEL] = model
        if server[0]:
            attrs[sc.SERVER_ADDRESS] = server[0]
            if server[1]:
                attrs[sc.SERVER_PORT] = server[1]
        if request.max_tokens is not None:
            attrs[sc.GEN_AI_REQUEST_MAX_TOKENS] = request.max_tokens
        if request.stream:
            attrs[sc.GEN_AI_REQUEST_STREAM] = True
        metric_attrs = {sc.GEN_AI_OPERATION_NAME: request.operation,
                        sc.GEN_AI_PROVIDER_NAME: request.provider,
                        sc.GEN_AI_REQUEST_MODEL: model or ""}
        if scope:
            attrs.update(scope)
            feature = scope.get(sc.LLMCOST_FEATURE)
            if feature:
                metric_attrs[sc.LLMCOST_FEATURE] = feature
        if request.conversation_id and sc.GEN_AI_CONVERSATION_ID not in attrs:
            attrs[sc.GEN_AI_CONVERSATION_ID] = request.conversation_id
        self._metric_attrs = metric_attrs
        name = f"{request.operation} {model}" if model else request.operation
        self.span = tel.tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attrs)
        self._start = time.perf_counter()
        # Metrics are recorded in this context, so their exemplars point at this call's span
        # even when a stream ends outside the caller's scope.
        self._context = trace.set_span_in_context(self.span)
        self._token = otel_context.attach(self._context)

    def __enter__(self) -> Invocation:
        """Enter the provider call: reserve its worst case on the budgets in force (raising,
        before anything is sent, if it must not be made); SDK retries inside it are
        counted on this invocation."""
        ledger = budgets.active()
        if ledger is not None:
            req = self.request
            try:
                self._hold = ledger.reserve(req.provider, req.operation, req.model,
                                            req.max_tokens, req.input_texts, self._scope)
            except budgets.BudgetError as refusal:
                self.fail(refusal)
                raise
        self._current = CURRENT.set(self)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        """Leave the provider call: an exception ends the invocation and propagates as is."""
        CURRENT.reset(self._current)
        if exc is not None:
            self.fail(exc)
        self.detach()

    def detach(self) -> None:
        """Stop being the current span (the call returned; a stream may still be open)."""
        token, self._token = self._token, None
        if token is not None:
            otel_context.detach(token)

    def fail(self, exc: BaseException) -> None:
        """End with the provider's exception (which the caller receives unchanged)."""
        self.end(None, exc)

    def end(self, reply: Reply | None, exc: BaseException | None = None) -> None:
        """Price the call, annotate the span, record metrics and end the span."""
        if self._ended:
            return
        self._ended = True
        self.detach()
        actual = None
        try:
            actual = self._record(reply, exc)
        except Exception as fault:  # noqa: BLE001 - never break the app
            _faults.report("invocation.end", fault)
        finally:
            self.span.end()
            if self._hold is not None:
                # The budget reservation: nothing spent if the call failed without a reply;
                # unknown (None) if its reply could not be priced or was never read.
                self._hold.settle(0.0 if reply is None and exc is not None else actual)

    def _record(self, reply: Reply | None, exc: BaseException | None) -> float | None:
        """Annotate the span and record metrics; returns the call's cost (USD) if priced."""
        tel, span, req = self._tel, self.span, self.request
        elapsed = time.perf_counter() - self._start
        recording = span.is_recording()
        mattrs = self._metric_attrs
        if exc is not None:
            error_type = type(exc).__qualname__
            mattrs = {**mattrs, sc.ERROR_TYPE: error_type}
            if recording:
                span.set_attribute(sc.ERROR_TYPE, error_type)
                span.set_status(Status(StatusCode.ERROR, str(exc)[:256]))
        ctx = self._context
        tel.duration.record(elapsed, mattrs, ctx)
        if recording and tel.capture != sc.CAPTURE_OFF:
            _capture(tel, span, req, reply)
        if reply is None:
            if recording and self.retries:
                span.set_attribute(sc.LLMCOST_RETRIES, self.retries)
            return None
        usage = reply.usage
        if usage is None and reply.output_text is not None:
            usage = _estimate(req, reply.output_text)
        cost = None
        if usage is not None or reply.provider_cost is not None:
            cost = _price(req, reply, usage or Usage())
        if recording:
            _annotate(span, reply, usage, cost, self.retries, self.first_chunk_at, self._start)
        key = tuple(mattrs.items())
        if usage is not None:
            _record_usage(tel, mattrs, key, usage)
        if cost is not None:
            _record_cost(tel, mattrs, key, cost, ctx)
            return cost.amount
        return None


def _capture(tel: Telemetry, span: Any, req: Request, reply: Reply | None) -> None:
    """Content on the span (``all``), or its builder to the tail stage (``kept``)."""
    def build() -> dict[str, str]:
        system, inputs = req.content() if req.content is not None else (None, None)
        outputs = reply.content() if reply is not None and reply.content is not None else None
        return _content.attributes(system, inputs, outputs, tel.content_max_chars)

    if tel.capture == sc.CAPTURE_ALL:
        span.set_attributes(build())
        return
    sink = _content.get_sink()
    if sink is not None:  # else no tail stage: nothing could ever attach it
        sink(span.get_span_context(), build)


def _estimate(req: Request, output_text: str) -> Usage:
    """Usage estimated from text: input from the request, output from what was streamed."""
    input_tokens = tokens.count_all(req.input_texts()) if req.input_texts else 0
    return Usage(input_tokens=input_tokens, output_tokens=tokens.count(output_text),
                 estimated=True)


def _price(req: Request, reply: Reply, usage: Usage) -> pricing.Cost:
    model = reply.model or req.model
    cost = pricing.price(req.provider, model, usage, service_tier=reply.service_tier,
                         provider_cost=reply.provider_cost)
    if cost.status == sc.STATUS_UNKNOWN and req.model and req.model != model:
        cost = pricing.price(req.provider, req.model, usage, service_tier=reply.service_tier,
                             provider_cost=reply.provider_cost)
    return cost


def _annotate(span: Any, reply: Reply, usage: Usage | None, cost: pricing.Cost | None,
              retries: int, first_chunk_at: float | None, started: float) -> None:
    attrs: dict[str, Any] = {}
    if reply.model:
        attrs[sc.GEN_AI_RESPONSE_MODEL] = reply.model
    if reply.id:
        attrs[sc.GEN_AI_RESPONSE_ID] = reply.id
    if reply.finish_reasons:
        attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] = reply.finish_reasons
    if reply.service_tier:
        attrs[sc.LLMCOST_SERVICE_TIER] = reply.service_tier
    if retries:
        attrs[sc.LLMCOST_RETRIES] = retries
    if first_chunk_at is not None:
        attrs[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = first_chunk_at - started
    if usage is not None:
        attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] = usage.input_tokens
        attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] = usage.output_tokens
        attrs[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = usage.cache_read_tokens
        attrs[sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] = usage.cache_write_tokens
        if usage.reasoning_tokens:
            attrs[sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] = usage.reasoning_tokens
    if cost is not None:
        attrs[sc.LLMCOST_PRICING_STATUS] = cost.status
        attrs[sc.LLMCOST_PRICING_VERSION] = cost.version
        if cost.amount is not None:
            attrs[sc.GEN_AI_USAGE_COST_AMOUNT] = cost.amount
            attrs[sc.GEN_AI_USAGE_COST_CURRENCY] = sc.CURRENCY_USD
            attrs[sc.GEN_AI_USAGE_COST_SOURCE] = cost.source
        for key, value in ((sc.LLMCOST_COST_INPUT, cost.input),
                           (sc.LLMCOST_COST_CACHE_READ, cost.cache_read),
                           (sc.LLMCOST_COST_CACHE_WRITE, cost.cache_write),
                           (sc.LLMCOST_COST_OUTPUT, cost.output),
                           (sc.LLMCOST_CACHE_SAVINGS, cost.savings)):
            if value is not None:
                attrs[key] = value
    span.set_attributes(attrs)


# Token histograms carry no exemplars (the cost and duration ones link to the span): an
# exemplar costs ~4 µs per record in the Python SDK.
_NO_EXEMPLAR = Context()


def _record_usage(tel: Telemetry, mattrs: Mapping[str, str], key: Key, usage: Usage) -> None:
    tel.token_usage.record(usage.input_tokens, {**mattrs, sc.GEN_AI_TOKEN_TYPE: "input"},
                           _NO_EXEMPLAR)
    tel.token_usage.record(usage.output_tokens, {**mattrs, sc.GEN_AI_TOKEN_TYPE: "output"},
                           _NO_EXEMPLAR)
    tel.tokens.add(key, (usage.uncached_input_tokens, usage.cache_read_tokens,
                         usage.cache_write_tokens, usage.output_tokens))


def _record_cost(tel: Telemetry, mattrs: Mapping[str, str], key: Key, cost: pricing.Cost,
                 ctx: Context) -> None:
    if cost.amount is None:
        tel.unpriced.add(key, (1,))
        return
    tel.request_cost.record(cost.amount, mattrs, ctx)
    tel.cost.add(key, (cost.input or 0.0, cost.cache_read or 0.0, cost.cache_write or 0.0,
                       cost.output or 0.0))
    savings = cost.savings
    if savings:
        tel.cache_savings.add(key, (savings, 0.0) if savings > 0 else (0.0, -savings))
