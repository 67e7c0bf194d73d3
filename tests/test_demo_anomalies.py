"""Anomaly detection on the demo's day, end to end: the app under ``opentelemetry-instrument``
exports OTLP/gRPC to the processor, which reports anomalies as OTLP log records (to a sink
here) and on ``GET /anomalies``.

Two days of the same length and seed: one with the incidents injected at known times (a
runaway agent loop at 15:00, a customer's spend surge at 17:00), one clean. Stated delays,
in simulated event time: the runaway trace when its 51st call ends (past the limit of 50),
before the loop is over; the surge within 20 minutes of its start (the 10-minute window,
5 minutes sustained, and the buckets it takes to cross the threshold).
"""

from __future__ import annotations

import pytest

from otel_llmcost import semconv as sc
from otel_llmcost.demo.run import Options, run_demo
from tests.otlp_sink import OtlpSink

# A day in 30 s: slow enough for the surge's calls to keep their pace (the test of the
# dashboards plays days faster).
DAY = Options(seed=11, customers=80, sessions=150, duration_s=30.0, workers=6, surge=True)
MINUTE_NS = 60 * 1_000_000_000
SURGE_WITHIN_MIN = 20


@pytest.fixture(scope="module")
def incidents(tmp_path_factory):
    with OtlpSink() as sink:
        outcome = run_demo(Options(**{**DAY.__dict__, "out": tmp_path_factory.mktemp("inc"),
                                      "logs_endpoint": sink.endpoint + "/v1/logs"}))
        logs = sink.logs
    return outcome, logs


def started(outcome):
    return [a for a in outcome.anomalies if a[sc.LLMCOST_ANOMALY_STATE] == sc.ANOMALY_STARTED]


def test_the_injected_incidents_are_detected_within_the_stated_delays(incidents):
    outcome, _ = incidents
    plan = {i.kind: i for i in outcome.incidents}
    found = {(a[sc.LLMCOST_ANOMALY_KIND], a[sc.LLMCOST_CUSTOMER_ID]): a for a in started(outcome)}
    runaway, surge = plan[sc.ANOMALY_RUNAWAY_TRACE], plan[sc.ANOMALY_CUSTOMER]
    # The runaway trace, flagged while it still grows, with its trace id.
    trace = found.pop((sc.ANOMALY_RUNAWAY_TRACE, runaway.customer))
    assert trace[sc.LLMCOST_ANOMALY_TRACE_IDS] == outcome.runaway_ids
    assert trace[sc.LLMCOST_ANOMALY_LLM_CALLS] == 51
    (ended,) = [a for a in outcome.anomalies if a[sc.LLMCOST_ANOMALY_KIND] ==
                sc.ANOMALY_RUNAWAY_TRACE and a[sc.LLMCOST_ANOMALY_STATE] == sc.ANOMALY_CLEARED]
    assert ended[sc.LLMCOST_ANOMALY_LLM_CALLS] == 60
    assert runaway.start_ns < trace["time_unix_ns"] < ended["time_unix_ns"]
    # The surge: that customer's spend slope, against its own baseline.
    customer = found.pop((sc.ANOMALY_CUSTOMER, surge.customer))
    delay = (customer["time_unix_ns"] - surge.start_ns) / MINUTE_NS
    assert 0 < delay <= SURGE_WITHIN_MIN
    assert customer[sc.LLMCOST_ANOMALY_RATE] > 25.0  # the demo's floor, $/h
    assert customer[sc.LLMCOST_ANOMALY_TRACE_IDS]
    # The global total may rise with it (the surge is over 5× the day's hourly rate); no
    # other customer, and nothing else.
    assert set(found) <= {(sc.ANOMALY_GLOBAL, None)}
    # Every anomaly cleared once the day was over.
    cleared = [a for a in outcome.anomalies if a[sc.LLMCOST_ANOMALY_STATE] == sc.ANOMALY_CLEARED]
    assert len(cleared) == len(started(outcome))


def test_each_anomaly_is_an_otlp_log_record_with_its_customer_and_traces(incidents):
    outcome, logs = incidents
    records = {(r["attributes"][sc.LLMCOST_ANOMALY_KIND], r["attributes"][
        sc.LLMCOST_ANOMALY_STATE]): r for r in logs}
    assert len(records) == len(logs) == len(outcome.anomalies)
    surge = records[(sc.ANOMALY_CUSTOMER, sc.ANOMALY_STARTED)]
    assert surge["event_name"] == sc.ANOMALY_EVENT and surge["service"] == sc.PROCESSOR_COMMAND
    assert surge["severity_text"] in ("WARN", "ERROR")
    mine = next(a for a in started(outcome) if a[sc.LLMCOST_ANOMALY_KIND] == sc.ANOMALY_CUSTOMER)
    assert surge["attributes"][sc.LLMCOST_CUSTOMER_ID] == mine[sc.LLMCOST_CUSTOMER_ID]
    assert surge["attributes"][sc.LLMCOST_ANOMALY_TRACE_IDS] == mine[
        sc.LLMCOST_ANOMALY_TRACE_IDS]
    assert surge["trace_id"] == mine[sc.LLMCOST_ANOMALY_TRACE_IDS][0]
    assert surge["time_ns"] == mine["time_unix_ns"]
    assert records[(sc.ANOMALY_RUNAWAY_TRACE, sc.ANOMALY_CLEARED)]["severity_text"] == "INFO"


def test_a_clean_day_of_the_same_length_raises_no_anomaly(tmp_path):
    outcome = run_demo(Options(**{**DAY.__dict__, "out": tmp_path, "incidents": False}))
    assert outcome.incidents == () and outcome.runaway_ids == []
    assert outcome.anomalies == []
