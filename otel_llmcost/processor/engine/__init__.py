"""The rollup engine: pure. No sockets, no threads, and no clock but the one it is given.

`Engine.ingest` takes `SpanRecord`s with the time they arrived; `Engine.advance` closes
what is due at a given time; `Engine.metrics` and `Engine.gauges` are what it knows.
Every rolled-up figure is weighted by the span's sampling adjusted count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from otel_llmcost import semconv as sc
from otel_llmcost.processor.engine._anomalies import Anomalies, AnomalyEvent, AnomalyLimits
from otel_llmcost.processor.engine._conversations import Conversations, turn_bucket
from otel_llmcost.processor.engine._customers import Customers, Gauge
from otel_llmcost.processor.engine import _state
from otel_llmcost.processor.engine._metrics import Exemplar, Histogram, Metrics
from otel_llmcost.processor.engine._traces import TraceLimits, Traces
from otel_llmcost.processor.records import SpanRecord

__all__ = ["AnomalyEvent", "Config", "Engine", "Exemplar", "Histogram", "Metrics",
           "turn_bucket"]

_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Config:
    """Waits, caps and limits of the rollups (seconds and USD)."""

    trace_wait_s: float = 5.0  # a trace closes this long after its root span arrived
    trace_idle_s: float = 120.0  # …or this long after its last span, if no root comes
    conversation_idle_s: float = 1800.0
    max_traces: int = 100_000
    max_conversations: int = 100_000
    max_customers: int = 100_000  # per window
    max_spans_per_trace: int = 1024  # links kept to measure depth
    runaway_llm_calls: int = 50
    runaway_cost_usd: float = 5.0
    top_k: int = 20
    window_grace_s: float = 60.0  # event-time windows (and anomaly buckets) wait this long
    # Anomalies (see _anomalies): buckets of anomaly_step_s; the recent rate over
    # anomaly_window_s against the baseline of the anomaly_baseline_s before it.
    anomaly_step_s: float = 60.0
    anomaly_window_s: float = 600.0
    anomaly_baseline_s: float = 3 * 3600.0
    anomaly_sustain_s: float = 300.0
    anomaly_warmup_s: float = 3600.0
    anomaly_factor: float = 5.0
    anomaly_min_usd_per_hour: float = 10.0
    anomaly_max_customers: int = 1000


class Engine:
    """Agent traces, conversations and customers, rolled up from spans."""

    def __init__(self, config: Config = Config()) -> None:
        self.config = config
        self.metrics = Metrics()
        step_ns = int(config.anomaly_step_s * _NS)

        def buckets(seconds: float) -> int:
            return max(1, round(seconds * _NS / step_ns))
        self.anomalies = Anomalies(AnomalyLimits(
            step_ns=step_ns, window=buckets(config.anomaly_window_s),
            baseline=buckets(config.anomaly_baseline_s),
            sustain=buckets(config.anomaly_sustain_s), warmup=buckets(config.anomaly_warmup_s),
            factor=config.anomaly_factor, floor_usd_per_hour=config.anomaly_min_usd_per_hour,
            grace_ns=int(config.window_grace_s * _NS),
            max_customers=config.anomaly_max_customers), self.metrics)
        self.conversations = Conversations(int(config.conversation_idle_s * _NS),
                                           config.max_conversations, self.metrics)
        self.traces = Traces(
            TraceLimits(wait_ns=int(config.trace_wait_s * _NS),
                        idle_ns=int(config.trace_idle_s * _NS), max_open=config.max_traces,
                        max_spans=config.max_spans_per_trace,
                        runaway_llm_calls=config.runaway_llm_calls,
                        runaway_cost_usd=config.runaway_cost_usd),
            self.metrics, self.conversations.add_turn, self.anomalies)
        self.customers = Customers(int(config.window_grace_s * _NS), config.max_customers,
                                   config.top_k, self.metrics)
        self._headroom = self.metrics.histogram(sc.M_OUTPUT_MAX_TOKENS_RATIO)

    def ingest(self, records: Iterable[SpanRecord], now_ns: int) -> None:
        """Roll up spans that arrived at ``now_ns``. Each part takes the whole batch: per
        span, Python calls cost more than the work they call."""
        records = records if isinstance(records, list) else list(records)
        self.traces.add(records, now_ns)
        priced = [r for r in records if r.llm]
        if not priced:
            return
        observe = self._headroom.observe
        for r in priced:
            if r.max_tokens and not r.error:
                observe(r.output_tokens / r.max_tokens, r.weight)
        self.conversations.touch([r.conversation_id for r in priced if r.conversation_id],
                                 now_ns)
        spends = [(r.customer_id, r.cost * r.weight, r.end_ns, r.trace_id) for r in priced]
        self.customers.add(spends, now_ns)
        self.anomalies.add(spends)

    def advance(self, now_ns: int) -> bool:
        """Close the traces, conversations and windows that are due at ``now_ns``; True if
        anything closed (advancing only closes, so the open counts tell)."""
        before = self._open_sizes()
        self.traces.advance(now_ns)
        self.conversations.advance(now_ns)
        self.customers.advance(now_ns)
        self.anomalies.advance(now_ns)
        return self._open_sizes() != before

    def _open_sizes(self) -> tuple[int, int, int]:
        return (len(self.traces.open), len(self.conversations.open),
                sum(len(windows.open) for windows in self.customers.windows))

    def dump(self) -> dict[str, Any]:
        """The whole state (a full checkpoint); `changes` continue from it."""
        return _state.dump(self, full=True)

    def changes(self) -> dict[str, Any]:
        """What changed since the last `dump` or `changes` (or the restore): an incremental
        checkpoint, to apply on top of the previous ones (`store.Store.save`)."""
        return _state.dump(self, full=False)

    @classmethod
    def restore(cls, config: Config, state: dict[str, Any]) -> Engine:
        """An engine that continues exactly where the one that made ``state`` was."""
        engine = cls(config)
        _state.load(engine, state)
        return engine

    def gauges(self) -> Iterator[Gauge]:
        """Current values: customer windows and the size of the state."""
        yield from self.customers.gauges()
        for active in self.anomalies.active():
            yield sc.M_ANOMALY, (active.kind, active.severity, active.customer_id or ""), 1.0
        for entity, count in (("trace", len(self.traces.open)),
                              ("conversation", len(self.conversations.open)),
                              ("customer", self.customers.open_count())):
            yield sc.M_PROCESSOR_OPEN, (entity,), float(count)
