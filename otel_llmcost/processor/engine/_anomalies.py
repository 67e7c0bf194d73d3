"""Anomalies: spend rising faster than its own baseline, and agent traces that never stop.

Spend is cut into buckets of ``step`` by event time (the span's end) for the global total
and for each customer (the ``max_customers`` most recently active). A bucket is judged once
it can no longer change (``grace`` after its end). At each judged bucket:

- the recent rate R is the spend of the last ``window`` divided by its length;
- the baseline B is the mean rate of the ``baseline`` before that window, counting a hot
  bucket at the baseline of its time (an anomaly must not become its own baseline);
- the subject is hot when R > T = max(``factor`` × B, ``floor``) and at least half of the
  window's buckets spent at a rate above T / 2: one expensive call is a spike, not a slope.

An anomaly starts after ``sustain`` of consecutive hot buckets and clears after as long
without one. Nothing is judged before ``warmup`` of buckets were seen, since the spend
before the processor started is unknown. Separately, an open agent trace whose LLM calls
or cost pass the runaway limits is an anomaly at once; it clears when the trace closes.
Started and cleared anomalies are queued as `AnomalyEvent`s for the service to report.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, NamedTuple

from otel_llmcost import semconv as sc
from otel_llmcost.processor.engine._metrics import Metrics
from otel_llmcost.processor.records import Spend

_NS = 1_000_000_000
GLOBAL = "*"  # the subject of the global total
_EXAMPLES = 3  # example trace ids per anomaly: the costliest spans of its buckets, one each
_EVENTS_MAX = 1000  # events waiting to be reported; older ones are dropped first


@dataclass(frozen=True, slots=True)
class AnomalyLimits:
    step_ns: int
    window: int  # buckets
    baseline: int  # buckets
    sustain: int  # buckets
    warmup: int  # buckets
    factor: float
    floor_usd_per_hour: float
    grace_ns: int
    max_customers: int


class AnomalyEvent(NamedTuple):
    """An anomaly that started or cleared."""

    kind: str  # sc.ANOMALY_KINDS
    state: str  # sc.ANOMALY_STARTED or sc.ANOMALY_CLEARED
    severity: str  # sc.ANOMALY_SEVERITIES
    customer_id: str | None  # None: the global total (or a trace without a customer)
    time_ns: int  # event time: the end of the bucket (traces: of the span) that decided it
    trace_ids: tuple[str, ...]  # hex: examples to drill into (the costliest spans')
    rate: float | None = None  # spend kinds: USD per hour over the recent window…
    baseline: float | None = None  # …and before it
    cost: float | None = None  # runaway traces: USD so far…
    llm_calls: int | None = None  # …and LLM calls so far


class Active(NamedTuple):
    kind: str
    severity: str
    customer_id: str | None


class _Subject:
    """One spend series: buckets not judged yet, and the judged ones' history."""

    __slots__ = ("pending", "recent", "before", "judged_through", "hot", "cold", "active",
                 "examples")

    def __init__(self, judged_through: int, known: int, window: int) -> None:
        # Buckets not judged yet: index → [spend, its costliest span's cost, its trace id].
        self.pending: dict[int, list[Any]] = {}
        # Judged buckets: the window's spend, and the baseline's contributions before it.
        self.recent: deque[float] = deque([0.0] * min(known, window))
        self.before: deque[float] = deque([0.0] * max(0, known - window))
        self.judged_through = judged_through
        self.hot = 0  # consecutive hot buckets
        self.cold = 0  # consecutive buckets not hot, while active
        self.active: Active | None = None
        self.examples: dict[int, tuple[float, bytes]] = {}  # judged bucket → costliest span


def _spend(pending: dict[int, list[Any]], index: int, amount: float, trace_id: bytes
           ) -> None:
    slot = pending.get(index)
    if slot is None:
        pending[index] = [amount, amount, trace_id]
    else:
        slot[0] += amount
        if amount > slot[1]:
            slot[1], slot[2] = amount, trace_id


class Anomalies:
    """The detector; the engine feeds it LLM spans and time."""

    def __init__(self, limits: AnomalyLimits, metrics: Metrics) -> None:
        self._limits = limits
        self._metrics = metrics
        self._first = -1  # the first bucket any span fell in
        self._judged_through = -1
        self._global = _Subject(-1, 0, limits.window)
        self._customers: OrderedDict[str, _Subject] = OrderedDict()  # by last activity
        self.runaway: dict[bytes, Active] = {}  # open runaway traces
        self.events: deque[AnomalyEvent] = deque(maxlen=_EVENTS_MAX)

    # --- spend ----------------------------------------------------------------------
    def add(self, spends: list[Spend]) -> None:
        """LLM spans' (weighted) costs at their end times; a batch per call, since this runs
        for every LLM span and Python calls cost more than the work."""
        step, customers = self._limits.step_ns, self._customers
        find, refresh = customers.get, customers.move_to_end
        global_, overall = self._global, self._global.pending
        for customer_id, amount, end_ns, trace_id in spends:
            if amount <= 0.0:
                continue
            index = end_ns // step
            if index <= self._judged_through or self._first < 0:
                if self._first >= 0:
                    continue  # too late to count: its bucket was judged
                self._first = self._judged_through = global_.judged_through = index - 1
            _spend(overall, index, amount, trace_id)
            if customer_id:
                subject = find(customer_id)
                if subject is None:
                    subject = self._customer(customer_id)
                else:
                    refresh(customer_id)
                _spend(subject.pending, index, amount, trace_id)

    def _customer(self, customer_id: str) -> _Subject:
        """A new subject; at the cap, the least recently active one not in an anomaly goes."""
        known = min(self._judged_through - self._first, self._limits.baseline
                    + self._limits.window)
        subject = self._customers[customer_id] = _Subject(self._judged_through, known,
                                                          self._limits.window)
        if len(self._customers) > self._limits.max_customers:
            for name, oldest in self._customers.items():
                if oldest.active is None:
                    del self._customers[name]
                    break
        return subject

    # --- time -----------------------------------------------------------------------
    def advance(self, now_ns: int) -> None:
        """Judge every bucket that can no longer change at ``now_ns``."""
        if self._first < 0:
            return
        through = (now_ns - self._limits.grace_ns) // self._limits.step_ns - 1
        if through <= self._judged_through:
            return
        self._judged_through = through
        self._judge(self._global, None, through)
        span = self._limits.baseline + self._limits.window
        customers = self._customers
        # Least recently active first: those idle for a whole history are forgotten (all
        # their buckets would be zeros); the others catch up when they spend again.
        while customers:
            customer_id, subject = next(iter(customers.items()))
            if subject.active or subject.pending or subject.judged_through >= through - span:
                break
            del customers[customer_id]
        for customer_id, subject in customers.items():
            if subject.pending or subject.active:
                self._judge(subject, customer_id, through)

    def _judge(self, subject: _Subject, customer_id: str | None, through: int) -> None:
        limits = self._limits
        start = subject.judged_through + 1
        if (through - start >= limits.baseline + limits.window and subject.active is None
                and not subject.pending):
            subject.recent = deque([0.0] * limits.window)  # a long idle gap: all zeros
            subject.before = deque([0.0] * limits.baseline)
            subject.examples.clear()
            subject.hot = subject.cold = 0
        else:
            for index in range(start, through + 1):
                self._judge_bucket(subject, customer_id, index)
        subject.judged_through = through

    def _judge_bucket(self, subject: _Subject, customer_id: str | None, index: int) -> None:
        limits = self._limits
        recent, before = subject.recent, subject.before
        per_hour = 3600 * _NS / limits.step_ns
        baseline = sum(before) / len(before) * per_hour if before else 0.0
        slot = subject.pending.pop(index, None)
        if slot is None:
            recent.append(0.0)
        else:
            recent.append(slot[0])
            if slot[2]:  # (not a bucket restored without its example)
                subject.examples[index] = (slot[1], slot[2])
        if len(recent) > limits.window:
            leaving = recent.popleft()
            # Spend of an anomaly (or of its first hot buckets) must not become its own
            # baseline: it stands there at the baseline's rate.
            hot = subject.active is not None or subject.hot
            before.append(baseline / per_hour if hot else leaving)
            if len(before) > limits.baseline:
                before.popleft()
        for old in [i for i in subject.examples if i <= index - limits.window]:
            del subject.examples[old]
        if index - self._first < limits.warmup or not before:
            return
        rate = sum(recent) / len(recent) * per_hour
        threshold = max(limits.factor * baseline, limits.floor_usd_per_hour)
        # Spread: at least half the window's buckets above half the threshold each.
        each = threshold / 2 / per_hour
        spread = sum(1 for spend in recent if spend > each) * 2 >= len(recent)
        if rate > threshold and spread:
            subject.hot += 1
            subject.cold = 0
        else:
            subject.hot = 0
            subject.cold += 1
        time_ns = (index + 1) * limits.step_ns
        kind = sc.ANOMALY_GLOBAL if customer_id is None else sc.ANOMALY_CUSTOMER
        if subject.active is None and subject.hot >= limits.sustain:
            severity = (sc.SEVERITY_CRITICAL if rate >= 3 * threshold
                        else sc.SEVERITY_WARNING)
            subject.active = Active(kind, severity, customer_id)
            self._event(subject.active, sc.ANOMALY_STARTED, time_ns, _examples(subject),
                        rate=rate, baseline=baseline)
        elif subject.active is not None and subject.cold >= limits.sustain:
            self._event(subject.active, sc.ANOMALY_CLEARED, time_ns, (), rate=rate,
                        baseline=baseline)
            subject.active = None

    # --- runaway traces -------------------------------------------------------------
    def trace_runaway(self, trace_id: bytes, customer_id: str | None, cost: float,
                      llm_calls: int, end_ns: int) -> None:
        """An open trace passed a runaway limit with the span that ended at ``end_ns``: an
        anomaly until it closes."""
        if trace_id in self.runaway:
            return
        active = self.runaway[trace_id] = Active(sc.ANOMALY_RUNAWAY_TRACE,
                                                 sc.SEVERITY_CRITICAL, customer_id)
        self._event(active, sc.ANOMALY_STARTED, end_ns, (trace_id.hex(),), cost=cost,
                    llm_calls=llm_calls)

    def trace_closed(self, trace_id: bytes, cost: float, llm_calls: int,
                     end_ns: int) -> None:
        """The trace closed; ``end_ns``: when its last span ended."""
        active = self.runaway.pop(trace_id, None)
        if active is not None:
            self._event(active, sc.ANOMALY_CLEARED, end_ns, (trace_id.hex(),), cost=cost,
                        llm_calls=llm_calls)

    # --- output ---------------------------------------------------------------------
    def _event(self, active: Active, state: str, time_ns: int, trace_ids: tuple[str, ...],
               **figures: float) -> None:
        if state == sc.ANOMALY_STARTED:
            self._metrics.add(sc.M_ANOMALY_DETECTED, 1, (active.kind, active.severity))
        self.events.append(AnomalyEvent(active.kind, state, active.severity,
                                        active.customer_id, time_ns, trace_ids,
                                        **figures))  # type: ignore[arg-type]

    # --- checkpoints ------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Plain data to continue from (a checkpoint's): each subject's unjudged and recent
        buckets, its baseline's non-zero buckets (most are zero), its run of hot or cold
        buckets, its anomaly; example trace ids only where an anomaly may start."""
        return {"first": self._first, "judged_through": self._judged_through,
                "subjects": [_subject_state(customer_id, subject) for customer_id, subject
                             in ((None, self._global), *self._customers.items())],
                "runaway": [[t.hex(), a.customer_id] for t, a in self.runaway.items()]}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from `state` (into a fresh detector)."""
        self._first, self._judged_through = state["first"], state["judged_through"]
        for saved in state["subjects"]:
            customer_id, subject = _subject_from(saved)
            if customer_id is None:
                self._global = subject
            else:
                self._customers[customer_id] = subject
        for trace_hex, customer_id in state["runaway"]:
            self.runaway[bytes.fromhex(trace_hex)] = Active(
                sc.ANOMALY_RUNAWAY_TRACE, sc.SEVERITY_CRITICAL, customer_id)

    def active(self) -> list[Active]:
        """Anomalies in progress (for the ``llmcost.anomaly`` gauge)."""
        found = [s.active for s in (self._global, *self._customers.values()) if s.active]
        return found + list(self.runaway.values())


def _subject_state(customer_id: str | None, s: _Subject) -> list[Any]:
    keep_examples = s.active is not None or s.hot > 0
    return [customer_id, s.judged_through, s.hot, s.cold,
            list(s.active) if s.active else None,
            [[i, spend, *((cost, t.hex()) if keep_examples else (0.0, ""))]
             for i, (spend, cost, t) in s.pending.items()],
            list(s.recent),
            len(s.before), [[i, v] for i, v in enumerate(s.before) if v],
            [[index, cost, t.hex()] for index, (cost, t) in s.examples.items()]
            if keep_examples else []]


def _subject_from(saved: list[Any]) -> tuple[str | None, _Subject]:
    (customer_id, judged_through, hot, cold, active, pending, recent, before_len, before,
     examples) = saved
    subject = _Subject(judged_through, 0, 0)
    subject.hot, subject.cold = hot, cold
    subject.active = Active(*active) if active else None
    subject.pending = {int(index): [spend, cost, bytes.fromhex(t)]
                       for index, spend, cost, t in pending}
    subject.recent = deque(recent)
    subject.before = deque([0.0] * before_len)
    for offset, spend in before:
        subject.before[offset] = spend
    subject.examples = {int(index): (cost, bytes.fromhex(t)) for index, cost, t in examples}
    return customer_id, subject


def _examples(subject: _Subject) -> tuple[str, ...]:
    """The trace ids of the costliest spans of the buckets kept (one a bucket), up to 3."""
    found = [*subject.examples.values(), *((cost, t) for _, cost, t in subject.pending.values()
                                           if t)]
    unique: dict[bytes, None] = {}
    for _, trace_id in sorted(found, reverse=True):
        unique.setdefault(trace_id, None)
    return tuple(t.hex() for t in list(unique)[:_EXAMPLES])
