"""Scale-out: N processor replicas, each fed one hash partition, add up to one fed everything.

`collector/gateway.yaml` shards spans across processor replicas with the collector's
``load_balancing`` exporter. This file mimics that gateway (its ``transform/routing_key``
step, then a consistent-hash ring over the routing key) and runs the pure `Engine` — what
each ``otel-llmcost-processor`` replica runs — once fed everything and three times fed
one partition each, on the same clock. Merging the replicas the way Prometheus would
(``sum`` of histogram buckets and counters, ``sum by customer`` of ``top_cost``) must
give exactly the single engine's figures for every metric the routing makes mergeable;
the tests also assert which figures do *not* merge, so that `collector/README.md` can
say so with evidence:

* routing on ``llmcost.customer.id`` (the gateway's choice): everything merges except the
  ``spend_share`` and ``cost_per_active`` gauges (ratios, per replica);
* routing on ``gen_ai.conversation.id`` (the issue's first idea): traces, turns and
  conversations merge, customer metrics do not (a customer's spend is spread over
  replicas: more ``window_cost`` observations, ``active`` over-counted, ``top_cost`` cut
  by each replica's top K).

Further tests show the load_balancing exporter's first-span rule over real OTLP requests
(ids on every span, or only on LLM spans), resharding, and replica loss with a
checkpoint; the last one checks the collector configs themselves.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    InstrumentationScope,
    KeyValue,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import (
    ResourceSpans,
    ScopeSpans,
    Span,
    Status,
)

from otel_llmcost import semconv as sc
from otel_llmcost.processor.engine import Config, Engine
from otel_llmcost.processor.otlp import decode
from otel_llmcost.processor.records import TOOL_OPERATION, SpanRecord
from otel_llmcost.processor.settings import Settings, endpoint
from otel_llmcost.processor.store import Store

S = 1_000_000_000
MINUTE = 60 * S
T0 = 20_000 * 86_400 * S - 90 * MINUTE  # 22:30 UTC: hours and a day close during the run
END = T0 + 3 * 86_400 * S  # far enough for every trace, conversation and window to close…
FINAL = END + 86_400 * S  # …and for the conversations of the traces that closed at END
CONFIG = Config(trace_wait_s=5, trace_idle_s=120, conversation_idle_s=600, top_k=8,
                window_grace_s=60)
ROUTE = sc.LLMCOST_ROUTE  # the attribute the gateway's transform sets and routes on
REPLICAS = ("llmcost-0", "llmcost-1", "llmcost-2")
# Gauge snapshots: never within a minute after an hour starts (see merge_top_cost).
CHECKPOINTS = tuple(T0 + m * MINUTE for m in (10, 35, 55, 100, 130, 160))
COLLECTOR = Path(__file__).resolve().parent.parent / "collector"

Labels = tuple[str, ...]
Gauges = dict[tuple[str, Labels], float]


# --- the workload -------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Arrival:
    """A span and when the gateway receives it (it ended, then the app exported it)."""

    tick: int  # ns, a whole second: spans of one tick arrive (and are ingested) together
    record: SpanRecord


def _ms(rng: random.Random, low: int, high: int) -> int:
    return rng.randrange(low, high) * 1_000_000


def _trace(rng: random.Random, start: int, customer: str | None, conversation: str | None,
           turn: int, scale: float) -> tuple[list[Arrival], int]:
    """One agent trace: root → plan → LLM and tool calls (some LLM calls inside tools).

    Every span carries the trace's ids, as the baggage span processor puts them; the
    engine reads them on LLM spans only, the gateway routes every span by them.
    """
    trace_id = _random_id(rng, 16)

    def span_id() -> bytes:
        return _random_id(rng, 8)

    root, plan = span_id(), span_id()
    weight = rng.choices((1.0, 4.0, 20.0), (0.85, 0.12, 0.03))[0]  # adjusted count
    ids: dict[str, Any] = {"conversation_id": conversation, "customer_id": customer,
                           "weight": weight}

    def llm(parent: bytes, at: int, cost_factor: float = 1.0) -> SpanRecord:
        cost = scale * rng.lognormvariate(-4.5, 1.3) * (1 + 0.4 * turn) * cost_factor
        return SpanRecord(trace_id, span_id(), parent, at, at + _ms(rng, 300, 6000),
                          error=rng.random() < 0.02, llm=True, cost=cost,
                          input_tokens=1000 * (turn + 1) + rng.randrange(4000),
                          output_tokens=rng.randrange(50, 2000),
                          retries=int(rng.random() < 0.1), **ids)

    spans: list[SpanRecord] = []
    t = start + _ms(rng, 5, 50)
    runaway = rng.random() < 0.01  # an agent loop past runaway_llm_calls
    for _ in range(55 if runaway else rng.randint(1, 5)):
        if rng.random() < 0.3:  # a tool call, sometimes with an LLM call inside it
            tool, tool_start = span_id(), t
            t += _ms(rng, 50, 2000)
            if rng.random() < 0.3:
                inner = llm(tool, t)
                spans.append(inner)
                t = inner.end_ns
            spans.append(SpanRecord(trace_id, tool, plan, tool_start, t, tool=True, **ids))
        call = llm(plan, t, 200.0 if rng.random() < 0.01 else 1.0)  # rarely: runaway cost
        spans.append(call)
        t = call.end_ns
    end = t + _ms(rng, 5, 50)
    spans.append(SpanRecord(trace_id, plan, root, start, end - 10_000_000, **ids))
    spans.append(SpanRecord(trace_id, root, b"", start, end, **ids))
    # Exported 0.05-3 s after it ended: children always arrive before the trace closes.
    arrivals = [Arrival(_tick(s.end_ns + _ms(rng, 50, 3000)), s) for s in spans]
    if rng.random() < 0.02:  # a straggler: exported 30 s late, after its trace closed
        late = llm(plan, end - S)
        arrivals.append(Arrival(_tick(end + 30 * S), late))
    return arrivals, end


def _random_id(rng: random.Random, size: int) -> bytes:
    """A random, never all-zero id (OTLP treats zero as invalid)."""
    return (rng.getrandbits(8 * size) | 1).to_bytes(size, "big")


def _tick(ns: int) -> int:
    return -(-ns // S) * S


def make_workload(seed: int = 1115) -> list[Arrival]:
    """Heavy-tailed customers, multi-turn conversations, weights, runaways, stragglers.

    Kinds of traffic: conversations of a customer (most), one-off calls of a customer (no
    conversation id), conversations with no customer id, and background jobs with no id.
    """
    rng = random.Random(seed)
    customers = [f"cust-{i:02d}" for i in range(60)]
    activity = [rng.lognormvariate(0.0, 1.2) for _ in customers]  # heavy-tailed
    spend_scale = {c: rng.lognormvariate(0.0, 1.0) for c in customers}
    arrivals: list[Arrival] = []
    for n in range(280):
        kind = rng.random()
        customer = rng.choices(customers, activity)[0] if kind >= 0.12 else None
        conversation = f"conv-{n:03d}" if kind < 0.06 or kind >= 0.2 else None
        turns = 1 if conversation is None else min(24, 1 + int(rng.expovariate(1 / 3.5)))
        t = T0 + rng.randrange(150 * 60) * S
        for turn in range(turns):
            spans, end = _trace(rng, t, customer, conversation, turn,
                                spend_scale.get(customer or "", 0.5))
            arrivals += spans
            t = end + rng.randrange(15, 420) * S  # the user's think time
    arrivals.sort(key=lambda a: a.tick)
    return arrivals


# --- the gateway --------------------------------------------------------------------

def customer_key(record: SpanRecord) -> str:
    """collector/gateway.yaml: ``transform/routing_key`` then ``routing_attributes: [llmcost.route]``.

    Customer id, else conversation id, else trace id: a customer's (and so each of its
    conversations' and traces') spans share one key; unattributed traffic still spreads.
    """
    return f"{ROUTE}={record.customer_id or record.conversation_id or record.trace_id.hex()}|"


def conversation_key(record: SpanRecord) -> str:
    """The issue's routing: ``routing_attributes: [gen_ai.conversation.id]``, no fallback."""
    return f"{sc.GEN_AI_CONVERSATION_ID}={record.conversation_id or ''}|"


class Ring:
    """Consistent hashing like the load_balancing exporter's: each backend owns many
    points of a ring; a key goes to the first point at or after its hash. Adding a
    backend moves only the keys it takes over (about 1/N of them), nothing else."""

    def __init__(self, backends: Sequence[str], points: int = 256) -> None:
        ring = sorted((_hash(f"{b}#{i}"), b) for b in backends for i in range(points))
        self.backends = tuple(backends)
        self._hashes = [h for h, _ in ring]
        self._owners = [b for _, b in ring]

    def __call__(self, key: str) -> str:
        return self._owners[bisect.bisect_left(self._hashes, _hash(key)) % len(self._owners)]


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


# --- running replicas on one clock ----------------------------------------------------

@dataclass
class Cluster:
    """Engines by backend name, what each received, and their gauges at checkpoints."""

    engines: dict[str, Engine]
    spans: Counter[str] = field(default_factory=Counter)
    gauges: dict[int, dict[str, Gauges]] = field(default_factory=dict)


def gauges_of(engine: Engine) -> Gauges:
    return {(m.name, labels): value for m, labels, value in engine.gauges()}


def simulate(arrivals: Iterable[Arrival], route: Callable[[int, SpanRecord], str],
             backends: Sequence[str], *, checkpoints: Sequence[int] = CHECKPOINTS,
             hooks: Mapping[int, Callable[[Cluster, int], None]] | None = None) -> Cluster:
    """Feed each backend its spans tick by tick; every engine advances at every tick.

    That is what the service does (its engine thread advances at least every 0.5 s,
    traffic or not), and it keeps the replicas' clocks the single engine's clock.
    """
    cluster = Cluster({b: Engine(CONFIG) for b in backends})
    by_tick: dict[int, dict[str, list[SpanRecord]]] = defaultdict(lambda: defaultdict(list))
    for arrival in arrivals:
        backend = route(arrival.tick, arrival.record)
        by_tick[arrival.tick][backend].append(arrival.record)
        cluster.spans[backend] += 1
    hooks = hooks or {}
    for now in sorted({*by_tick, *checkpoints, *hooks, END, FINAL}):
        if now in hooks:
            hooks[now](cluster, now)
        batches = by_tick.get(now, {})
        for name, engine in cluster.engines.items():
            engine.ingest(batches.get(name, ()), now)
            engine.advance(now)
        if now in checkpoints:
            cluster.gauges[now] = {n: gauges_of(e) for n, e in cluster.engines.items()}
    return cluster


def single(arrivals: Iterable[Arrival]) -> Cluster:
    return simulate(arrivals, lambda now, r: "single", ("single",))


def sharded(arrivals: Iterable[Arrival], key: Callable[[SpanRecord], str]) -> Cluster:
    ring = Ring(REPLICAS)
    return simulate(arrivals, lambda now, r: ring(key(r)), ring.backends)


# --- merging the way Prometheus does ---------------------------------------------------

@dataclass
class Merged:
    counts: list[float]
    sum: float

    @property
    def count(self) -> float:
        return sum(self.counts)


def histograms(engines: Iterable[Engine]) -> dict[tuple[str, Labels], Merged]:
    """``sum by (le, labels)`` of every histogram over the replicas."""
    merged: dict[tuple[str, Labels], Merged] = {}
    for engine in engines:
        for (metric, labels), h in engine.metrics.histograms.items():
            into = merged.setdefault((metric.name, labels), Merged([0.0] * len(h.counts), 0.0))
            into.counts = [a + b for a, b in zip(into.counts, h.counts)]
            into.sum += h.sum
    return merged


def counters(engines: Iterable[Engine]) -> dict[tuple[str, Labels], float]:
    """Counters summed over replicas. Anomalies are left out: each replica judges the slope
    of its own shard's total (and a restored replica learns its baselines again)."""
    merged: dict[tuple[str, Labels], float] = defaultdict(float)
    for engine in engines:
        for (metric, labels), value in engine.metrics.counters.items():
            if metric is not sc.M_ANOMALY_DETECTED:
                merged[(metric.name, labels)] += value
    return dict(merged)


def merge_top_cost(per_replica: Iterable[Gauges], window: str, top_k: int) -> dict[str, float]:
    """``topk(K, sum by (customer) (top_cost))``, the rest folded back into ``__other__``.

    Exact when each customer lives on one replica: a global top-K customer is then in
    its replica's top K. (For the first ``window_grace_s`` of a window a replica with no
    spend in it yet still shows the previous one; the checkpoints avoid that minute.)
    """
    named: dict[str, float] = defaultdict(float)
    other = unattributed = 0.0
    for gauges in per_replica:
        for (name, (label, customer)), value in _series(gauges, sc.M_CUSTOMER_TOP_COST, window):
            if customer == sc.CUSTOMER_OTHER:
                other += value
            elif customer == sc.CUSTOMER_UNATTRIBUTED:
                unattributed += value
            else:
                named[customer] += value
    top = sorted(named.items(), key=lambda kv: kv[1], reverse=True)[:top_k]
    rest = sum(named.values()) - sum(v for _, v in top) + other
    return {**dict(top), sc.CUSTOMER_OTHER: rest, sc.CUSTOMER_UNATTRIBUTED: unattributed}


def _series(gauges: Gauges, metric: sc.MetricDef, window: str
            ) -> Iterable[tuple[tuple[str, Labels], float]]:
    return ((key, v) for key, v in gauges.items()
            if key[0] == metric.name and key[1][0] == window)


def gauge_sum(per_replica: Iterable[Gauges], metric: sc.MetricDef, labels: Labels) -> float:
    return sum(g.get((metric.name, labels), 0.0) for g in per_replica)


def top_cost(gauges: Gauges, window: str) -> dict[str, float]:
    return {labels[1]: v for (_, labels), v in _series(gauges, sc.M_CUSTOMER_TOP_COST, window)}


def assert_same(expected: Mapping[tuple[str, Labels], Merged],
                actual: Mapping[tuple[str, Labels], Merged], names: Iterable[str]) -> None:
    """Bucket counts exactly (weights are whole numbers); sums up to float reordering."""
    names = set(names)
    keys = {k for k in expected if k[0] in names}
    assert keys == {k for k in actual if k[0] in names}
    assert keys, "nothing compared"
    for key in sorted(keys):
        assert actual[key].counts == expected[key].counts, key
        assert actual[key].sum == pytest.approx(expected[key].sum, rel=1e-9, abs=1e-12), key


TRACE_METRICS = (sc.M_TRACE_COST, sc.M_TRACE_LLM_CALLS, sc.M_TRACE_TOOL_CALLS,
                 sc.M_TRACE_DURATION, sc.M_TRACE_DEPTH)
CONVERSATION_METRICS = (sc.M_TURN_COST, sc.M_TURN_INPUT_TOKENS, sc.M_CONVERSATION_COST,
                        sc.M_CONVERSATION_TURNS)
WHOLE_TRACE_NAMES = tuple(m.name for m in (*TRACE_METRICS, *CONVERSATION_METRICS))
ALL_HISTOGRAM_NAMES = (*WHOLE_TRACE_NAMES, sc.M_CUSTOMER_WINDOW_COST.name)


# --- fixtures -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def workload() -> list[Arrival]:
    return make_workload()


@pytest.fixture(scope="module")
def one(workload: list[Arrival]) -> Cluster:
    return single(workload)


@pytest.fixture(scope="module")
def by_customer(workload: list[Arrival]) -> Cluster:
    return sharded(workload, customer_key)


@pytest.fixture(scope="module")
def by_conversation(workload: list[Arrival]) -> Cluster:
    return sharded(workload, conversation_key)


# --- tests --------------------------------------------------------------------------------

def test_the_workload_exercises_every_rollup(workload, one):
    """Guards the comparisons below from being vacuous."""
    engine = one.engines["single"]
    h, c = histograms([engine]), counters([engine])
    records = [a.record for a in workload]
    assert len(records) > 5000
    assert len({r.customer_id for r in records if r.customer_id}) >= 30
    assert len({r.conversation_id for r in records if r.conversation_id}) >= 200
    assert {r.weight for r in records} == {1.0, 4.0, 20.0}
    assert h[(sc.M_TRACE_COST.name, ())].count > 1000
    assert h[(sc.M_TURN_COST.name, ("9-16",))].count > 0  # long conversations
    assert h[(sc.M_CUSTOMER_WINDOW_COST.name, ("1h",))].count > 50  # hours closed…
    assert h[(sc.M_CUSTOMER_WINDOW_COST.name, ("1d",))].count > 20  # …and a day
    assert c[(sc.M_TRACE_RUNAWAY.name, (sc.RUNAWAY_LLM_CALLS,))] > 0
    assert c[(sc.M_TRACE_RUNAWAY.name, (sc.RUNAWAY_COST,))] > 0
    assert c[(sc.M_PROCESSOR_LATE_SPANS.name, ("trace",))] > 0  # stragglers
    assert c[(sc.M_TRACE_RETRIES.name, ())] > 0
    assert (sc.M_PROCESSOR_EVICTIONS.name, ("trace",)) not in c  # caps would differ per replica
    assert not engine.traces.open and not engine.conversations.open  # all closed by END


def test_routing_by_customer_every_histogram_and_counter_adds_up(one, by_customer):
    replicas = by_customer.engines.values()
    assert all(by_customer.spans[b] > 500 for b in REPLICAS)  # every replica has work
    assert_same(histograms(one.engines.values()), histograms(replicas), ALL_HISTOGRAM_NAMES)
    assert counters(replicas) == counters(one.engines.values())


def test_routing_by_customer_gauges_merge_except_ratios(one, by_customer):
    """top_cost, active and open merge by sum; spend_share and cost_per_active do not."""
    k = CONFIG.top_k
    naive_share_differs = False
    for at in CHECKPOINTS:
        expected, replicas = one.gauges[at]["single"], list(by_customer.gauges[at].values())
        for window, _ in sc.WINDOWS:
            merged = merge_top_cost(replicas, window, k)
            assert merged.keys() == top_cost(expected, window).keys()
            assert merged == pytest.approx(top_cost(expected, window), rel=1e-9)
            active = gauge_sum(replicas, sc.M_CUSTOMER_ACTIVE, (window,))
            assert active == expected[(sc.M_CUSTOMER_ACTIVE.name, (window,))]
            # The Lorenz points whose top N % is at most K customers can be rebuilt from
            # the merged top_cost; the per-replica spend_share gauges cannot be merged.
            ranked = sorted((v for c, v in merged.items() if not c.startswith("__")),
                            reverse=True)
            attributed = sum(ranked) + merged[sc.CUSTOMER_OTHER]
            for percent in sc.SPEND_SHARE_PERCENTS:
                labels = (window, f"{percent:g}")
                share = expected[(sc.M_CUSTOMER_SPEND_SHARE.name, labels)]
                top_n = max(1, math.ceil(active * percent / 100))
                if top_n <= k:
                    assert sum(ranked[:top_n]) / attributed == pytest.approx(share, rel=1e-9)
                shares = [g[(sc.M_CUSTOMER_SPEND_SHARE.name, labels)] for g in replicas
                          if (sc.M_CUSTOMER_SPEND_SHARE.name, labels) in g]
                naive_share_differs |= abs(sum(shares) / len(shares) - share) > 1e-6
        for entity in sc.ENTITIES:
            assert gauge_sum(replicas, sc.M_PROCESSOR_OPEN, (entity,)) == \
                expected[(sc.M_PROCESSOR_OPEN.name, (entity,))]
    assert naive_share_differs
    # cost_per_active (spend / active customers of an hour): neither sum nor mean of the
    # replicas' ratios is the cluster's ratio.
    final = gauges_of(one.engines["single"])
    replicas = [gauges_of(e) for e in by_customer.engines.values()]
    hours = [labels for name, labels in final if name == sc.M_CUSTOMER_COST_PER_ACTIVE.name]
    assert len(hours) >= 3
    mean_differs = False
    for labels in hours:
        values = [g[(sc.M_CUSTOMER_COST_PER_ACTIVE.name, labels)] for g in replicas
                  if (sc.M_CUSTOMER_COST_PER_ACTIVE.name, labels) in g]
        mean_differs |= abs(sum(values) / len(values)
                            - final[(sc.M_CUSTOMER_COST_PER_ACTIVE.name, labels)]) > 1e-9
    assert mean_differs


def test_routing_by_conversation_keeps_traces_and_conversations_but_splits_customers(
        one, by_conversation):
    replicas = list(by_conversation.engines.values())
    expected, merged = histograms(one.engines.values()), histograms(replicas)
    assert_same(expected, merged, WHOLE_TRACE_NAMES)
    assert counters(replicas) == counters(one.engines.values())
    closed = [window for window, _ in sc.WINDOWS
              if (sc.M_CUSTOMER_WINDOW_COST.name, (window,)) in expected]
    assert closed == ["1h", "1d"]  # the workload's month does not end
    for window in closed:
        key = (sc.M_CUSTOMER_WINDOW_COST.name, (window,))
        # The spend is all there, but one customer-window is observed once per replica.
        assert merged[key].sum == pytest.approx(expected[key].sum, rel=1e-9)
        assert merged[key].count > expected[key].count
    over_counted = top_differs = False
    for at in CHECKPOINTS:
        single_gauges, per_replica = one.gauges[at]["single"], list(
            by_conversation.gauges[at].values())
        for window, _ in sc.WINDOWS:
            truth = top_cost(single_gauges, window)
            top = merge_top_cost(per_replica, window, CONFIG.top_k)
            assert sum(top.values()) == pytest.approx(sum(truth.values()), rel=1e-9)
            top_differs |= top != pytest.approx(truth, rel=1e-9)
            active = single_gauges[(sc.M_CUSTOMER_ACTIVE.name, (window,))]
            over_counted |= gauge_sum(per_replica, sc.M_CUSTOMER_ACTIVE, (window,)) > active
    assert over_counted and top_differs


def test_a_hot_customer_pins_its_share_of_the_load_on_one_replica(workload, by_customer,
                                                                   by_conversation):
    """The ring hashes keys, not load: one big customer cannot be spread."""
    per_customer = Counter(a.record.customer_id for a in workload if a.record.customer_id)
    total = len(workload)
    hottest_share = per_customer.most_common(1)[0][1] / total
    customer_max = max(by_customer.spans.values()) / total
    print(f"\nspans per replica: by customer {dict(by_customer.spans)}, by conversation "
          f"{dict(by_conversation.spans)}; hottest customer {hottest_share:.1%} of spans")
    assert customer_max >= hottest_share
    assert sum(by_customer.spans.values()) == sum(by_conversation.spans.values()) == total


# --- over OTLP: the load_balancing exporter keys each per-trace batch on its first span ----

SERVICE = Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value="agent"))])


def _attribute(key: str, value: str | float) -> KeyValue:
    """An attribute of the type OTLP senders use: string, double, or int for an int."""
    if isinstance(value, str):
        return KeyValue(key=key, value=AnyValue(string_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(int_value=value))


def to_span(r: SpanRecord, ids_on_every_span: bool) -> Span:
    """The span as the app exports it; without the baggage processor only the LLM spans
    (where otel_llmcost puts them) carry the customer and conversation ids."""
    attributes: dict[str, str | float] = {sc.LLMCOST_SAMPLING_ADJUSTED_COUNT: r.weight}
    if r.llm:
        attributes |= {sc.GEN_AI_OPERATION_NAME: sc.OP_CHAT,
                       sc.LLMCOST_PRICING_STATUS: sc.STATUS_EXACT,
                       sc.GEN_AI_USAGE_COST_AMOUNT: r.cost,
                       sc.GEN_AI_USAGE_INPUT_TOKENS: r.input_tokens,
                       sc.GEN_AI_USAGE_OUTPUT_TOKENS: r.output_tokens,
                       sc.LLMCOST_RETRIES: r.retries}
    elif r.tool:
        attributes[sc.GEN_AI_OPERATION_NAME] = TOOL_OPERATION
    if r.llm or ids_on_every_span:
        if r.customer_id:
            attributes[sc.LLMCOST_CUSTOMER_ID] = r.customer_id
        if r.conversation_id:
            attributes[sc.GEN_AI_CONVERSATION_ID] = r.conversation_id
    span = Span(trace_id=r.trace_id, span_id=r.span_id, parent_span_id=r.parent_span_id,
                name="chat" if r.llm else "step", start_time_unix_nano=r.start_ns,
                end_time_unix_nano=r.end_ns,
                attributes=[_attribute(k, v) for k, v in attributes.items()])
    if r.error:
        span.status.code = Status.STATUS_CODE_ERROR
    return span


def export_requests(workload: Sequence[Arrival], ids_on_every_span: bool
                    ) -> dict[int, ExportTraceServiceRequest]:
    """One request per tick, as an SDK exports: one resource, spans grouped by scope."""
    requests: dict[int, ExportTraceServiceRequest] = {}
    scopes: dict[tuple[int, str], ScopeSpans] = {}
    for arrival in workload:
        request = requests.get(arrival.tick)
        if request is None:
            request = requests[arrival.tick] = ExportTraceServiceRequest()
            request.resource_spans.add().resource.CopyFrom(SERVICE)
        scope = "otel_llmcost" if arrival.record.llm else "agent-app"
        spans = scopes.get((arrival.tick, scope))
        if spans is None:
            spans = scopes[(arrival.tick, scope)] = request.resource_spans[0].scope_spans.add()
            spans.scope.CopyFrom(InstrumentationScope(name=scope))
        spans.spans.append(to_span(arrival.record, ids_on_every_span))
    return requests


def _string(span: Span, key: str) -> str:
    return next((kv.value.string_value for kv in span.attributes if kv.key == key), "")


def gateway(request: ExportTraceServiceRequest, ring: Ring) -> dict[str, ExportTraceServiceRequest]:
    """What collector/gateway.yaml does to one request.

    ``transform/routing_key`` sets ``llmcost.route`` on each span (customer id, else
    conversation id, else trace id); ``load_balancing`` then splits the request into one
    batch per trace (``batchpersignal.SplitTraces``: resources and scopes kept, in order),
    takes the routing key from the FIRST span of the first scope of each batch, and sends
    the batch whole to that key's backend.
    """
    out: dict[str, ExportTraceServiceRequest] = {}
    for resource_spans in request.resource_spans:
        batches: dict[bytes, ResourceSpans] = {}
        for scope_spans in resource_spans.scope_spans:
            for original in scope_spans.spans:
                span = Span()
                span.CopyFrom(original)
                route = (_string(span, sc.LLMCOST_CUSTOMER_ID)
                         or _string(span, sc.GEN_AI_CONVERSATION_ID) or span.trace_id.hex())
                span.attributes.append(_attribute(ROUTE, route))
                batch = batches.get(span.trace_id)
                if batch is None:
                    batch = batches[span.trace_id] = ResourceSpans(
                        resource=resource_spans.resource)
                if not batch.scope_spans or batch.scope_spans[-1].scope != scope_spans.scope:
                    batch.scope_spans.add().scope.CopyFrom(scope_spans.scope)
                batch.scope_spans[-1].spans.append(span)
        for batch in batches.values():
            key = f"{ROUTE}={_string(batch.scope_spans[0].spans[0], ROUTE)}|"
            out.setdefault(ring(key), ExportTraceServiceRequest()).resource_spans.append(batch)
    return out


def run_over_otlp(workload: Sequence[Arrival], ids_on_every_span: bool) -> Cluster:
    """Each replica decodes (otel_llmcost.processor.otlp) what the gateway sent it."""
    ring = Ring(REPLICAS)
    arrivals: list[Arrival] = []
    routed: dict[bytes, str] = {}  # span id → backend
    for tick, request in sorted(export_requests(workload, ids_on_every_span).items()):
        for backend, part in gateway(request, ring).items():
            decoded = decode(part)
            assert not decoded.rejected
            for record in decoded.records:
                arrivals.append(Arrival(tick, record))
                routed[record.span_id + record.trace_id] = backend
    return simulate(arrivals, lambda now, r: routed[r.span_id + r.trace_id], REPLICAS)


def test_over_otlp_ids_on_every_span_keep_the_merge_exact(workload, one):
    """With the baggage span processor every span carries the ids: whatever span comes
    first in a per-trace batch, the key is the same, so the OTLP path merges exactly."""
    cluster = run_over_otlp(workload, ids_on_every_span=True)
    replicas = cluster.engines.values()
    assert_same(histograms(one.engines.values()), histograms(replicas), ALL_HISTOGRAM_NAMES)
    assert counters(replicas) == counters(one.engines.values())


def test_over_otlp_ids_only_on_llm_spans_fragment_traces(workload, one):
    """Without it, a batch whose first span is a root or tool span is keyed by trace id
    (the gateway's last fallback; with no fallback, by the shared empty key): traces are
    cut into fragments on different replicas. The spend survives, the distributions do not."""
    cluster = run_over_otlp(workload, ids_on_every_span=False)
    expected, merged = histograms(one.engines.values()), histograms(cluster.engines.values())
    daily = (sc.M_CUSTOMER_WINDOW_COST.name, ("1d",))
    assert merged[daily].sum == pytest.approx(expected[daily].sum, rel=1e-9)
    for metric in (sc.M_TRACE_COST, sc.M_TRACE_DEPTH, sc.M_CONVERSATION_TURNS):
        key = (metric.name, ())
        assert merged[key].count > expected[key].count, key  # fragments counted as wholes


# --- failure modes ---------------------------------------------------------------------------

def test_resharding_moves_about_one_key_in_n_and_splits_what_was_open(workload, one):
    """Adding a 4th replica mid-run: only the keys it takes over move; their open
    conversations (and in-flight traces) are cut in two, totals stay whole."""
    three, four = Ring(REPLICAS), Ring((*REPLICAS, "llmcost-3"))
    keys = [f"{ROUTE}=cust-{i}|" for i in range(20_000)]
    moved = [k for k in keys if three(k) != four(k)]
    assert all(four(k) == "llmcost-3" for k in moved)  # nothing moves between old replicas
    assert abs(len(moved) / len(keys) - 1 / 4) < 0.05  # ~R/N routes move
    switch = T0 + 60 * MINUTE
    cluster = simulate(workload, lambda now, r: (three if now < switch else four)(
        customer_key(r)), four.backends)
    expected, merged = histograms(one.engines.values()), histograms(cluster.engines.values())
    print(f"\nresharding 3 → 4 at 23:30: spans {dict(cluster.spans)}; conversations "
          f"{expected[(sc.M_CONVERSATION_TURNS.name, ())].count:g} → "
          f"{merged[(sc.M_CONVERSATION_TURNS.name, ())].count:g}, traces "
          f"{expected[(sc.M_TRACE_COST.name, ())].count:g} → "
          f"{merged[(sc.M_TRACE_COST.name, ())].count:g}")
    for name in (sc.M_TRACE_COST.name, sc.M_CONVERSATION_COST.name):
        assert merged[(name, ())].sum == pytest.approx(expected[(name, ())].sum, rel=1e-9)
    conversations = (sc.M_CONVERSATION_TURNS.name, ())
    assert merged[conversations].count > expected[conversations].count  # split in two
    assert merged[conversations].sum >= expected[conversations].sum  # a cut trace: 2 turns
    first_turns = (sc.M_TURN_COST.name, ("1",))
    assert merged[first_turns].count > expected[first_turns].count  # restarted at turn 1
    assert merged[(sc.M_TRACE_COST.name, ())].count >= expected[(sc.M_TRACE_COST.name, ())].count


def test_a_replica_restored_from_its_checkpoint_loses_only_what_came_after_it(workload,
                                                                             tmp_path):
    """kill -9 of one replica: it restarts from its last SQLite checkpoint. Lost are the
    spans it had acknowledged since then, and nothing else: the cluster then equals one
    engine fed the workload without exactly those spans."""
    ring = Ring(REPLICAS)
    victim, saved_at, crash_at = "llmcost-1", T0 + 70 * MINUTE, T0 + 70 * MINUTE + 30 * S
    store = Store(tmp_path / "llmcost-1.db")

    def checkpoint(cluster: Cluster, now: int) -> None:
        # Hooks run before a tick's ingest: this saves the state as of the tick before.
        store.save(cluster.engines[victim].dump(), now)

    def crash_and_restore(cluster: Cluster, now: int) -> None:
        state, _ = Store(tmp_path / "llmcost-1.db").load()  # a new process, same file
        cluster.engines[victim] = Engine.restore(CONFIG, state)
        cluster.engines[victim].advance(now)  # restarted: close what fell due meanwhile

    lost = [a for a in workload if saved_at <= a.tick < crash_at
            and ring(customer_key(a.record)) == victim]
    assert len(lost) > 10
    cluster = simulate(workload, lambda now, r: ring(customer_key(r)), REPLICAS,
                       hooks={saved_at: checkpoint, crash_at: crash_and_restore})
    lost_ids = {id(a) for a in lost}
    expected = single([a for a in workload if id(a) not in lost_ids])
    assert_same(histograms(expected.engines.values()), histograms(cluster.engines.values()),
                ALL_HISTOGRAM_NAMES)
    assert counters(cluster.engines.values()) == counters(expected.engines.values())


# --- the collector configs --------------------------------------------------------------------

def _load(name: str) -> dict[str, Any]:
    with open(COLLECTOR / name, encoding="utf-8") as file:
        return yaml.safe_load(file)


def _check_pipelines(config: dict[str, Any]) -> None:
    """Every component a pipeline names is defined, and every defined one is used."""
    used: dict[str, set[str]] = defaultdict(set)
    for pipeline in config["service"]["pipelines"].values():
        for kind in ("receivers", "processors", "exporters"):
            for name in pipeline.get(kind, []):
                assert name in config[kind], f"{kind}: {name} is not defined"
                used[kind].add(name)
    for kind in ("receivers", "processors", "exporters"):
        assert set(config.get(kind) or {}) == used[kind], f"unused {kind}"
    for name in config["service"].get("extensions", []):
        assert name in config["extensions"]


def _port(address: str) -> int:
    return endpoint(address.split("://")[-1])[1]


def test_the_collector_configs_parse_and_agree_with_each_other_and_the_processor():
    """No otelcol binary here: parse the YAML, check the wiring and the keys the tests
    above rely on (the routing attribute and its fallbacks, the cost policy)."""
    gateway_config, tail_config = _load("gateway.yaml"), _load("tail.yaml")
    settings = Settings.load({sc.ENV_PROCESSOR_CONFIG: str(COLLECTOR / "processor.yaml")})
    for config in (gateway_config, tail_config):
        _check_pipelines(config)

    balancer = gateway_config["exporters"]["loadbalancing"]
    assert balancer["routing_key"] == "attributes" and balancer["routing_attributes"] == [ROUTE]
    assert len(balancer["resolver"]) == 1  # static; dns and k8s are commented variants
    hostnames = balancer["resolver"]["static"]["hostnames"]
    assert len(hostnames) == len(REPLICAS)
    assert {_port(h) for h in hostnames} == {_port(settings.grpc_endpoint or "")}
    statements = "\n".join(gateway_config["processors"]["transform/routing_key"]
                           ["trace_statements"])
    order = [statements.index(s) for s in (sc.LLMCOST_CUSTOMER_ID, sc.GEN_AI_CONVERSATION_ID,
                                           "span.trace_id.string")]
    assert order == sorted(order)  # customer, else conversation, else trace id
    pipeline = gateway_config["service"]["pipelines"]["traces"]
    assert pipeline["processors"][-1] == "transform/routing_key"

    assert settings.forward_endpoint and settings.state_path
    receiver = tail_config["receivers"]["otlp"]["protocols"]
    forward_to = "http" if settings.forward_protocol == "http/protobuf" else "grpc"
    assert _port(receiver[forward_to]["endpoint"]) == _port(settings.forward_endpoint)
    by_trace = tail_config["exporters"]["loadbalancing/traceid"]
    assert by_trace["routing_key"] == "traceID"
    sampling_port = _port(tail_config["receivers"]["otlp/sampling"]["protocols"]["grpc"]
                          ["endpoint"])
    assert {_port(h) for h in by_trace["resolver"]["static"]["hostnames"]} == {sampling_port}
    policies = {p["type"]: p for p in tail_config["processors"]["tail_sampling"]["policies"]}
    assert {"ottl_condition", "status_code", "probabilistic"} <= policies.keys()
    assert sc.GEN_AI_USAGE_COST_AMOUNT in " ".join(policies["ottl_condition"]
                                                   ["ottl_condition"]["span"])
    assert "numeric_attribute" not in policies  # int64 only: never matches a USD double
