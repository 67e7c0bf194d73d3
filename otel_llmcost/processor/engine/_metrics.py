"""The engine's output: explicit-bucket histograms, counters and gauges, keyed by labels.

Histograms take weighted observations (a span kept at 1 % stands for 100), so bucket
counts are floats. Nothing here knows Prometheus; the service renders it.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import NamedTuple

from otel_llmcost.semconv import MetricDef

Labels = tuple[str, ...]  # values, in the order of MetricDef.attributes


class Histogram:
    """Counts per bucket (``le`` semantics: a value equal to a bound falls in its bucket)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0.0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float, weight: float = 1.0) -> None:
        self.counts[bisect_left(self.bounds, value)] += weight
        self.sum += value * weight

    @property
    def count(self) -> float:
        return sum(self.counts)


class Exemplar(NamedTuple):
    trace_id: str  # hex
    value: float
    time_ns: int


class Metrics:
    """Every histogram and counter the engine has moved, by metric and label values."""

    __slots__ = ("histograms", "counters", "exemplars")

    def __init__(self) -> None:
        self.histograms: dict[tuple[MetricDef, Labels], Histogram] = {}
        self.counters: dict[tuple[MetricDef, Labels], float] = {}
        self.exemplars: dict[tuple[MetricDef, Labels], Exemplar] = {}

    def histogram(self, metric: MetricDef, labels: Labels = ()) -> Histogram:
        """The histogram of a series, created empty on first use. It stays the same
        object for the engine's life (a restore fills it in place), so hot paths keep it."""
        key = (metric, labels)
        histogram = self.histograms.get(key)
        if histogram is None:
            histogram = self.histograms[key] = Histogram(metric.buckets)
        return histogram

    def observe(self, metric: MetricDef, value: float, weight: float = 1.0,
                labels: Labels = ()) -> None:
        self.histogram(metric, labels).observe(value, weight)

    def add(self, metric: MetricDef, amount: float, labels: Labels = (),
            exemplar: Exemplar | None = None) -> None:
        key = (metric, labels)
        self.counters[key] = self.counters.get(key, 0.0) + amount
        if exemplar is not None:
            self.exemplars[key] = exemplar
