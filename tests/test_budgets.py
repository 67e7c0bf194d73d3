"""Budgets: reservations before calls, actual cost after, on every store.

Calls go through the real ``openai``/``anthropic`` SDKs to the stand-in provider; stores
are the real thing (an SQLite file, a ``redis-server`` started for the session). The races
run an app under ``opentelemetry-instrument`` with ``LLMCOST_BUDGETS_FILE``, exporting its
spans over OTLP to a sink, and compare the store's totals with the spans' costs.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import otel_llmcost
from otel_llmcost import attribution, budgets, pricing, semconv as sc, tokens
from otel_llmcost.budgets import Budget, BudgetExceeded, BudgetUnavailable, Ledger, Settings
from otel_llmcost.usage import Usage
from tests.conftest import scenario
from tests.otlp_sink import OtlpSink

INSTRUMENT = Path(sys.executable).with_name("opentelemetry-instrument")
RACE_APP = Path(__file__).with_name("apps") / "budget_race.py"
MODEL = "gpt-4o-mini"
TEXT = "Write a haiku about budgets."
NANO = 1_000_000_000


def worst_case(texts: list[str], max_tokens: int, model: str = MODEL,
               provider: str = sc.PROVIDER_OPENAI) -> float:
    """The documented worst case: tiktoken input + max_tokens output, no cache discount."""
    usage = Usage(input_tokens=sum(tokens.count(t) for t in texts), output_tokens=max_tokens)
    amount = pricing.price(provider, model, usage).amount
    assert amount is not None
    return math.ceil(amount * NANO) / NANO


@pytest.fixture
def store_settings(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """Store settings for the parametrized store kind (memory, sqlite or redis)."""
    kind = request.param
    if kind == "sqlite":
        return {"store": "sqlite", "sqlite_path": str(tmp_path / "budgets.db")}
    if kind == "redis":
        url = request.getfixturevalue("redis_url")
        return {"store": "redis", "redis_url": url, "key_prefix": f"t{id(request)}:",
                "timeout_s": 2.0}
    return {"store": "memory"}


STORES = pytest.mark.parametrize("store_settings", ["memory", "sqlite", "redis"],
                                 indirect=True)


@pytest.fixture(autouse=True)
def _no_budgets() -> Iterator[None]:
    yield
    budgets.configure(None)


def ledger_with(store_settings: dict[str, Any], *budget_list: Budget,
                clock: Any = None, **extra: Any) -> tuple[Ledger, InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    settings = Settings(budgets=budget_list, **{**store_settings, **extra})
    ledger = Ledger(settings, meter_provider=MeterProvider(metric_readers=[reader]),
                    **({"clock": clock} if clock else {}))
    budgets.activate(ledger)  # the gauges read the ledger in force
    return ledger, reader


def reserve(ledger: Ledger, customer: str | None = None, max_tokens: int = 1000,
            text: str = TEXT) -> Any:
    scope = {sc.LLMCOST_CUSTOMER_ID: customer} if customer else {}
    return ledger.reserve(sc.PROVIDER_OPENAI, sc.OP_CHAT, MODEL, max_tokens, lambda: [text],
                          scope)


def counter(reader: InMemoryMetricReader, metric: sc.MetricDef) -> dict[tuple, float]:
    found: dict[tuple, float] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name == metric.name:
                    for p in m.data.data_points:
                        found[tuple(sorted(p.attributes.items()))] = p.value
    return found


# --- The ledger on each store ---------------------------------------------------------

@STORES
def test_reservation_is_replaced_by_the_actual_cost_exactly(store_settings: dict) -> None:
    ledger, reader = ledger_with(store_settings, Budget("global", hard_usd=10.0),
                                 Budget("per-customer", hard_usd=1.0, each_customer=True))
    hold = reserve(ledger, "acme")
    worst = worst_case([TEXT], 1000)
    status = {(s.budget, s.customer): s for s in ledger.status()}
    assert status[("global", None)].reserved_usd == pytest.approx(worst, abs=1e-9)
    assert status[("per-customer", "acme")].reserved_usd == pytest.approx(worst, abs=1e-9)
    actuals = [0.000123456789, 0.0000005, 0.25]
    hold.settle(actuals[0])
    for actual in actuals[1:]:
        reserve(ledger, "acme").settle(actual)
    status = {(s.budget, s.customer): s for s in ledger.status()}
    for key in (("global", None), ("per-customer", "acme")):
        assert status[key].reserved_usd == 0
        assert round(status[key].spent_usd * NANO) == sum(round(a * NANO) for a in actuals)
    gauges = counter(reader, sc.M_BUDGET_SPENT)
    assert gauges[((sc.LLMCOST_BUDGET_NAME, "per-customer"),
                   (sc.LLMCOST_CUSTOMER_ID, "acme"))] == pytest.approx(sum(actuals))
    ledger.close()


@STORES
def test_a_refusal_reserves_on_no_budget(store_settings: dict) -> None:
    """A call under two budgets, one of which refuses it, reserves on neither."""
    worst = worst_case([TEXT], 1000)
    ledger, reader = ledger_with(
        store_settings, Budget("roomy", hard_usd=1.0),
        Budget("tight", hard_usd=worst * 1.5, each_customer=True, enforce=True))
    reserve(ledger, "acme").settle(worst)  # spent = worst: one more worst case crosses 1.5×
    with pytest.raises(BudgetExceeded) as refused:
        reserve(ledger, "acme")
    error = refused.value
    assert (error.budget, error.customer, error.reserved) == ("tight", "acme", 0)
    assert error.spent == pytest.approx(worst, abs=1e-9)
    assert error.requested == pytest.approx(worst, abs=1e-9)
    assert error.limit == pytest.approx(worst * 1.5)
    status = {s.budget: s for s in ledger.status()}
    assert status["roomy"].reserved_usd == 0 and status["tight"].reserved_usd == 0
    # Another customer has its own counter and passes.
    reserve(ledger, "globex").settle(0.0)
    assert counter(reader, sc.M_BUDGET_REFUSED) == {
        ((sc.LLMCOST_BUDGET_ENFORCED, "true"), (sc.LLMCOST_BUDGET_NAME, "tight")): 1}
    ledger.close()


@STORES
def test_soft_limit_thresholds_are_reported_once_per_period(
        store_settings: dict, caplog: pytest.LogCaptureFixture) -> None:
    now = [1_764_000_000.0]  # 2025-11-24 16:00 UTC = 11:00 in New York
    seen: list[budgets.Notification] = []
    ledger, reader = ledger_with(
        store_settings, Budget("daily", soft_usd=1.0, hard_usd=5.0, each_customer=True,
                               timezone="America/New_York"), clock=lambda: now[0])
    ledger._on_notify = seen.append
    caplog.set_level(logging.WARNING, "otel_llmcost.budgets")
    for actual in (0.5, 0.29, 0.02, 0.1, 0.2, 0.3):  # 0.81 crosses 80 %, 1.11 crosses 100 %
        reserve(ledger, "acme").settle(actual)
    assert [(n.threshold, n.customer, n.period) for n in seen] == [
        (0.8, "acme", "2025-11-24"), (1.0, "acme", "2025-11-24")]
    assert seen[0].spent_usd == pytest.approx(0.81) and seen[1].spent_usd == pytest.approx(1.11)
    assert len([r for r in caplog.records if "of its soft limit" in r.message]) == 2
    # 23:59 in New York is still the same day; one minute later the day resets.
    now[0] = 1_764_046_740.0  # 2025-11-25 04:59 UTC = 23:59 EST
    reserve(ledger, "acme").settle(0.1)
    assert {s.period: s.spent_usd for s in ledger.status()} == {
        "2025-11-24": pytest.approx(1.51)}
    now[0] += 120
    reserve(ledger, "acme").settle(0.9)
    assert {s.period: s.spent_usd for s in ledger.status()} == {
        "2025-11-25": pytest.approx(0.9)}
    assert [(n.threshold, n.period) for n in seen[2:]] == [(0.8, "2025-11-25")]
    assert counter(reader, sc.M_BUDGET_NOTIFICATIONS) == {
        ((sc.LLMCOST_BUDGET_NAME, "daily"), (sc.LLMCOST_BUDGET_THRESHOLD, "0.8")): 2,
        ((sc.LLMCOST_BUDGET_NAME, "daily"), (sc.LLMCOST_BUDGET_THRESHOLD, "1.0")): 1}
    ledger.close()


def test_the_bytes_estimate_reserves_the_texts_utf8_bytes() -> None:
    text = "Résumé: naïve café ✓ " * 3  # not ASCII: bytes > characters
    ledger, _ = ledger_with({"store": "memory", "input_estimate": "bytes"},
                            Budget("tiny", hard_usd=1e-6, enforce=True))
    with pytest.raises(BudgetExceeded) as refused:
        reserve(ledger, max_tokens=200, text=text)
    usage = Usage(input_tokens=len(text.encode()), output_tokens=200)
    expected = math.ceil(pricing.price(sc.PROVIDER_OPENAI, MODEL, usage).amount * NANO) / NANO
    assert refused.value.requested == pytest.approx(expected, abs=1e-12)
    assert len(text.encode()) > tokens.count(text)


def test_monthly_periods_follow_the_time_zone() -> None:
    now = [1_767_225_000.0]  # 2025-12-31 23:50 UTC = 2026-01-01 08:50 in Tokyo
    ledger, _ = ledger_with({"store": "memory"}, Budget(
        "tokyo", hard_usd=5.0, period="month", timezone="Asia/Tokyo"), Budget(
        "utc", hard_usd=5.0, period="month"), clock=lambda: now[0])
    reserve(ledger).settle(1.0)
    assert {(s.budget, s.period) for s in ledger.status()} == {
        ("tokyo", "2026-01"), ("utc", "2025-12")}


@pytest.mark.parametrize("store_settings", ["sqlite", "redis"], indirect=True)
def test_a_reservation_never_settled_lapses(store_settings: dict) -> None:
    """A process killed mid-call leaves a reservation; it stops counting after its TTL."""
    now = [1_764_000_000.0]
    worst = worst_case([TEXT], 1000)
    budget = Budget("tight", hard_usd=worst * 1.5, enforce=True)
    dead, _ = ledger_with(store_settings, budget, clock=lambda: now[0], reservation_ttl_s=60)
    reserve(dead)  # never settled: the process "dies"
    alive, _ = ledger_with(store_settings, budget, clock=lambda: now[0],
                           reservation_ttl_s=60)
    with pytest.raises(BudgetExceeded) as refused:
        reserve(alive)
    assert refused.value.reserved == pytest.approx(worst, abs=1e-9)
    now[0] += 61
    reserve(alive).settle(0.0)
    assert [s.reserved_usd for s in alive.status()] == [0]
    dead.close()
    alive.close()


@pytest.mark.parametrize("store_settings", ["sqlite", "redis"], indirect=True)
def test_a_forked_child_issues_its_own_tickets(store_settings: dict) -> None:
    """A forked worker (gunicorn, multiprocessing) must not reuse its parent's lease ids:
    both number their next ticket alike, so only the prefix tells the two leases apart."""
    budget = Budget("shared", hard_usd=100.0)
    ledger, _ = ledger_with(store_settings, budget)
    reserved, release = os.pipe(), os.pipe()
    pid = os.fork()
    if pid == 0:  # the child holds a reservation while the parent makes its own
        code = 1
        try:
            child, _ = ledger_with(store_settings, budget)
            hold = reserve(child)
            os.write(reserved[1], b"x")
            os.read(release[0], 1)
            hold.settle(0.25)
            child.close()
            code = 0
        finally:
            os._exit(code)
    os.read(reserved[0], 1)
    hold = reserve(ledger)
    os.write(release[1], b"x")
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    assert hold is not None
    hold.settle(0.5)
    [row] = ledger.status()
    assert (row.spent_usd, row.reserved_usd) == (pytest.approx(0.75), 0)
    ledger.close()


# --- Through the SDKs -------------------------------------------------------------------

@pytest.fixture
def in_force(telemetry: Any) -> Any:
    """Put budgets in force on the tests' pipeline: ``in_force(*budgets, **settings)``."""
    def configure(*budget_list: Budget, **settings: Any) -> Ledger:
        ledger = budgets.configure(Settings(budgets=budget_list, **settings),
                                   meter_provider=telemetry.providers["meter_provider"])
        assert ledger is not None
        return ledger
    return configure


def chat(client: Any, max_tokens: int = 1000, **keys: Any) -> Any:
    return client.chat.completions.create(
        model=MODEL, max_tokens=max_tokens, messages=[{"role": "user", "content": TEXT}],
        **scenario(**keys))


def test_a_refused_call_sends_no_request(in_force: Any, telemetry: Any, provider: Any,
                                         openai_client: Any) -> None:
    worst = worst_case([TEXT], 1000)
    in_force(Budget("tight", hard_usd=worst * 0.99, enforce=True))
    provider.clear()
    with pytest.raises(otel_llmcost.BudgetExceeded) as refused:
        chat(openai_client)
    assert len(provider.requests) == 0
    assert refused.value.requested == pytest.approx(worst, abs=1e-9)
    assert isinstance(refused.value, budgets.BudgetError)
    span = telemetry.span()
    assert span.attributes[sc.ERROR_TYPE] == "BudgetExceeded"
    assert sc.GEN_AI_USAGE_COST_AMOUNT not in span.attributes
    assert telemetry.sums(sc.M_BUDGET_REFUSED.name, sc.LLMCOST_BUDGET_ENFORCED) == {"true": 1}
    # A smaller max_tokens fits: the worst case is what the request allows.
    chat(openai_client, max_tokens=10, output_tokens=10)
    assert len(provider.requests) == 1


def test_an_unenforced_budget_only_records(in_force: Any, telemetry: Any, provider: Any,
                                           openai_client: Any) -> None:
    in_force(Budget("first-deployment", hard_usd=1e-7))
    provider.clear()
    chat(openai_client, output_tokens=20)
    assert len(provider.requests) == 1
    assert telemetry.sums(sc.M_BUDGET_REFUSED.name, sc.LLMCOST_BUDGET_ENFORCED) == {
        "false": 1}


def spent_and_reserved(ledger: Ledger) -> tuple[int, int]:
    (status,) = ledger.status()
    return round(status.spent_usd * NANO), round(status.reserved_usd * NANO)


def span_costs(telemetry: Any) -> int:
    return sum(round(s.attributes.get(sc.GEN_AI_USAGE_COST_AMOUNT, 0.0) * NANO)
               for s in telemetry.finished())


def test_calls_of_both_sdks_settle_at_their_span_cost(in_force: Any, telemetry: Any,
                                                      openai_client: Any,
                                                      anthropic_client: Any) -> None:
    ledger = in_force(Budget("global", hard_usd=100.0))
    chat(openai_client, input_tokens=3000, cached_tokens=2048, output_tokens=300)
    anthropic_client.messages.create(
        model="claude-sonnet-4-5", max_tokens=1024,
        messages=[{"role": "user", "content": TEXT}],
        **scenario(input_tokens=40, cached_tokens=5000, cache_write_5m=1000,
                   output_tokens=200))
    spent, reserved = spent_and_reserved(ledger)
    assert reserved == 0
    assert spent == span_costs(telemetry) > 0


async def test_asyncio_tasks_race_for_the_last_cents(in_force: Any, telemetry: Any,
                                                     async_openai_client: Any) -> None:
    """50 tasks on one event loop, each calling until refused with nothing in flight."""
    import asyncio
    worst = worst_case([TEXT], 100)
    hard = 40 * worst
    ledger = in_force(Budget("global", hard_usd=hard, enforce=True))

    async def task() -> None:
        while True:
            try:
                await async_openai_client.chat.completions.create(
                    model=MODEL, max_tokens=100, messages=[{"role": "user", "content": TEXT}],
                    **scenario(output_tokens=50))
            except BudgetExceeded as refused:
                if refused.reserved == 0:
                    return
                await asyncio.sleep(0.001)

    await asyncio.gather(*(task() for _ in range(50)))
    spent, reserved = spent_and_reserved(ledger)
    assert reserved == 0 and spent == span_costs(telemetry) > 0
    assert spent <= hard * NANO and hard * NANO - spent < worst * NANO


def test_a_failed_call_releases_its_reservation(in_force: Any, telemetry: Any,
                                                openai_client: Any) -> None:
    import openai
    ledger = in_force(Budget("global", hard_usd=100.0))
    with pytest.raises(openai.InternalServerError):
        chat(openai_client, error_status=500)
    assert spent_and_reserved(ledger) == (0, 0)


def test_streams_settle_when_done_and_release_when_abandoned(
        in_force: Any, telemetry: Any, openai_client: Any) -> None:
    ledger = in_force(Budget("global", hard_usd=100.0))
    stream = openai_client.chat.completions.create(
        model=MODEL, max_tokens=500, stream=True, messages=[{"role": "user", "content": TEXT}],
        **scenario(output_tokens=120, chunks=30))
    for _ in stream:
        pass
    done = span_costs(telemetry)
    assert spent_and_reserved(ledger) == (done, 0)
    telemetry.spans.clear()
    stream = openai_client.chat.completions.create(
        model=MODEL, max_tokens=500, stream=True, messages=[{"role": "user", "content": TEXT}],
        **scenario(output_tokens=120, chunks=30))
    for number, _ in enumerate(stream):
        if number == 5:
            break
    assert spent_and_reserved(ledger)[1] > 0  # still open: still reserved
    del stream  # abandoned: ends (and settles) when collected
    abandoned = span_costs(telemetry)  # collects garbage first
    assert 0 < abandoned < done
    assert spent_and_reserved(ledger) == (done + abandoned, 0)


def test_anthropic_stream_manager_is_refused_before_sending(
        in_force: Any, telemetry: Any, provider: Any, anthropic_client: Any) -> None:
    in_force(Budget("tight", hard_usd=1e-6, enforce=True))
    provider.clear()
    with pytest.raises(BudgetExceeded):
        with anthropic_client.messages.stream(
                model="claude-sonnet-4-5", max_tokens=1024,
                messages=[{"role": "user", "content": TEXT}]) as stream:
            stream.until_done()
    assert len(provider.requests) == 0


def test_budgets_select_calls_by_customer_tier_and_feature(
        in_force: Any, telemetry: Any, openai_client: Any) -> None:
    ledger = in_force(Budget("free-each", hard_usd=1.0, tier="free", each_customer=True),
                      Budget("search", hard_usd=1.0, feature="search"),
                      Budget("vip", hard_usd=1.0, customer="vip-1"))
    with otel_llmcost.attributes(customer_id="c1", customer_tier="free", feature="search"):
        chat(openai_client, output_tokens=10)
    with otel_llmcost.attributes(customer_id="vip-1", customer_tier="pro", feature="chat"):
        chat(openai_client, output_tokens=10)
    assert sorted((s.budget, s.customer) for s in ledger.status()) == [
        ("free-each", "c1"), ("search", None), ("vip", None)]
    span = telemetry.finished()[0]
    assert span.attributes[sc.LLMCOST_CUSTOMER_TIER] == "free"


# --- A store that does not answer -------------------------------------------------------

@pytest.fixture
def blackhole() -> Iterator[int]:
    """A TCP port that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue
    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


@pytest.mark.parametrize("mode", ["open", "closed"])
def test_redis_that_never_answers(mode: str, blackhole: int, in_force: Any, telemetry: Any,
                                  provider: Any, openai_client: Any) -> None:
    in_force(Budget("global", hard_usd=100.0, enforce=True), store="redis",
             redis_url=f"redis://127.0.0.1:{blackhole}/0", timeout_s=0.2, on_store_error=mode)
    provider.clear()
    if mode == "open":
        chat(openai_client, output_tokens=10)
        chat(openai_client, output_tokens=10)  # within the back-off: the store is skipped
        assert len(provider.requests) == 2
    else:
        with pytest.raises(BudgetUnavailable):
            chat(openai_client, output_tokens=10)
        assert len(provider.requests) == 0
    assert telemetry.sums(sc.M_BUDGET_UNACCOUNTED.name,
                          sc.LLMCOST_BUDGET_UNACCOUNTED_REASON) == {
        sc.UNACCOUNTED_STORE: 2 if mode == "open" else 1}


@pytest.mark.parametrize("mode", ["open", "closed"])
def test_sqlite_locked_by_another_process(mode: str, tmp_path: Path, in_force: Any,
                                          telemetry: Any, provider: Any,
                                          openai_client: Any) -> None:
    path = tmp_path / "budgets.db"
    in_force(Budget("global", hard_usd=100.0), store="sqlite", sqlite_path=str(path),
             timeout_s=0.2, on_store_error=mode)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # the file's write lock, held
    provider.clear()
    try:
        if mode == "open":
            chat(openai_client, output_tokens=10)
            assert len(provider.requests) == 1
        else:
            with pytest.raises(BudgetUnavailable):
                chat(openai_client, output_tokens=10)
            assert len(provider.requests) == 0
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert telemetry.sums(sc.M_BUDGET_UNACCOUNTED.name,
                          sc.LLMCOST_BUDGET_UNACCOUNTED_REASON) == {sc.UNACCOUNTED_STORE: 1}


def _open_store_at_once(path: str, barrier: Any, opened: Any) -> None:
    from otel_llmcost.budgets._sqlite import SQLiteStore
    from otel_llmcost.budgets._store import StoreUnavailable

    barrier.wait()
    try:
        SQLiteStore(path, timeout_s=0.001)
    except StoreUnavailable as error:
        opened.put(str(error))
    else:
        opened.put("ok")


def test_sqlite_processes_starting_together_all_open_the_store(tmp_path: Path) -> None:
    """Workers of one app start at once and create the file together: each waits its turn
    to create the tables, longer than a call may wait, rather than run without budgets."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    barrier, opened = context.Barrier(8), context.Queue()
    for _ in range(3):
        path = str(tmp_path / f"budgets-{_}.db")
        workers = [context.Process(target=_open_store_at_once, args=(path, barrier, opened))
                   for _ in range(8)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        assert [opened.get(timeout=5) for _ in workers] == ["ok"] * 8


# --- Configuration ----------------------------------------------------------------------

def test_budget_files_are_validated(tmp_path: Path) -> None:
    path = tmp_path / "budgets.yaml"
    path.write_text(yaml.safe_dump({"store": "memory", "budgets": [
        {"name": "free", "tier": "free", "each_customer": True, "period": "day",
         "timezone": "Europe/Paris", "soft_usd": 0.2, "hard_usd": 0.5, "enforce": True}]}))
    settings = budgets.load(path)
    assert settings.budgets[0] == Budget("free", tier="free", each_customer=True,
                                         timezone="Europe/Paris", soft_usd=0.2, hard_usd=0.5,
                                         enforce=True)
    for bad, message in (
            ({"budgets": [{"name": "x", "hard_usd": 1, "limit": 2}]}, "unknown key"),
            ({"budgets": [{"name": "x", "hard_usd": 1, "soft_usd": 2}]}, "soft_usd"),
            ({"budgets": [{"name": "x", "hard_usd": 1, "timezone": "Mars/Olympus"}]},
             "time zone"),
            ({"budgets": [{"name": "x", "hard_usd": 1, "period": "week"}]}, "period"),
            ({"budgets": [{"name": "x", "hard_usd": 1, "enforce": "yes"}]}, "enforce"),
            ({"budgets": [{"name": "x"}]}, "hard_usd"),
            ({"store": "sqlite"}, "sqlite_path"),
            ({"on_store_error": "maybe"}, "on_store_error"),
            ({"input_estimate": "words"}, "input_estimate"),
            ({"budgets": [{"name": "x", "hard_usd": 1}, {"name": "x", "hard_usd": 2}]},
             "unique")):
        with pytest.raises(ValueError, match=message):
            budgets.from_mapping(bad)


# --- Races ------------------------------------------------------------------------------

def race(provider: Any, sink: OtlpSink, settings: dict[str, Any], tmp_path: Path,
         processes: int, threads: int) -> list[dict[str, Any]]:
    """Run the race app in ``processes`` processes of ``threads`` threads each."""
    config = tmp_path / "budgets.yaml"
    config.write_text(yaml.safe_dump(settings))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLMCOST_"))}
    env.update(OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
               OTEL_EXPORTER_OTLP_ENDPOINT=sink.endpoint, OTEL_LOGS_EXPORTER="none",
               OTEL_METRIC_EXPORT_INTERVAL="600000", OTEL_BSP_SCHEDULE_DELAY="200",
               OTEL_BSP_MAX_QUEUE_SIZE="100000",
               OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="llmcost_anthropic",
               LLMCOST_BUDGETS_FILE=str(config), RACE_PROVIDER_URL=provider.url,
               RACE_THREADS=str(threads), RACE_CUSTOMER="acme",
               PYTHONPATH=str(Path(__file__).parents[1]))
    running = [subprocess.Popen([str(INSTRUMENT), sys.executable, str(RACE_APP)],
                                env={**env, "OTEL_SERVICE_NAME": f"race-{i}"}, cwd="/",
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for i in range(processes)]
    results = []
    try:
        for process in running:
            out, err = process.communicate(timeout=600)
            assert process.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:  # a process left calling the shared stand-in provider would upset later tests
        for process in running:
            process.kill()
            process.wait()
    return results


def check_race(results: list[dict[str, Any]], sink: OtlpSink, spent_nano: int,
               hard: float, worst: float, calls_of_actual: float) -> None:
    costs = [s["attributes"].get(sc.GEN_AI_USAGE_COST_AMOUNT) for s in sink.spans
             if s["scope"] == sc.INSTRUMENTATION_SCOPE]
    granted = sum(r["granted"] for r in results)
    refused = [c for c in costs if c is None]
    assert len(costs) - len(refused) == granted
    assert len(refused) == sum(r["refused"] for r in results)
    # The store's total is the sum of the calls' actual costs, to the nano-dollar.
    assert spent_nano == sum(round(c * NANO) for c in costs if c is not None)
    assert spent_nano == granted * round(calls_of_actual * NANO)
    # Never overspent (actual ≤ worst case), and the race used the budget up.
    assert spent_nano <= hard * NANO
    assert hard * NANO - spent_nano < worst * NANO
    finals = [f for r in results for f in r["final"]]
    assert finals and all(f["spent"] + f["requested"] > f["limit"] for f in finals)


RACE_WORST = worst_case(["Summarise the quarterly report for the board in three short "
                         "bullet points."], 1000)
RACE_ACTUAL = pricing.price(sc.PROVIDER_OPENAI, MODEL, Usage(input_tokens=5,
                                                             output_tokens=500)).amount or 0.0
RACE_HARD = 0.05  # about 110 calls of $0.00045
RACE_SOFT = 0.02  # crossed (80 % and 100 %) during the race


def race_budget(**store: Any) -> dict[str, Any]:
    return {**store, "budgets": [{"name": "race", "hard_usd": RACE_HARD, "soft_usd": RACE_SOFT,
                                  "each_customer": True, "enforce": True}]}


def notified_once_in_all(sink: OtlpSink) -> None:
    """Every process exports its notification counter at exit: each threshold was reported
    once in all, whichever process settled the call that crossed it."""
    assert sink.by_attribute(sc.M_BUDGET_NOTIFICATIONS.name, sc.LLMCOST_BUDGET_THRESHOLD) == {
        "0.8": 1, "1.0": 1}


def test_100_threads_race_for_the_last_dollars(provider: Any, tmp_path: Path) -> None:
    with OtlpSink() as sink:
        results = race(provider, sink, race_budget(store="memory"), tmp_path, 1, 100)
        (point,) = sink.last_values(sc.M_BUDGET_SPENT.name).values()
        notified_once_in_all(sink)
    assert point["attributes"][sc.LLMCOST_CUSTOMER_ID] == "acme"
    check_race(results, sink, round(point["value"] * NANO), RACE_HARD, RACE_WORST,
               RACE_ACTUAL)


def test_4_processes_race_on_sqlite(provider: Any, tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    with OtlpSink() as sink:
        results = race(provider, sink, race_budget(store="sqlite", sqlite_path=str(path),
                                                   timeout_s=5.0), tmp_path, 4, 8)
        notified_once_in_all(sink)
    with sqlite3.connect(path) as db:
        (spent,), = db.execute("SELECT spent FROM budget").fetchall()
        assert db.execute("SELECT COUNT(*) FROM lease").fetchone() == (0,)
    check_race(results, sink, spent, RACE_HARD, RACE_WORST, RACE_ACTUAL)


def test_4_processes_race_on_redis(provider: Any, tmp_path: Path, redis_url: str) -> None:
    import redis
    prefix = f"race{os.getpid()}:"
    with OtlpSink() as sink:
        results = race(provider, sink, race_budget(store="redis", redis_url=redis_url,
                                                   key_prefix=prefix, timeout_s=5.0),
                       tmp_path, 4, 8)
        notified_once_in_all(sink)
    client = redis.Redis.from_url(redis_url)
    (key,) = client.keys(f"{prefix}b:*")
    assert int(client.hget(key, "reserved")) == 0
    check_race(results, sink, int(client.hget(key, "spent")), RACE_HARD, RACE_WORST,
               RACE_ACTUAL)


def test_the_readme_worked_example_is_a_valid_budgets_file(tmp_path: Path) -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme[readme.index("## Budgets"):]
    block = section[section.index("```yaml\n") + 8:section.index("```", section.index(
        "```yaml\n") + 8)]
    document = yaml.safe_load(block)
    document["sqlite_path"] = str(tmp_path / "budgets.db")
    settings = budgets.from_mapping(document)
    assert [b.name for b in settings.budgets] == ["free-daily", "search-monthly",
                                                  "everything"]
    ledger = budgets.configure(settings)
    assert ledger is not None
    with otel_llmcost.attributes(customer_id="acme", customer_tier="free", feature="search"):
        scope = attribution.current()
    hold = ledger.reserve(sc.PROVIDER_OPENAI, sc.OP_CHAT, MODEL, 500, lambda: [TEXT], scope)
    assert hold is not None
    hold.settle(0.01)
    assert sorted((s.budget, s.customer) for s in ledger.status()) == [
        ("everything", None), ("free-daily", "acme"), ("search-monthly", None)]
