"""``otel-llmcost demo`` end to end: a short simulated day through the whole real pipeline.

The workload runs under the real ``opentelemetry-instrument`` (a subprocess), calls the
real ``openai`` and ``anthropic`` SDKs against the stand-in provider, exports OTLP/gRPC to
the rollup processor and its call metrics to a Prometheus endpoint. What the pipeline
shows must equal what the workload knows it spent: the spend, every customer's day, the
Lorenz points, the calls no price covers, the calls that failed, the runaway loop.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from otel_llmcost import semconv as sc
from otel_llmcost.demo import workload as wl
from otel_llmcost.demo.report import write_report
from otel_llmcost.demo.run import Options, run_demo
from otel_llmcost.demo.summary import figures, quantile

ROOT = Path(__file__).resolve().parents[1]
SMALL = Options(seed=11, customers=80, sessions=150, duration_s=12.0, workers=6)


@pytest.fixture(scope="module")
def outcome(tmp_path_factory):
    options = Options(**{**SMALL.__dict__, "out": tmp_path_factory.mktemp("demo")})
    return run_demo(options)


def test_every_planned_call_was_made_and_the_spend_is_exact(outcome):
    truth = outcome.truth
    assert outcome.calls == truth.calls and outcome.errors == truth.failed_calls
    f = figures(outcome)
    assert math.isclose(f["spend"], truth.total, rel_tol=1e-9)
    assert f["unpriced_calls"] == truth.unpriced_calls == 1
    assert f["failed_calls"] == truth.failed_calls > 0


def test_the_processor_shows_each_customers_day_and_the_lorenz_curve(outcome):
    truth, f = outcome.truth, figures(outcome)
    day = {labels[1]: v for (name, labels), v in outcome.gauges.items()
           if name == sc.M_CUSTOMER_TOP_COST.name and labels[0] == "1d"}
    assert day.pop(sc.CUSTOMER_UNATTRIBUTED) == 0
    other = day.pop(sc.CUSTOMER_OTHER)
    ranked = sorted(truth.customers.items(), key=lambda kv: -kv[1])
    top = dict(ranked[:len(day)])
    assert day.keys() == top.keys()  # the top K, exactly
    assert all(math.isclose(day[c], top[c], rel_tol=1e-9) for c in day)
    assert math.isclose(other, sum(v for _, v in ranked[len(day):]), rel_tol=1e-9,
                        abs_tol=1e-12)
    for (percent, got), (_, want) in zip(f["lorenz"], f["truth_lorenz"]):
        assert math.isclose(got, want, rel_tol=1e-9), percent
    active = outcome.gauges[(sc.M_CUSTOMER_ACTIVE.name, ("1d",))]
    assert active == len(truth.customers)


def test_conversations_traces_and_the_runaway_are_rolled_up(outcome):
    truth, h = outcome.truth, outcome.histograms
    conversations = h[(sc.M_CONVERSATION_COST.name, ())]
    assert conversations.count == len(truth.conversations)
    assert math.isclose(conversations.sum, sum(truth.conversations.values()), rel_tol=1e-9)
    assert h[(sc.M_TRACE_COST.name, ())].count == truth.traces
    assert len(outcome.runaway_ids) == truth.runaway_traces == 1
    turns = figures(outcome)["by_turn"]
    assert [label for label, *_ in turns][:3] == ["1", "2", "3-4"]
    assert turns[-1][2] > 2 * turns[0][2]  # context grows with the turn index


def test_the_windows_show_the_off_hours_cohort(outcome):
    f = figures(outcome)
    hours = dict(f["per_active_by_hour"])
    assert any(int(hour) < 6 for hour in hours) and any(int(hour) >= 6 for hour in hours)
    assert f["night_per_active"] > f["day_per_active"]


def test_sampling_shrinks_the_tax_and_keeps_the_cost_exact_and_the_tail(outcome, tmp_path):
    """The same day with the app sampling traces at 20 % (top-1 % and failed traces kept by
    rule): the spend is still exact (metrics of every call), every exported span reaches
    the processor, the telemetry bill shrinks with the spans, the runaway is still caught,
    and the processor's weighted estimate of the day's spend is near the truth (measured
    +8 % and +19 % on two runs: trace ids are random, so the estimate is; the bound is wide)."""
    sampled = run_demo(Options(**{**SMALL.__dict__, "out": tmp_path, "sample_rate": 0.2}))
    truth, f, full = sampled.truth, figures(sampled), figures(outcome)
    assert math.isclose(f["spend"], truth.total, rel_tol=1e-9)
    assert f["sampled"] and not full["sampled"]
    assert full["spans_exported"] == full["spans_seen"] == f["spans_seen"]
    assert f["spans_exported"] == sampled.received_spans < 0.5 * f["spans_seen"]
    assert f["telemetry_cost"] < 0.5 * full["telemetry_cost"]
    assert len(sampled.runaway_ids) == truth.runaway_traces == 1
    day = [v for (name, labels), v in sampled.gauges.items()
           if name == sc.M_CUSTOMER_TOP_COST.name and labels[0] == "1d"]
    assert 0.6 * truth.total < sum(day) < 1.4 * truth.total


def test_quantile_interpolates_like_prometheus():
    # 10 observations: 9 in (0.1, 0.2], 1 in (1, 2]: the 9th is the top of (0.1, 0.2].
    assert quantile(0.9, (0.1, 0.2, 1.0, 2.0), (0, 9, 0, 1, 0)) == pytest.approx(0.2)
    assert quantile(0.5, (0.1, 0.2, 1.0, 2.0), (0, 9, 0, 1, 0)) == pytest.approx(0.1 + 0.1 * 5 / 9)
    assert quantile(0.5, (1.0,), (0, 0)) is None


def test_the_plan_is_seeded_and_has_its_tail():
    a, b = wl.plan(7, day_start_ns=0), wl.plan(7, day_start_ns=0)
    assert a == b and wl.plan(8, day_start_ns=0) != a
    truth = a.truth()
    assert 0.30 <= truth.top_share(1.0) <= 0.50  # a few accounts carry the spend
    assert truth.runaway_traces == 1 and truth.unpriced_calls == 1


def test_the_command_line_prints_the_summary(tmp_path):
    cli = str(Path(sys.executable).with_name("otel-llmcost"))
    result = subprocess.run(
        [cli, "demo", "--duration", "6",
         "--sessions", "40", "--customers", "30", "--out", str(tmp_path), "--sample-rate", "0.5"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "share of spend of the top 1 % of customers" in result.stdout
    assert "Traces were sampled" in result.stdout
    assert (tmp_path / "processor.db").exists()
    printed = subprocess.run(
        [cli, "demo", "--truth",
         "--sessions", "40", "--customers", "30"], capture_output=True, text=True, timeout=60)
    assert printed.returncode == 0, printed.stderr[-3000:]
    assert printed.stdout == (tmp_path / "truth.json").read_text() + "\n"  # the day played


def test_the_html_report_renders_in_headless_chromium_without_errors(outcome, tmp_path):
    """The report, opened in Debian's chromium: no console error, every chart drawn; the
    screenshot is kept in test-artifacts/ (or $LLMCOST_TEST_ARTIFACTS)."""
    chromium = shutil.which("chromium")
    assert chromium, "chromium not found: install Debian's chromium package"
    report = write_report(figures(outcome), tmp_path / "report.html")
    text = report.read_text()
    assert "<script" not in text and "http://" not in text and "https://" not in text
    artifacts = Path(os.environ.get("LLMCOST_TEST_ARTIFACTS", ROOT / "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    screenshot = artifacts / "demo-report.png"
    screenshot.unlink(missing_ok=True)
    common = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
              "--enable-logging=stderr", "--v=0", "--window-size=1400,2200"]
    shot = subprocess.run([*common, f"--screenshot={screenshot}", report.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert screenshot.stat().st_size > 20_000  # a page with charts, not a blank one
    console = [line for line in shot.stderr.splitlines()
               if "CONSOLE" in line or "Uncaught" in line or "Failed to load" in line]
    assert not console, console
    dom = subprocess.run([*common, "--dump-dom", report.as_uri()], capture_output=True,
                         text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count("<svg") == 4 and dom.stdout.count("<rect") > 10
    assert "Lorenz curve" in dom.stdout
