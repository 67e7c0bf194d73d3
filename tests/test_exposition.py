"""The Prometheus endpoint, scraped over real HTTP: exact values, formats, exemplars, auth.

Against an engine fed hand-built spans. When the Debian ``prometheus`` package is
installed, ``promtool check metrics`` lints a real scrape and a real Prometheus server
scrapes the endpoint, and its query API must give back the engine's numbers.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from otel_llmcost import semconv as sc
from otel_llmcost.processor.engine import Config, Engine
from otel_llmcost.processor.exposition import EngineCollector, MetricsServer, live
from otel_llmcost.processor.records import SpanRecord

T = TypeVar("T")
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
WAIT_S = 120.0  # generous: a slow CI machine only makes a test slower, never failed

# (trace number, cost, customer, weight): one agent trace each, root + one LLM call.
TRACES = [(1, 0.15, "acme", 1.0), (2, 0.3, "acme", 1.0), (3, 0.3, "globex", 1.0),
          (4, 0.7, None, 2.0), (5, 6.0, "initech", 1.0)]  # 5 is a runaway (> $5)


def tid(n: int) -> bytes:
    return n.to_bytes(16, "big")


def fed_engine(now_ns: int) -> Engine:
    """The engine after the TRACES closed; trace 1 is turn 1 of conversation c1."""
    engine = Engine(Config(trace_wait_s=0))
    for n, cost, customer, weight in TRACES:
        root = SpanRecord(tid(n), bytes([n, 0] * 4), b"", now_ns, now_ns, weight=weight)
        call = SpanRecord(tid(n), bytes([n, 1] * 4), root.span_id, now_ns, now_ns, llm=True,
                          cost=cost, customer_id=customer, weight=weight,
                          conversation_id="c1" if n == 1 else None)
        engine.ingest([call, root], now_ns)
    engine.advance(now_ns)
    return engine


def wait_for(probe: Callable[[], T | None], what: str, timeout_s: float = WAIT_S) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        result = probe()
        if result is not None:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def scrape(port: int, accept: str | None = None, token: str | None = None
           ) -> tuple[str, str]:
    """(Content-Type, body) of GET /metrics."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
    if accept:
        request.add_header("Accept", accept)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=WAIT_S) as response:
        return response.headers["Content-Type"], response.read().decode("utf-8")


def families(text: str) -> dict[str, Metric]:
    return {family.name: family for family in parse_text(text)}


def family_name(metric: sc.MetricDef) -> str:
    """The family name a parser reports (a counter's without ``_total``)."""
    return metric.prometheus.removesuffix("_total")


def values(family: Metric, suffix: str = "") -> dict[tuple[tuple[str, str], ...], float]:
    """Sample values of one family by sorted label pairs (``suffix``: _bucket, _sum…)."""
    name = family.name + suffix
    return {tuple(sorted(s.labels.items())): s.value for s in family.samples if s.name == name}


@pytest.fixture
def served() -> Iterator[tuple[Engine, threading.Lock, MetricsServer]]:
    engine, lock = fed_engine(time.time_ns()), threading.Lock()
    server = MetricsServer(EngineCollector(live(engine, lock)), port=0)
    server.start()
    yield engine, lock, server
    server.stop()


def test_a_plain_scrape_renders_the_engines_exact_rollups(served):
    engine, _, server = served
    content_type, text = scrape(server.port)
    assert content_type.startswith("text/plain; version=0.0.4")
    parsed = families(text)

    cost = parsed[family_name(sc.M_TRACE_COST)]
    assert cost.type == "histogram" and cost.documentation == sc.M_TRACE_COST.description
    buckets = {dict(k)["le"]: v for k, v in values(cost, "_bucket").items()}
    assert len(buckets) == len(sc.M_TRACE_COST.buckets) + 1
    # Cumulative, with the weight-2 trace counted twice: 0.15 | 0.3 0.3 | 0.7 0.7 | 6.0
    assert [buckets[le] for le in ("0.1", "0.2", "0.5", "1.0", "5.0", "10.0", "+Inf")] == [
        0.0, 1.0, 3.0, 5.0, 5.0, 6.0, 6.0]
    assert values(cost, "_count") == {(): 6.0}
    expected_sum = engine.metrics.histograms[(sc.M_TRACE_COST, ())].sum
    assert values(cost, "_sum") == {(): expected_sum} and expected_sum == pytest.approx(8.15)

    turn = parsed[family_name(sc.M_TURN_COST)]
    label = sc.prometheus_label(sc.LLMCOST_TURN_BUCKET)
    assert values(turn, "_count")[((label, "1"),)] == 1.0
    assert values(turn, "_sum")[((label, "1"),)] == 0.15

    runaway = parsed[family_name(sc.M_TRACE_RUNAWAY)]
    assert runaway.type == "counter"
    reason = sc.prometheus_label(sc.LLMCOST_RUNAWAY_REASON)
    assert values(runaway, "_total") == {((reason, "cost"),): 1.0,
                                         ((reason, "llm_calls"),): 0.0}
    assert "# {" not in text  # the plain format has no exemplars

    window, customer = (sc.prometheus_label(a) for a in (sc.LLMCOST_WINDOW,
                                                          sc.LLMCOST_CUSTOMER_ID))
    top_cost = values(parsed[family_name(sc.M_CUSTOMER_TOP_COST)])
    top = {dict(k)[customer]: v for k, v in top_cost.items() if dict(k)[window] == "1h"}
    assert top == {"acme": 0.15 + 0.3, "globex": 0.3, "initech": 6.0,
                   sc.CUSTOMER_OTHER: 0.0, sc.CUSTOMER_UNATTRIBUTED: 1.4}
    active = values(parsed[family_name(sc.M_CUSTOMER_ACTIVE)])
    assert active == {((window, label),): 3.0 for label, _ in sc.WINDOWS}
    entity = sc.prometheus_label(sc.LLMCOST_ENTITY)
    assert values(parsed[family_name(sc.M_PROCESSOR_OPEN)]) == {
        ((entity, "trace"),): 0.0, ((entity, "conversation"),): 1.0,
        ((entity, "customer"),): 3.0}


def test_every_family_is_there_before_any_data_with_zeros_where_labels_are_known():
    server = MetricsServer(EngineCollector(live(Engine(), threading.Lock())), port=0)
    server.start()
    try:
        parsed = families(scrape(server.port)[1])
    finally:
        server.stop()
    for metric in sc.ROLLUP_METRICS:
        family = parsed[family_name(metric)]
        assert family.type == metric.kind
        assert family.documentation.startswith(metric.description)
        if metric.kind == "gauge":
            continue  # only what the engine reports: a made-up zero would be a false value
        suffix = "_count" if metric.kind == "histogram" else "_total"
        series = values(family, suffix)
        assert set(series.values()) == {0.0}, metric.name
        expected = 1
        for attribute in metric.attributes:
            expected *= {sc.LLMCOST_TURN_BUCKET: len(sc.TURN_BUCKETS),
                         sc.LLMCOST_WINDOW: len(sc.WINDOWS), sc.LLMCOST_RUNAWAY_REASON: 2,
                         sc.LLMCOST_ENTITY: len(sc.ENTITIES),
                         sc.LLMCOST_ANOMALY_KIND: len(sc.ANOMALY_KINDS),
                         sc.LLMCOST_ANOMALY_SEVERITY: len(sc.ANOMALY_SEVERITIES)}[attribute]
        assert len(series) == expected, metric.name
        for labels in series:
            assert [name for name, _ in labels] == sorted(
                sc.prometheus_label(a) for a in metric.attributes)
    assert not parsed[family_name(sc.M_CUSTOMER_SPEND_SHARE)].samples
    # The engine always reports the size of its state, zero included.
    assert set(values(parsed[family_name(sc.M_PROCESSOR_OPEN)]).values()) == {0.0}


def test_openmetrics_is_negotiated_and_carries_the_runaway_trace_as_exemplar(served):
    engine, _, server = served
    content_type, text = scrape(server.port, accept=OPENMETRICS)
    assert content_type.startswith("application/openmetrics-text")
    assert text.endswith("# EOF\n")
    parsed = {family.name: family for family in parse_om(text)}  # strict: raises if invalid
    assert parsed[family_name(sc.M_TRACE_COST)].unit == "USD"
    assert parsed[family_name(sc.M_TRACE_DURATION)].unit == "seconds"
    runaway = parsed[family_name(sc.M_TRACE_RUNAWAY)]
    exemplars = {s.labels[sc.prometheus_label(sc.LLMCOST_RUNAWAY_REASON)]: s.exemplar
                 for s in runaway.samples}
    assert exemplars["llm_calls"] is None
    exemplar = exemplars["cost"]
    expected = engine.metrics.exemplars[(sc.M_TRACE_RUNAWAY, ("cost",))]
    assert exemplar.labels == {"trace_id": tid(5).hex()} == {"trace_id": expected.trace_id}
    assert exemplar.value == 6.0
    assert exemplar.timestamp is None  # Prometheus stamps it with the scrape that shows it


def test_self_metric_sources_are_rendered_beside_the_engines():
    forwarded = sc.MetricDef("llmcost.test.forwarded", "counter", "{request}", "Forwarded.")
    queued = sc.MetricDef("llmcost.test.queued", "gauge", "{request}", "Queued.",
                          ("llmcost.test.queue",))

    def source() -> list[tuple[sc.MetricDef, tuple[str, ...], float]]:
        return [(forwarded, (), 7.0), (queued, ("main",), 3.0)]

    server = MetricsServer(EngineCollector(live(Engine(), threading.Lock()), [source]), port=0)
    server.start()
    try:
        parsed = families(scrape(server.port)[1])
    finally:
        server.stop()
    assert values(parsed["llmcost_test_forwarded"], "_total") == {(): 7.0}
    assert parsed["llmcost_test_forwarded"].documentation == "Forwarded. Unit: {request}."
    assert values(parsed["llmcost_test_queued"]) == {(("llmcost_test_queue", "main"),): 3.0}
    assert family_name(sc.M_TRACE_COST) in parsed
    assert "process_cpu_seconds" in parsed  # the processor's own cost


def test_a_scrape_reads_the_engine_only_under_its_lock(served):
    _, lock, server = served
    done: list[str] = []
    with lock:  # the engine thread is busy
        scraper = threading.Thread(target=lambda: done.append(scrape(server.port)[1]))
        scraper.start()
        scraper.join(0.5)
        assert scraper.is_alive() and not done
    scraper.join(WAIT_S)
    assert done and family_name(sc.M_TRACE_COST) in families(done[0])


def test_a_token_is_required_when_set():
    server = MetricsServer(EngineCollector(live(Engine(), threading.Lock())), port=0, token="s3cret")
    server.start()
    try:
        for token in (None, "wrong"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                scrape(server.port, token=token)
            assert refused.value.code == 401
            assert refused.value.headers["WWW-Authenticate"].startswith("Bearer")
        assert family_name(sc.M_TRACE_COST) in families(scrape(server.port, token="s3cret")[1])
    finally:
        server.stop()


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool not installed (Debian package prometheus)")
def test_promtool_accepts_a_real_scrape(served):
    _, _, server = served
    text = scrape(server.port)[1]
    lint = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                          capture_output=True, timeout=WAIT_S, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def api(base: str, path: str, **params: str) -> Any:
    url = f"{base}/api/v1/{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=WAIT_S) as response:
        answer = json.load(response)
    assert answer["status"] == "success", answer
    return answer["data"]


@pytest.mark.skipif(shutil.which("prometheus") is None,
                    reason="prometheus not installed (Debian package prometheus)")
def test_a_real_prometheus_scrape_gives_back_the_engines_numbers(served, tmp_path: Path):
    engine, _, server = served
    token = "scrape-token"
    server.stop()  # again, with a token: Prometheus must send it
    server = MetricsServer(EngineCollector(live(engine, threading.Lock())), port=0, token=token)
    server.start()
    port = free_port()
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "scrape_configs": [{"job_name": "llmcost",
                                  "authorization": {"credentials": token},
                                  "static_configs": [{"targets": [f"127.0.0.1:{server.port}"]}]}]}
    (tmp_path / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    log = (tmp_path / "prometheus.log").open("w")
    prometheus = subprocess.Popen(
        ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
         "--enable-feature=exemplar-storage"], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def instant(expr: str) -> list[Any] | None:
        try:
            return api(base, "query", query=expr)["result"] or None
        except (urllib.error.URLError, ConnectionError):
            return None  # not listening yet

    try:
        up = wait_for(lambda: instant('up{job="llmcost"} == 1'), "a successful scrape")
        assert len(up) == 1
        quantile = wait_for(lambda: instant(
            "histogram_quantile(0.9, llmcost_trace_cost_USD_bucket)"), "the quantile")
        # Rank 0.9 × 6 = 5.4 falls in (5, 10] (5 below it, 1 in it): 5 + 5 × 0.4 = 7.
        assert float(quantile[0]["value"][1]) == pytest.approx(7.0)
        total = wait_for(lambda: instant(
            'sum(llmcost_customer_top_cost_USD{llmcost_window="1h"})'), "the top_cost sum")
        expected = sum(v for m, labels, v in engine.gauges()
                       if m is sc.M_CUSTOMER_TOP_COST and labels[0] == "1h")
        assert float(total[0]["value"][1]) == pytest.approx(expected) == pytest.approx(8.15)
        now = time.time()
        exemplars = wait_for(lambda: api(
            base, "query_exemplars", query=sc.M_TRACE_RUNAWAY.prometheus,
            start=str(now - 3600), end=str(now + 3600)) or None, "the runaway exemplar")
        assert [e["labels"] for series in exemplars for e in series["exemplars"]] == [
            {"trace_id": tid(5).hex()}]  # only OpenMetrics carries them: it was negotiated
    finally:
        prometheus.terminate()
        prometheus.wait(WAIT_S)
        log.close()
        server.stop()
