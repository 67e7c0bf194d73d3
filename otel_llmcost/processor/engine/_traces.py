"""Agent traces: one open entry per trace id, closed a wait after its root ends (or idle).

A closed trace is observed into the trace distributions (cost, LLM calls, tool calls,
duration, depth), checked against the runaway limits, and handed on as turns of the
conversations its LLM calls named.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Callable, Iterable

from otel_llmcost import semconv as sc
from otel_llmcost.processor.engine._anomalies import Anomalies
from otel_llmcost.processor.engine._metrics import Exemplar, Histogram, Metrics
from otel_llmcost.processor.records import SpanRecord


# What every closed trace is observed into, in the order `Traces.close` unpacks them.
_OBSERVED = (sc.M_TRACE_COST, sc.M_TRACE_LLM_CALLS, sc.M_TRACE_TOOL_CALLS,
             sc.M_TRACE_DURATION, sc.M_TRACE_DEPTH)


@dataclass(frozen=True, slots=True)
class TraceLimits:
    wait_ns: int  # after the root span ended
    idle_ns: int  # since the last span, for traces whose root never arrives
    max_open: int
    max_spans: int  # span links kept per trace for its depth
    runaway_llm_calls: int
    runaway_cost_usd: float


NO_PARENT = bytes(8)  # all zeros: an invalid span id in OTLP, so it never names a span


class Turn:
    """What one trace contributed to one conversation."""

    __slots__ = ("cost", "input_tokens", "first_start_ns")

    def __init__(self) -> None:
        self.cost = 0.0
        self.input_tokens = 0
        self.first_start_ns = 0


class OpenTrace:
    __slots__ = ("start_ns", "end_ns", "llm_calls", "tool_calls", "retries", "cost", "weight",
                 "parents", "turns", "due_ns", "last_ns", "runaway")

    def __init__(self) -> None:
        self.last_ns = 0  # when its last span arrived (engine time)
        self.start_ns = 0
        self.end_ns = 0
        self.llm_calls = 0
        self.tool_calls = 0
        self.retries = 0
        self.cost = 0.0
        self.weight = 1.0
        self.parents: dict[bytes, bytes] = {}  # span id → parent's (NO_PARENT for a root)
        self.turns: dict[str, Turn] | None = None
        self.due_ns: int | None = None  # when it closes, set when its root arrives
        self.runaway = False  # past a runaway limit while open (reported as an anomaly)

    def depth(self) -> int:
        """Spans on the longest root-to-leaf path (of the spans whose links were kept): one
        more than the deepest parent. Parents are few (an agent's calls share one), so
        they are walked, not the spans; each walk stops at a depth already known."""
        parents = self.parents
        if not parents:
            return 0
        depths, deepest = {NO_PARENT: 0}, 0
        known = depths.get
        for parent in set(parents.values()):
            depth = known(parent)
            if depth is None:
                if parent not in parents:
                    depth = 0  # not kept, or in another service: its children count as roots
                else:  # most often a root: its own parent is known, so no walk
                    above = known(parents[parent])
                    depth = _walk(parents, depths, parent) if above is None else above + 1
                    depths[parent] = depth
            if depth > deepest:
                deepest = depth
        return deepest + 1


def _walk(parents: dict[bytes, bytes], depths: dict[bytes, int], span_id: bytes) -> int:
    """The depth of ``span_id``, recording it and its unknown ancestors' in ``depths``."""
    path, node = [], span_id
    while node in parents and node not in depths and len(path) <= len(parents):
        path.append(node)  # the length bound stops a hostile cycle
        node = parents[node]
    base = depths.get(node, 0)
    for step in reversed(path):
        base += 1
        depths[step] = base
    return depths[span_id]


class Traces:
    """Open agent traces, in order of last activity."""

    def __init__(self, limits: TraceLimits, metrics: Metrics,
                 on_turn: Callable[[str, Turn, float, int], None],
                 anomalies: Anomalies) -> None:
        self._limits = limits
        self._metrics = metrics
        self._on_turn = on_turn  # (conversation id, turn, weight, now_ns)
        self._anomalies = anomalies
        self.open: OrderedDict[bytes, OpenTrace] = OrderedDict()
        self.due: deque[tuple[int, bytes]] = deque()  # (close at, trace id), by time
        # Recently closed traces: a late span of one is counted, not made a new trace.
        self.closed: OrderedDict[bytes, None] = OrderedDict()
        self.newly_closed = 0  # since the last checkpoint: the newest entries of ``closed``
        self.runaways: deque[Exemplar] = deque(maxlen=100)  # recent, for drill-down
        self._histograms: tuple[Histogram, ...] = ()  # _OBSERVED's, bound at the first close

    def add(self, records: Iterable[SpanRecord], now_ns: int) -> None:
        """Spans that arrived at ``now_ns``: a batch per call (this runs for every span)."""
        open_, closed, limits = self.open, self.closed, self._limits
        find, refresh = open_.get, open_.move_to_end
        max_spans, max_open = limits.max_spans, limits.max_open
        late = 0
        # Unpacked: a record's fields read as locals, not as (slower) attribute lookups.
        for (trace_id, span_id, parent_id, start_ns, end_ns, _, llm, tool, cost, input_tokens,
             _, retries, conversation_id, customer_id, weight, _) in records:
            trace = find(trace_id)
            if trace is None:
                if trace_id in closed:
                    late += 1
                    continue
                trace = open_[trace_id] = OpenTrace()
                if len(open_) > max_open:
                    self._metrics.add(sc.M_PROCESSOR_EVICTIONS, 1, ("trace",))
                    self.close(next(iter(open_)), now_ns)
            else:
                refresh(trace_id)
            trace.last_ns = now_ns
            if trace.start_ns == 0 or start_ns < trace.start_ns:
                trace.start_ns = start_ns
            if end_ns > trace.end_ns:
                trace.end_ns = end_ns
            if weight > trace.weight:
                trace.weight = weight
            parents = trace.parents
            if len(parents) < max_spans:
                parents[span_id] = parent_id or NO_PARENT
            if not parent_id and trace.due_ns is None:
                trace.due_ns = now_ns + limits.wait_ns
                self.due.append((trace.due_ns, trace_id))
            if tool:
                trace.tool_calls += 1
            if not llm:
                continue
            trace.llm_calls += 1
            trace.retries += retries
            trace.cost += cost
            if conversation_id:
                turns = trace.turns
                if turns is None:
                    turns = trace.turns = {}
                turn = turns.get(conversation_id)
                if turn is None:
                    turn = turns[conversation_id] = Turn()
                turn.cost += cost
                if turn.first_start_ns == 0 or start_ns < turn.first_start_ns:
                    turn.first_start_ns = start_ns
                    turn.input_tokens = input_tokens
            if not trace.runaway and (trace.llm_calls > limits.runaway_llm_calls
                                      or trace.cost > limits.runaway_cost_usd):
                trace.runaway = True  # still growing: an anomaly now, not when it closes
                self._anomalies.trace_runaway(trace_id, customer_id, trace.cost,
                                              trace.llm_calls, end_ns)
        if late:
            self._metrics.add(sc.M_PROCESSOR_LATE_SPANS, late, ("trace",))

    def advance(self, now_ns: int) -> None:
        """Close the traces whose wait after the root, or whose idle time, has passed."""
        due = self.due
        while due and due[0][0] <= now_ns:
            self.close(due.popleft()[1], now_ns)
        idle_before, open_ = now_ns - self._limits.idle_ns, self.open
        while open_:  # in last-activity order: the first entry is the idlest
            trace_id, trace = next(iter(open_.items()))
            if trace.last_ns > idle_before:
                break
            self.close(trace_id, now_ns)

    def close(self, trace_id: bytes, now_ns: int) -> None:
        trace = self.open.pop(trace_id, None)
        if trace is None:
            return  # already closed (evicted, or idle before its wait ended)
        closed = self.closed
        closed[trace_id] = None
        self.newly_closed += 1
        if len(closed) > self._limits.max_open:
            closed.popitem(last=False)
        m, weight, limits = self._metrics, trace.weight, self._limits
        if not self._histograms:
            self._histograms = tuple(m.histogram(metric) for metric in _OBSERVED)
        cost, llm_calls, tool_calls, duration, depth = self._histograms
        cost.observe(trace.cost, weight)
        llm_calls.observe(trace.llm_calls, weight)
        tool_calls.observe(trace.tool_calls, weight)
        duration.observe(max(0, trace.end_ns - trace.start_ns) / 1e9, weight)
        depth.observe(trace.depth(), weight)
        if trace.retries:
            m.add(sc.M_TRACE_RETRIES, trace.retries * weight)
        reason = (sc.RUNAWAY_LLM_CALLS if trace.llm_calls > limits.runaway_llm_calls else
                  sc.RUNAWAY_COST if trace.cost > limits.runaway_cost_usd else None)
        if reason is not None:
            exemplar = Exemplar(trace_id.hex(), trace.cost, now_ns)
            m.add(sc.M_TRACE_RUNAWAY, weight, (reason,), exemplar)
            self.runaways.append(exemplar)
        if trace.runaway:
            self._anomalies.trace_closed(trace_id, trace.cost, trace.llm_calls, trace.end_ns)
        for conversation_id, turn in (trace.turns or {}).items():
            self._on_turn(conversation_id, turn, weight, now_ns)
