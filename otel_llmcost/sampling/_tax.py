"""The observability tax: span counts, bytes and their price, as self-metrics.

Counts are plain integers updated under the tail stage's lock (the sampler's head drops
under their own) and read by ObservableCounters at collection, so counting costs a few
additions per span rather than a synchronous SDK ``add`` each.
"""

from __future__ import annotations

import threading
from typing import Callable, Iterable

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from otel_llmcost import semconv as sc
from otel_llmcost.sampling._policy import Policy
from otel_llmcost.version import __version__


class Stats:
    """Span counts since start. seen = exported + dropped + buffered."""

    __slots__ = ("seen", "exported", "dropped", "bytes", "overflows", "timeouts", "buffered",
                 "_head_drops", "_head_lock")

    def __init__(self) -> None:
        self.seen = 0
        self.exported: dict[str | None, int] = {}  # by llmcost.sampling.rule (None: absent)
        self.dropped = dict.fromkeys(sc.DROP_REASONS, 0)
        self.bytes = 0
        self.overflows = 0
        self.timeouts = 0
        self.buffered = 0
        self._head_drops = 0
        self._head_lock = threading.Lock()

    def head_drop(self) -> None:
        """A span the head sampler did not record: seen and dropped at once."""
        with self._head_lock:
            self._head_drops += 1

    def export(self, rule: str | None, spans: int, size: int) -> None:
        self.exported[rule] = self.exported.get(rule, 0) + spans
        self.bytes += size

    def _dropped(self) -> dict[str, int]:
        dropped = dict(self.dropped)
        dropped[sc.DROP_SAMPLED_OUT] += self._head_drops
        return dropped

    def register(self, policy: Policy, threshold: Callable[[], float | None],
                 meter_provider: object = None) -> None:
        """Create the self-metric instruments on ``meter_provider`` (default: global)."""
        meter = metrics.get_meter(sc.INSTRUMENTATION_SCOPE, __version__, meter_provider)

        def counter(name: str, unit: str, description: str,
                    read: Callable[[], Iterable[Observation]]) -> None:
            meter.create_observable_counter(
                name, callbacks=[lambda options: read()], unit=unit, description=description)

        counter(sc.METRIC_TELEMETRY_SPANS_SEEN, sc.UNIT_SPAN,
                "Spans ended or dropped at start (exported + dropped + waiting to be decided).",
                lambda: [Observation(self.seen + self._head_drops)])
        counter(sc.METRIC_TELEMETRY_SPANS_EXPORTED, sc.UNIT_SPAN,
                "Spans handed to the exporters, by the sampling rule that kept them.",
                lambda: [Observation(n, {sc.LLMCOST_SAMPLING_RULE: rule} if rule else None)
                         for rule, n in list(self.exported.items())])
        counter(sc.METRIC_TELEMETRY_SPANS_DROPPED, sc.UNIT_SPAN,
                "Spans not exported, by reason.",
                lambda: [Observation(n, {sc.LLMCOST_SAMPLING_DROP_REASON: reason})
                         for reason, n in self._dropped().items()])
        counter(sc.METRIC_TELEMETRY_BYTES, sc.UNIT_BYTES,
                "Estimated OTLP/protobuf bytes of the exported spans.",
                lambda: [Observation(self.bytes)])
        counter(sc.METRIC_SAMPLING_OVERFLOWS, sc.UNIT_TRACE,
                "Traces decided before they ended because the tail buffer was full.",
                lambda: [Observation(self.overflows)])
        counter(sc.METRIC_SAMPLING_TIMEOUTS, sc.UNIT_TRACE,
                "Traces decided by timeout because their spans never all ended.",
                lambda: [Observation(self.timeouts)])
        if policy.usd_per_gb is not None or policy.usd_per_million_spans is not None:
            per_byte = (policy.usd_per_gb or 0.0) / 1e9
            per_span = (policy.usd_per_million_spans or 0.0) / 1e6
            counter(sc.METRIC_TELEMETRY_COST, sc.UNIT_USD,
                    "What the exported telemetry costs at the configured backend prices.",
                    lambda: [Observation(self.bytes * per_byte
                                         + sum(self.exported.values()) * per_span)])
        meter.create_observable_gauge(
            sc.METRIC_SAMPLING_BUFFERED_SPANS, unit=sc.UNIT_SPAN,
            description="Ended spans waiting for their trace's tail decision.",
            callbacks=[lambda options: [Observation(self.buffered)]])

        def top(options: CallbackOptions) -> list[Observation]:
            value = threshold()
            return [] if value is None else [Observation(value)]

        meter.create_observable_gauge(
            sc.METRIC_SAMPLING_TOP_THRESHOLD, unit=sc.UNIT_USD,
            description="The learned cost threshold of LLMCOST_KEEP_TOP_PERCENT.",
            callbacks=[top])
