"""The observability tax: span counts, bytes and their price, as self-metrics.

Counts are plain integers updated under the tail stage's lock (the sampler's head drops
under their own) and read by ObservableCounters at collection, so counting costs a few
additions per span rather than a synchronous SDK ``add`` each.
"""

from __future__ import annotations

import threading
from typing import Callable, Iterable

from opentelemetry import metrics
from opentelemetry.metrics import Observation

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

        def counter(metric: sc.MetricDef, read: Callable[[], Iterable[Observation]]) -> None:
            meter.create_observable_counter(metric.name, callbacks=[lambda options: read()],
                                            unit=metric.unit, description=metric.description)

        counter(sc.M_TELEMETRY_SPANS_SEEN, lambda: [Observation(self.seen + self._head_drops)])
        counter(sc.M_TELEMETRY_SPANS_EXPORTED,
                lambda: [Observation(n, {sc.LLMCOST_SAMPLING_RULE: rule} if rule else None)
                         for rule, n in list(self.exported.items())])
        counter(sc.M_TELEMETRY_SPANS_DROPPED,
                lambda: [Observation(n, {sc.LLMCOST_SAMPLING_DROP_REASON: reason})
                         for reason, n in self._dropped().items()])
        counter(sc.M_TELEMETRY_BYTES, lambda: [Observation(self.bytes)])
        counter(sc.M_SAMPLING_OVERFLOWS, lambda: [Observation(self.overflows)])
        counter(sc.M_SAMPLING_TIMEOUTS, lambda: [Observation(self.timeouts)])
        if policy.usd_per_gb is not None or policy.usd_per_million_spans is not None:
            per_byte = (policy.usd_per_gb or 0.0) / 1e9
            per_span = (policy.usd_per_million_spans or 0.0) / 1e6
            counter(sc.M_TELEMETRY_COST,
                    lambda: [Observation(self.bytes * per_byte
                                         + sum(self.exported.values()) * per_span)])

        def gauge(metric: sc.MetricDef, read: Callable[[], Iterable[Observation]]) -> None:
            meter.create_observable_gauge(metric.name, callbacks=[lambda options: read()],
                                          unit=metric.unit, description=metric.description)

        gauge(sc.M_SAMPLING_BUFFERED_SPANS, lambda: [Observation(self.buffered)])

        def top() -> list[Observation]:
            value = threshold()
            return [] if value is None else [Observation(value)]

        gauge(sc.M_SAMPLING_TOP_THRESHOLD, top)
