"""The anomaly detector, through the engine, on hand-built span sequences with known rates."""

from __future__ import annotations

import itertools

from otel_llmcost import semconv as sc
from otel_llmcost.processor.engine import Config, Engine
from otel_llmcost.processor.records import SpanRecord

NS = 1_000_000_000
MIN = 60 * NS
T0 = 1_764_000_000 * NS // MIN * MIN  # a minute boundary
CONFIG = Config(window_grace_s=60.0, trace_wait_s=1.0)  # defaults: 10-min window, 5-min sustain
_ids = itertools.count(1)


def call(customer: str | None, cost: float, end_ns: int, trace_id: bytes | None = None,
         parent: bytes = b"") -> SpanRecord:
    number = next(_ids)
    return SpanRecord(trace_id or number.to_bytes(16, "big"), number.to_bytes(8, "big"),
                      parent, end_ns - NS, end_ns, llm=True, cost=cost, customer_id=customer)


def play(engine: Engine, minutes: range, per_minute: dict[str, float],
         calls_per_minute: int = 4) -> list:
    """Each minute: every customer spends its amount in a few calls; the engine advances
    one minute behind (spans arrive as they end)."""
    for minute in minutes:
        start = T0 + minute * MIN
        records = [call(customer, amount / calls_per_minute,
                        start + (n + 1) * MIN // (calls_per_minute + 1))
                   for customer, amount in per_minute.items() for n in range(calls_per_minute)]
        engine.ingest(records, start + MIN)
        engine.advance(start + MIN)
    events = list(engine.anomalies.events)
    engine.anomalies.events.clear()
    return events


STEADY = {f"c{i}": 1.0 / 60 for i in range(5)}  # five customers at $1/h: $5/h in all


def test_a_sustained_surge_is_flagged_then_cleared_and_the_rest_is_quiet() -> None:
    engine = Engine(CONFIG)
    assert play(engine, range(0, 180), STEADY) == []  # 3 h of steady spend: no anomaly
    surge = {**STEADY, "abuser": 60.0 / 60}  # $60/h: 12× the global baseline
    started = play(engine, range(180, 210), surge)
    by_kind = {e.kind: e for e in started}
    assert set(by_kind) == {sc.ANOMALY_CUSTOMER, sc.ANOMALY_GLOBAL}
    customer = by_kind[sc.ANOMALY_CUSTOMER]
    assert (customer.state, customer.customer_id) == (sc.ANOMALY_STARTED, "abuser")
    # Hot once the 10-min rate passes $10/h (2 buckets in), sustained 5 buckets.
    delay_min = (customer.time_ns - (T0 + 180 * MIN)) / MIN
    assert 5 <= delay_min <= 15
    assert customer.baseline == 0.0 and customer.rate > 10.0
    assert len(customer.trace_ids) == 3
    global_ = by_kind[sc.ANOMALY_GLOBAL]
    assert global_.customer_id is None and 4.5 < global_.baseline < 5.5
    gauges = {labels: v for m, labels, v in engine.gauges() if m is sc.M_ANOMALY}
    assert gauges == {(sc.ANOMALY_CUSTOMER, customer.severity, "abuser"): 1.0,
                      (sc.ANOMALY_GLOBAL, global_.severity, ""): 1.0}
    cleared = play(engine, range(210, 270), STEADY)
    assert sorted((e.kind, e.state) for e in cleared) == [
        (sc.ANOMALY_CUSTOMER, sc.ANOMALY_CLEARED), (sc.ANOMALY_GLOBAL, sc.ANOMALY_CLEARED)]
    assert all((e.time_ns - (T0 + 210 * MIN)) / MIN <= 20 for e in cleared)
    assert not [m for m, _, _ in engine.gauges() if m is sc.M_ANOMALY]
    assert engine.metrics.counters[(sc.M_ANOMALY_DETECTED,
                                    (sc.ANOMALY_CUSTOMER, customer.severity))] == 1


def test_an_anomaly_names_the_costliest_spans_one_a_minute() -> None:
    """Its example trace ids are the costliest span of each of its costliest minutes."""
    engine = Engine(CONFIG)
    play(engine, range(0, 180), STEADY)
    big: list[bytes] = []  # each minute's costliest call: costlier every minute
    for minute in range(180, 200):
        start = T0 + minute * MIN
        records = [call(customer, amount / 4, start + (n + 1) * MIN // 5)
                   for customer, amount in STEADY.items() for n in range(4)]
        costs = [0.2, 0.2, 0.2, 0.4 + minute / 1000]  # the abuser: about $1/min
        calls = [call("abuser", cost, start + (n + 1) * MIN // 5)
                 for n, cost in enumerate(costs)]
        big.append(calls[-1].trace_id)
        engine.ingest(records + calls, start + MIN)
        engine.advance(start + MIN)
        started = [e for e in engine.anomalies.events if e.customer_id == "abuser"]
        if started:
            break
    assert [e.state for e in started] == [sc.ANOMALY_STARTED]
    assert list(started[0].trace_ids) == [t.hex() for t in big[:-4:-1]]


def test_one_expensive_call_is_a_spike_not_a_slope() -> None:
    engine = Engine(CONFIG)
    play(engine, range(0, 120), STEADY)
    spike = T0 + 120 * MIN + MIN // 2
    engine.ingest([call("c1", 4.0, spike)], spike)  # $24/h over the 10-min window
    assert play(engine, range(120, 180), STEADY) == []


def test_nothing_is_judged_before_the_warmup() -> None:
    """Spend before the processor started is unknown: the first hour learns only."""
    engine = Engine(CONFIG)
    assert play(engine, range(0, 20), STEADY) == []
    assert play(engine, range(20, 58), {**STEADY, "abuser": 1.0}) == []  # a surge at $60/h


def test_a_runaway_trace_is_flagged_while_it_grows_and_cleared_when_it_closes() -> None:
    engine = Engine(Config(runaway_llm_calls=10, trace_wait_s=1.0, trace_idle_s=600.0))
    trace_id, root = bytes(range(16)), (99).to_bytes(8, "big")
    now = T0
    for number in range(12):
        now += 5 * NS
        engine.ingest([call("acme", 0.01, now, trace_id, parent=root)], now)
        engine.advance(now)
    (started,) = engine.anomalies.events
    assert (started.kind, started.state, started.customer_id, started.trace_ids) == (
        sc.ANOMALY_RUNAWAY_TRACE, sc.ANOMALY_STARTED, "acme", (trace_id.hex(),))
    assert started.llm_calls == 11 and abs(started.cost - 0.11) < 1e-9  # when flagged
    assert (sc.M_ANOMALY, (sc.ANOMALY_RUNAWAY_TRACE, sc.SEVERITY_CRITICAL, "acme"),
            1.0) in list(engine.gauges())
    engine.ingest([SpanRecord(trace_id, root, b"", T0, now)], now)  # the root ends
    engine.advance(now + 2 * NS)
    assert [e.state for e in engine.anomalies.events] == [sc.ANOMALY_STARTED, sc.ANOMALY_CLEARED]
    assert not [m for m, _, _ in engine.gauges() if m is sc.M_ANOMALY]


def test_customers_tracked_are_capped() -> None:
    engine = Engine(Config(anomaly_max_customers=50, window_grace_s=60.0))
    play(engine, range(0, 3), {f"k{i}": 0.01 for i in range(500)}, calls_per_minute=1)
    assert len(engine.anomalies._customers) == 50


def test_a_restored_engine_judges_like_an_uninterrupted_one() -> None:
    """The detector's state is in the checkpoint: a restart mid-surge neither forgets the
    baseline (no second warm-up) nor reports an anomaly twice."""
    surge = {**STEADY, "abuser": 1.0}
    uninterrupted = Engine(CONFIG)
    play(uninterrupted, range(0, 180), STEADY)
    expected = play(uninterrupted, range(180, 240), surge)
    engine = Engine(CONFIG)
    play(engine, range(0, 180), STEADY)
    first = play(engine, range(180, 195), surge)  # restarted while the anomaly is active
    engine = Engine.restore(CONFIG, engine.dump())
    got = first + play(engine, range(195, 240), surge)

    def same(events: list) -> list:  # each run makes its own trace ids
        return [e._replace(trace_ids=len(e.trace_ids)) for e in events]
    assert same(got) == same(expected)
    assert {e.kind for e in expected} == {sc.ANOMALY_CUSTOMER, sc.ANOMALY_GLOBAL}


def test_a_runaway_flagged_before_a_restart_is_not_flagged_again() -> None:
    config = Config(runaway_llm_calls=3, trace_wait_s=1.0, trace_idle_s=600.0)
    engine = Engine(config)
    trace_id, root = bytes(range(16)), (99).to_bytes(8, "big")
    for n in range(5):
        engine.ingest([call("acme", 0.01, T0 + n * NS, trace_id, parent=root)], T0 + n * NS)
    engine = Engine.restore(config, engine.dump())
    for n in range(5, 8):
        engine.ingest([call("acme", 0.01, T0 + n * NS, trace_id, parent=root)], T0 + n * NS)
    engine.ingest([SpanRecord(trace_id, root, b"", T0, T0 + 8 * NS)], T0 + 8 * NS)
    engine.advance(T0 + 10 * NS)
    assert [e.state for e in engine.anomalies.events] == [sc.ANOMALY_CLEARED]
