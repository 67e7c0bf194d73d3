"""The rollup engine against exact expected rollups, from hand-built span sequences."""

from __future__ import annotations

import itertools
import random
from datetime import datetime, timezone

import pytest

from otel_llmcost import semconv as sc
from otel_llmcost.processor.engine import Config, Engine, turn_bucket
from otel_llmcost.processor.records import SpanRecord
from otel_llmcost.processor.store import Store

S = 1_000_000_000
HOUR = 3600 * S
_ids = itertools.count(1)


def tid(n: int) -> bytes:
    return n.to_bytes(16, "big")


def span(trace: int, parent: bytes = b"", *, at: int = 0, llm: bool = False, **fields
         ) -> SpanRecord:
    """A span of trace ``trace`` ending at ``at`` (ns); a root unless ``parent`` is given."""
    span_id = next(_ids).to_bytes(8, "big")
    return SpanRecord(tid(trace), span_id, parent, at, at + S // 10, llm=llm, **fields)


def call(trace: int, parent: bytes, cost: float, at: int = 0, **fields) -> SpanRecord:
    return span(trace, parent, at=at, llm=True, cost=cost, **fields)


def histogram(engine: Engine, metric: sc.MetricDef, *labels: str):
    return engine.metrics.histograms[(metric, labels)]


def gauges(engine: Engine) -> dict[tuple[str, tuple[str, ...]], float]:
    return {(m.name, labels): value for m, labels, value in engine.gauges()}


def test_an_agent_trace_closes_a_wait_after_its_root_and_is_observed_once():
    engine = Engine(Config(trace_wait_s=5))
    root = span(1)
    plan = span(1, root.span_id)
    calls = [call(1, plan.span_id, 0.25, retries=1), call(1, plan.span_id, 0.5)]
    tool = span(1, plan.span_id, tool=True)
    engine.ingest([*calls, tool, plan], now_ns=0)  # children first, as spans end
    engine.ingest([root], now_ns=1 * S)
    engine.advance(5 * S)
    assert (sc.M_TRACE_COST, ()) not in engine.metrics.histograms  # still waiting
    engine.advance(6 * S)
    cost = histogram(engine, sc.M_TRACE_COST)
    assert cost.count == 1 and cost.sum == 0.75
    assert histogram(engine, sc.M_TRACE_LLM_CALLS).sum == 2
    assert histogram(engine, sc.M_TRACE_TOOL_CALLS).sum == 1
    assert histogram(engine, sc.M_TRACE_DEPTH).sum == 3  # root → plan → call
    assert engine.metrics.counters[(sc.M_TRACE_RETRIES, ())] == 1
    assert not engine.traces.open
    late = call(1, plan.span_id, 1.0, customer_id="acme")
    engine.ingest([late], now_ns=7 * S)  # after the close: counted, not a new trace
    assert engine.metrics.counters[(sc.M_PROCESSOR_LATE_SPANS, ("trace",))] == 1
    assert not engine.traces.open
    # …but its spend still counts for its customer.
    assert gauges(engine)[(sc.M_CUSTOMER_TOP_COST.name, ("1h", "acme"))] == 1.0


def test_a_trace_without_a_root_closes_when_idle():
    engine = Engine(Config(trace_idle_s=60))
    engine.ingest([call(2, b"\x01" * 8, 0.1)], now_ns=0)  # the root is in another service
    engine.advance(59 * S)
    assert engine.traces.open
    engine.advance(61 * S)
    assert histogram(engine, sc.M_TRACE_COST).sum == 0.1


def test_interleaved_conversations_give_cost_by_turn_index_and_close_when_idle():
    engine = Engine(Config(trace_wait_s=1, conversation_idle_s=600))
    now = 0
    costs = {"c1": [0.1, 0.2, 0.4], "c2": [1.0, 3.0]}
    trace_ids = itertools.count(100)
    for turn in range(3):
        for conversation in ("c1", "c2"):
            if turn >= len(costs[conversation]):
                continue
            t = next(trace_ids)
            root = span(t, at=now)
            engine.ingest([call(t, root.span_id, costs[conversation][turn], at=now,
                                conversation_id=conversation, input_tokens=1000 * (turn + 1)),
                           root], now)
            now += 2 * S
            engine.advance(now)
    turn_cost = {b: histogram(engine, sc.M_TURN_COST, b) for b in ("1", "2", "3-4")}
    assert (turn_cost["1"].count, turn_cost["1"].sum) == (2, pytest.approx(1.1))
    assert (turn_cost["2"].count, turn_cost["2"].sum) == (2, pytest.approx(3.2))
    assert (turn_cost["3-4"].count, turn_cost["3-4"].sum) == (1, pytest.approx(0.4))
    assert histogram(engine, sc.M_TURN_INPUT_TOKENS, "3-4").sum == 3000
    assert (sc.M_CONVERSATION_COST, ()) not in engine.metrics.histograms
    engine.advance(now + 601 * S)
    conversation_cost = histogram(engine, sc.M_CONVERSATION_COST)
    assert conversation_cost.count == 2 and conversation_cost.sum == pytest.approx(4.7)
    assert histogram(engine, sc.M_CONVERSATION_TURNS).sum == 5
    assert not engine.conversations.open


def test_turn_buckets():
    assert [turn_bucket(i) for i in (1, 2, 3, 4, 5, 8, 9, 16, 17, 400)] == [
        "1", "2", "3-4", "3-4", "5-8", "5-8", "9-16", "9-16", "17+", "17+"]


def test_weighted_spans_count_as_many_as_they_stand_for():
    engine = Engine(Config(trace_wait_s=0))
    root = span(3, weight=4.0)
    engine.ingest([call(3, root.span_id, 0.5, weight=4.0, customer_id="a",
                        conversation_id="c"), root], 0)
    engine.advance(1)
    assert histogram(engine, sc.M_TRACE_COST).count == 4
    assert histogram(engine, sc.M_TURN_COST, "1").count == 4
    assert gauges(engine)[(sc.M_CUSTOMER_TOP_COST.name, ("1h", "a"))] == 2.0


def test_caps_close_the_oldest_early_and_count_it():
    engine = Engine(Config(max_traces=2, max_conversations=1))
    for t in (10, 11, 12):
        engine.ingest([call(t, b"\x01" * 8, 1.0, conversation_id=f"c{t}")], 0)
    assert len(engine.traces.open) == 2 and len(engine.conversations.open) == 1
    counters = engine.metrics.counters
    assert counters[(sc.M_PROCESSOR_EVICTIONS, ("trace",))] == 1
    # c10 and c11 make room for c11 and c12; evicting trace 10 then closes its turn, which
    # reopens c10 and evicts once more.
    assert counters[(sc.M_PROCESSOR_EVICTIONS, ("conversation",))] == 3
    assert histogram(engine, sc.M_TRACE_COST).count == 1  # the evicted trace was emitted


def test_runaway_traces_are_counted_with_their_trace_id_as_exemplar():
    engine = Engine(Config(trace_wait_s=0, runaway_llm_calls=50, runaway_cost_usd=5))
    root = span(20)
    engine.ingest([call(20, root.span_id, 0.01) for _ in range(51)] + [root], 0)
    root = span(21)
    engine.ingest([call(21, root.span_id, 6.0), root], 0)
    engine.advance(1)
    counters, exemplars = engine.metrics.counters, engine.metrics.exemplars
    assert counters[(sc.M_TRACE_RUNAWAY, ("llm_calls",))] == 1
    assert counters[(sc.M_TRACE_RUNAWAY, ("cost",))] == 1
    assert exemplars[(sc.M_TRACE_RUNAWAY, ("llm_calls",))].trace_id == tid(20).hex()
    assert [e.trace_id for e in engine.traces.runaways] == [tid(20).hex(), tid(21).hex()]


def test_customer_windows_top_k_other_shares_and_off_hours():
    engine = Engine(Config(top_k=2, window_grace_s=60))
    spend = {"a": 50.0, "b": 30.0, "c": 10.0, "d": 6.0, "e": 4.0}
    records = [call(30 + i, b"\x01" * 8, amount, at=10 * S, customer_id=customer)
               for i, (customer, amount) in enumerate(spend.items())]
    records.append(call(40, b"\x01" * 8, 5.0, at=10 * S))  # no customer id
    engine.ingest(records, 20 * S)
    now = gauges(engine)
    top = {labels[1]: v for (name, labels), v in now.items()
           if name == sc.M_CUSTOMER_TOP_COST.name and labels[0] == "1h"}
    assert top == {"a": 50.0, "b": 30.0, sc.CUSTOMER_OTHER: 20.0,
                   sc.CUSTOMER_UNATTRIBUTED: 5.0}
    assert sum(top.values()) == 105.0  # the window's total, exactly
    assert now[(sc.M_CUSTOMER_ACTIVE.name, ("1h",))] == 5
    assert now[(sc.M_CUSTOMER_SPEND_SHARE.name, ("1h", "20"))] == 0.5  # top 1 of 5
    assert now[(sc.M_CUSTOMER_SPEND_SHARE.name, ("1h", "50"))] == 0.9  # top 3 of 5
    assert now[(sc.M_CUSTOMER_SPEND_SHARE.name, ("1h", "0.1"))] == 0.5  # at least one
    engine.advance(HOUR + 59 * S)
    assert (sc.M_CUSTOMER_WINDOW_COST, ("1h",)) not in engine.metrics.histograms  # grace
    engine.advance(HOUR + 61 * S)
    window = histogram(engine, sc.M_CUSTOMER_WINDOW_COST, "1h")
    assert window.count == 5 and window.sum == 100.0
    assert gauges(engine)[(sc.M_CUSTOMER_COST_PER_ACTIVE.name, ("00",))] == 20.0
    # A span for the closed hour is late: counted, and its spend goes to the newest window.
    engine.ingest([call(41, b"\x01" * 8, 1.0, at=10 * S, customer_id="a")], HOUR + 62 * S)
    assert engine.metrics.counters[(sc.M_PROCESSOR_LATE_SPANS, ("customer",))] == 1
    top = gauges(engine)
    assert top[(sc.M_CUSTOMER_TOP_COST.name, ("1h", "a"))] == 1.0
    assert top[(sc.M_CUSTOMER_TOP_COST.name, ("1d", "a"))] == 51.0  # the day is still open
    # Counted span by span, also when a batch brings several.
    engine.ingest([call(42 + i, b"\x01" * 8, 1.0, at=10 * S) for i in range(3)], HOUR + 63 * S)
    assert engine.metrics.counters[(sc.M_PROCESSOR_LATE_SPANS, ("customer",))] == 4


@pytest.mark.parametrize("seed", range(10))
def test_spend_lands_in_the_hour_day_and_month_of_its_end(seed):
    """Spans either side of a month's end (and of days and hours), shuffled within a batch:
    each window holds exactly the spend of the spans that ended in it."""
    rng = random.Random(seed)
    month_end = int(datetime(2026, 2, 1, tzinfo=timezone.utc).timestamp()) * S
    records, expected = [], {}
    for n in range(200):
        end = month_end + rng.randrange(-30 * HOUR, 30 * HOUR)
        customer, amount = rng.choice("abc"), rng.randrange(1, 8) / 4  # exact in binary
        records.append(call(100 + n, b"\x01" * 8, amount, at=end - S // 10,
                            customer_id=customer))
        day = datetime.fromtimestamp(end // S, timezone.utc)
        for label, index in (("1h", end // HOUR), ("1d", end // (24 * HOUR)),
                             ("1mo", (day.year - 1970) * 12 + day.month - 1)):
            key = (label, index, customer)
            expected[key] = expected.get(key, 0.0) + amount
    engine = Engine()
    engine.ingest(records, month_end + 31 * HOUR)  # every span ended: none in the future
    found = {(windows.label, index, customer): amount for windows in engine.customers.windows
             for index, window in windows.open.items()
             for customer, amount in window.spend.items()}
    assert found == expected


def test_a_full_customer_window_folds_the_oldest_into_other():
    engine = Engine(Config(max_customers=2))
    engine.ingest([call(50 + i, b"\x01" * 8, 1.0 + i, customer_id=c)
                   for i, c in enumerate("xyz")], 0)
    top = {labels[1]: v for (name, labels), v in gauges(engine).items()
           if name == sc.M_CUSTOMER_TOP_COST.name and labels[0] == "1h"}
    assert top == {"y": 2.0, "z": 3.0, sc.CUSTOMER_OTHER: 1.0, sc.CUSTOMER_UNATTRIBUTED: 0.0}
    # One customer folded in each window kind (hour, day, month).
    assert engine.metrics.counters[(sc.M_PROCESSOR_EVICTIONS, ("customer",))] == len(sc.WINDOWS)


def _longest_chain(links: list[tuple[bytes, bytes]]) -> int:
    """Reference depth: walk each span up through the kept spans, one by one."""
    parents = dict(links)
    deepest = 0
    for span_id in parents:
        depth, node = 1, span_id
        while parents[node] in parents:
            depth, node = depth + 1, parents[node]
        deepest = max(deepest, depth)
    return deepest


@pytest.mark.parametrize("seed", range(40))
def test_depth_is_the_longest_chain_in_any_arrival_order(seed):
    """Random trees (some spans' parents in another service, never seen), arriving in a
    random order, in batches, with a cap on the links kept: the depth observed is the
    longest chain among the spans kept."""
    rng = random.Random(seed)
    size = rng.randrange(1, 40)
    ids = [bytes([seed + 1]) + n.to_bytes(7, "big") for n in range(1, size + 1)]
    links = [(ids[0], b"")]  # the root
    for n in range(1, size):  # a parent made before it, or one in another service
        links.append((ids[n], b"\xee" * 8 if rng.random() < 0.1 else rng.choice(ids[:n])))
    rng.shuffle(links)
    cap = rng.choice([1024, max(1, size // 2)])
    engine = Engine(Config(trace_wait_s=0, max_spans_per_trace=cap))
    records = [SpanRecord(tid(90), span_id, parent, 0, 1) for span_id, parent in links]
    while records:
        cut = rng.randrange(1, len(records) + 1)
        engine.ingest(records[:cut], 0)
        records = records[cut:]
    engine.advance(1)
    kept = [(span_id, parent or bytes(8)) for span_id, parent in links[:cap]]
    assert histogram(engine, sc.M_TRACE_DEPTH).sum == _longest_chain(kept)


def test_depth_survives_a_hostile_cycle():
    engine = Engine(Config(trace_wait_s=0))
    a, b = b"\x0a" * 8, b"\x0b" * 8
    engine.ingest([SpanRecord(tid(60), a, b, 0, 1), SpanRecord(tid(60), b, a, 0, 1)], 0)
    engine.ingest([span(60)], 0)
    engine.advance(1)
    assert histogram(engine, sc.M_TRACE_DEPTH).count == 1


def test_prometheus_names_follow_the_opentelemetry_translation():
    assert sc.M_TRACE_COST.prometheus == "llmcost_trace_cost_USD"
    assert sc.M_TRACE_RUNAWAY.prometheus == "llmcost_trace_runaway_total"
    assert sc.M_TRACE_DURATION.prometheus == "llmcost_trace_duration_seconds"
    assert sc.M_CUSTOMER_SPEND_SHARE.prometheus == "llmcost_customer_spend_share_ratio"
    assert sc.prometheus_label(sc.LLMCOST_TURN_BUCKET) == "llmcost_turn_bucket"


def workload(seed: int, traces: int) -> list[tuple[int, list[SpanRecord]]]:
    """A seeded stream of (arrival time, spans): agents with retries, conversations,
    customers, weights, spans arriving child-first, over two hours."""
    rng = random.Random(seed)
    out = []
    for t in range(traces):
        now = t * (2 * HOUR // traces)
        root = span(1000 + t, at=now, weight=rng.choice((1.0, 1.0, 4.0)))
        calls = [call(1000 + t, root.span_id, rng.paretovariate(1.2) / 100, at=now,
                      conversation_id=f"c{rng.randrange(40)}", customer_id=f"k{rng.randrange(25)}",
                      input_tokens=rng.randrange(100, 5000), retries=rng.choice((0, 0, 1)),
                      weight=root.weight)
                 for _ in range(rng.randrange(1, 6))]
        tools = [span(1000 + t, calls[0].span_id, at=now, tool=True, weight=root.weight)]
        out.append((now, [*tools, *calls, root]))
    return out


def run(engine: Engine, steps: list[tuple[int, list[SpanRecord]]]) -> Engine:
    for now, records in steps:
        engine.ingest(records, now)
        engine.advance(now)
    return engine


def observable(engine: Engine) -> tuple:
    live = sorted(engine.gauges(), key=lambda g: (g[0].name, g[1]))
    engine.advance(10 * HOUR)  # close everything that is open
    return (sorted((m.name, labels, tuple(h.counts), round(h.sum, 9))
                   for (m, labels), h in engine.metrics.histograms.items()),
            sorted((m.name, labels, round(v, 9)) for (m, labels), v in
                   engine.metrics.counters.items()),
            sorted(engine.gauges(), key=lambda g: (g[0].name, g[1])), live)


def test_a_restored_checkpoint_continues_exactly_like_an_uninterrupted_run(tmp_path):
    steps = workload(seed=5, traces=600)
    config = Config(trace_wait_s=30, conversation_idle_s=900)
    uninterrupted = run(Engine(config), steps)
    first, store = Engine(config), Store(tmp_path / "state.db")
    for start in range(0, 311, 40):  # incremental checkpoints on the way
        run(first, steps[start:min(start + 40, 311)])
        store.save(first.changes(), steps[start][0])
    saved, _ = store.load()  # what the checkpoint file holds
    assert saved["traces"] and saved["conversations"] and saved["spend"]
    assert saved["meta"]["windows"]["1h"]["open"]
    restored = run(Engine.restore(config, saved), steps[311:])
    assert observable(restored) == observable(uninterrupted)


def test_a_checkpoint_of_another_version_is_refused():
    state = Engine().dump()
    state["meta"]["version"] = 999
    with pytest.raises(ValueError, match="version"):
        Engine.restore(Config(), state)


def test_max_tokens_headroom_is_the_output_share_of_max_tokens_weighted():
    engine = Engine()
    engine.ingest([call(1, b"\x01" * 8, 0.1, output_tokens=100, max_tokens=1000),
                   call(1, b"\x01" * 8, 0.1, output_tokens=990, max_tokens=1000, weight=4.0),
                   call(1, b"\x01" * 8, 0.1, output_tokens=50),  # no max_tokens: not observed
                   call(1, b"\x01" * 8, 0.0, max_tokens=1000, error=True),  # failed: neither
                   span(1, b"\x01" * 8, max_tokens=1000)], 0)  # not an LLM call
    ratio = histogram(engine, sc.M_OUTPUT_MAX_TOKENS_RATIO)
    assert ratio.count == 5.0 and ratio.sum == pytest.approx(0.1 + 4 * 0.99)
    buckets = dict(zip(sc.RATIO_BUCKETS, ratio.counts))
    assert buckets[0.1] == 1.0 and buckets[0.99] == 4.0  # ≤ 0.1 and (0.95, 0.99]
