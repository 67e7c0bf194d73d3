"""Tail sampling end to end: the real ``opentelemetry-instrument``, the real OTLP/HTTP exporter.

Each run starts an app from tests/apps under ``opentelemetry-instrument`` with
``OTEL_TRACES_SAMPLER=llmcost`` and exports to an `OtlpSink` in this process; the apps
make real SDK calls over HTTP to the stand-in provider and write a ground truth (trace
ids, kinds, spans started). The runs start together (they are independent processes) and
each is shared by every test that reads it. The assertions compare what arrived at the
sink with the ground truth and with the README's promises ("Sampling: the telemetry bill
is a dial, cost stays exact").
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
from otlp_sink import OtlpSink, SpanRecord

from otel_llmcost import semconv as sc

INSTRUMENT = Path(sys.executable).with_name("opentelemetry-instrument")
APPS = Path(__file__).with_name("apps")
WORKLOAD = APPS / "tail_workload.py"
SERVICE = APPS / "tail_service.py"
HANG_GUARD_S = 300  # only to stop a hung run; never a performance limit

RATE = 0.25
KEEP_COST_USD = 0.25
SLOW_MS = 800
CONTENT_MAX_CHARS = 64
DEFAULT_CONTENT_MAX_CHARS = 2000  # README: LLMCOST_CONTENT_MAX_CHARS default
PROMPT_CHARS = 3000
FLOOD = 20_000
FLOOD_BUFFER = 500
# Measured: with an unbounded buffer the 10,000 flood traces between the two readings
# take ~33 MB (about 3.3 kB each); bounded, the growth is a few kB.
FLOOD_MAX_GROWTH_BYTES = 3_000_000
USD_PER_GB, USD_PER_MILLION_SPANS = 0.5, 2.0

CONTENT_ATTRIBUTES = (sc.GEN_AI_INPUT_MESSAGES, sc.GEN_AI_OUTPUT_MESSAGES,
                      sc.GEN_AI_SYSTEM_INSTRUCTIONS)
RULE_OF_KIND = {"expensive": sc.SAMPLING_RULE_COST, "failing": sc.SAMPLING_RULE_ERROR,
                "slow": sc.SAMPLING_RULE_SLOW}
FRONT, BACK = "tail-front", "tail-back"  # service names of the two-service run

COMMON_ENV = {
    "OTEL_TRACES_SAMPLER": sc.ENTRY_POINT_SAMPLER,
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    "OTEL_METRIC_EXPORT_INTERVAL": "200",
    "OTEL_BSP_SCHEDULE_DELAY": "50",
    # A trace decided at once reaches the batch processor in one burst: a queue that cannot
    # overflow keeps the SDK's own drops out of the "exported whole" assertions.
    "OTEL_BSP_MAX_QUEUE_SIZE": "100000",
    "OTEL_LOGS_EXPORTER": "none",
    "ANTHROPIC_OPEN_TELEMETRY": "false",  # anthropic 2.x would add spans of its own
}
_RULES = {sc.ENV_SAMPLE_RATE: str(RATE), sc.ENV_KEEP_COST_USD: str(KEEP_COST_USD)}
# Runs that make no Anthropic call leave its instrumentor off: importing the anthropic SDK
# takes longer than most runs' whole workload.
_OPENAI_ONLY = {"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": sc.ENTRY_POINT_ANTHROPIC}
_SMALL = {**_OPENAI_ONLY, "WORKLOAD_CHEAP": "60", "WORKLOAD_EXPENSIVE": "2",
          "WORKLOAD_FAILING": "3", "WORKLOAD_PROMPT_CHARS": str(PROMPT_CHARS),
          "WORKLOAD_SEED": "5"}
_SAME = {**_OPENAI_ONLY, "WORKLOAD_CHEAP": "150", "WORKLOAD_EXPENSIVE": "4",
         "WORKLOAD_FAILING": "4", "WORKLOAD_SEED": "11", sc.ENV_KEEP_COST_USD: str(KEEP_COST_USD)}
RUNS: dict[str, dict[str, str]] = {
    # The main mix: OpenAI and Anthropic, rate 0.25, cost and slow rules, gzip-compressed
    # exports, telemetry prices, content kept (the standard variable, also set, must lose).
    "mixed": {**_RULES, sc.ENV_KEEP_SLOW_MS: str(SLOW_MS),
              "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
              sc.ENV_TELEMETRY_USD_PER_GB: str(USD_PER_GB),
              sc.ENV_TELEMETRY_USD_PER_MILLION_SPANS: str(USD_PER_MILLION_SPANS),
              sc.ENV_CAPTURE_CONTENT: sc.CAPTURE_KEPT, sc.ENV_OTEL_CAPTURE_CONTENT: "true",
              sc.ENV_CONTENT_MAX_CHARS: str(CONTENT_MAX_CHARS),
              "WORKLOAD_ANTHROPIC": "1", "WORKLOAD_PROMPT_CHARS": str(PROMPT_CHARS),
              "WORKLOAD_CHEAP": "400", "WORKLOAD_EXPENSIVE": "8", "WORKLOAD_FAILING": "8",
              "WORKLOAD_SLOW": "2", "WORKLOAD_SLOW_DELAY_MS": str(SLOW_MS + 100),
              "WORKLOAD_SEED": "7"},
    # One seeded workload at two rates: the cost metrics must not move. Content: "off"
    # said explicitly, and left to its default.
    "full": {**_SAME, sc.ENV_SAMPLE_RATE: "1", sc.ENV_CAPTURE_CONTENT: sc.CAPTURE_OFF},
    "sparse": {**_SAME, sc.ENV_SAMPLE_RATE: "0.01"},
    "all": {**_RULES, **_SMALL, sc.ENV_CAPTURE_CONTENT: sc.CAPTURE_ALL,
            sc.ENV_CONTENT_MAX_CHARS: str(CONTENT_MAX_CHARS)},
    "otel_var": {**_RULES, **_SMALL, sc.ENV_OTEL_CAPTURE_CONTENT: "true"},
    "flood": {sc.ENV_SAMPLE_RATE: "0.01", sc.ENV_TAIL_BUFFER_SPANS: str(FLOOD_BUFFER),
              "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS":
                  f"{sc.ENTRY_POINT_OPENAI},{sc.ENTRY_POINT_ANTHROPIC}",
              "WORKLOAD_MODE": "flood", "WORKLOAD_FLOOD": str(FLOOD)},
    # Two services: the front (this env) calls the back (same env, its own process).
    "two": {**_RULES, **_OPENAI_ONLY, "WORKLOAD_MODE": "front", "WORKLOAD_CHEAP": "80",
            "WORKLOAD_EXPENSIVE": "6", "WORKLOAD_FAILING": "6", "WORKLOAD_SEED": "3"},
}
CAPTURE_LIMIT = {"mixed": CONTENT_MAX_CHARS, "all": CONTENT_MAX_CHARS,
                 "otel_var": DEFAULT_CONTENT_MAX_CHARS}


# --- running the apps --------------------------------------------------------------------


@dataclass
class Run:
    """What one run exported (per service) and what its apps say they did."""

    name: str
    env: dict[str, str]
    sink: OtlpSink  # stopped; its records stay readable
    truth: dict[str, Any]  # service name -> ground truth
    spans: list[SpanRecord] = field(init=False)

    def __post_init__(self) -> None:
        self.spans = self.sink.spans

    def exported(self, service: str) -> dict[str, list[SpanRecord]]:
        """Exported spans of ``service`` per trace id."""
        out: dict[str, list[SpanRecord]] = defaultdict(list)
        for span in self.spans:
            if span["service"] == service:
                out[span["trace_id"]].append(span)
        return out

    def threshold(self) -> int:
        """The rejection threshold the head wrote (``ot=th``) on probability-kept spans."""
        values = {ot_field(s["trace_state"], "th") for s in self.spans
                  if s["attributes"].get(sc.LLMCOST_SAMPLING_RULE) == sc.SAMPLING_RULE_PROBABILITY}
        assert len(values) == 1 and None not in values, values
        return threshold_of(values.pop())


class Launch:
    """One run's processes: started early, awaited by the first test that needs them."""

    def __init__(self, name: str, provider_url: str) -> None:
        self.name = name
        self.dir = Path(tempfile.mkdtemp(prefix=f"tail-{name}-"))
        self.sink = OtlpSink().__enter__()
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("OTEL_", "LLMCOST_", "WORKLOAD_"))}
        self.env.update(COMMON_ENV, OTEL_EXPORTER_OTLP_ENDPOINT=self.sink.endpoint,
                        WORKLOAD_PROVIDER_URL=provider_url, **RUNS[name])
        self.two = self.env.get("WORKLOAD_MODE") == "front"
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.logs: dict[str, IO[str]] = {}
        self._run: Run | None = None

    def _start(self, service: str, script: Path, **env: str) -> subprocess.Popen[str]:
        # Closed by close(): it outlives this call.
        log = open(self.dir / f"{service}.stderr", "w+", encoding="utf-8")  # noqa: SIM115
        self.logs[service] = log
        proc = subprocess.Popen(
            [str(INSTRUMENT), sys.executable, str(script)], text=True, cwd="/",
            env={**self.env, "OTEL_SERVICE_NAME": service,
                 "WORKLOAD_TRUTH": str(self.dir / f"{service}.json"), **env},
            stdout=subprocess.PIPE if script == SERVICE else subprocess.DEVNULL,
            stderr=self.logs[service])
        self.procs[service] = proc
        return proc

    def start(self) -> None:
        """First phase: the backend of a two-service run, or the app itself."""
        if self.two:
            self._start(BACK, SERVICE)
        else:
            self._start(self.name, WORKLOAD)

    def start_second(self) -> None:
        """Second phase: the front of a two-service run, once the backend listens."""
        if self.two:
            line = self.procs[BACK].stdout.readline()  # type: ignore[union-attr]
            assert line.startswith("LISTENING "), self._stderr(BACK)
            self.backend = f"http://127.0.0.1:{int(line.split()[1])}"
            self._start(FRONT, WORKLOAD, WORKLOAD_BACKEND_URL=self.backend)

    def _stderr(self, service: str) -> str:
        log = self.logs[service]
        log.seek(0)
        return log.read()[-5000:]

    def _wait(self, service: str) -> None:
        proc = self.procs[service]
        try:
            proc.wait(timeout=HANG_GUARD_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        assert proc.returncode == 0, f"{service} exited {proc.returncode}:\n{self._stderr(service)}"

    def result(self) -> Run:
        if self._run is None:
            services = [FRONT, BACK] if self.two else [self.name]
            self._wait(services[0])
            if self.two:
                urllib.request.urlopen(urllib.request.Request(
                    self.backend + "/quit", data=b"", method="POST"), timeout=60).read()
                self._wait(BACK)
            truth = {s: json.loads((self.dir / f"{s}.json").read_text()) for s in services}
            self.close()
            assert not self.sink.errors, self.sink.errors
            self._run = Run(self.name, self.env, self.sink, truth)
        return self._run

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:  # only after a failure elsewhere: do not leave it behind
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        for log in self.logs.values():
            log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        self.sink.__exit__(None, None, None)


class Launches(dict[str, Launch]):
    """Runs by name; one that no selected test announced is started when first asked for."""

    def __init__(self, provider_url: str) -> None:
        super().__init__()
        self.provider_url = provider_url

    def start(self, names: list[str]) -> None:
        for name in names:
            self[name] = Launch(name, self.provider_url)
            self[name].start()
        for name in names:
            self[name].start_second()

    def __missing__(self, name: str) -> Launch:
        self.start([name])
        return self[name]


@pytest.fixture(scope="module")
def runs(request: pytest.FixtureRequest, provider: Any) -> Iterator[Launches]:
    """Start, all at once, every run that a selected test of this module asks for."""
    wanted = {item.callspec.params["name"] for item in request.session.items
              if item.module is request.module and hasattr(item, "callspec")
              and "name" in item.callspec.params}
    launches = Launches(provider.url)
    try:
        launches.start([name for name in RUNS if name in wanted])
        yield launches
    finally:
        for launch in launches.values():
            launch.close()


@pytest.fixture
def run(runs: Launches, name: str) -> Run:
    return runs[name].result()


# --- reading what arrived ------------------------------------------------------------------


def ot_field(trace_state: str, key: str) -> str | None:
    """A sub-key of the ``ot`` member of a W3C tracestate string (``ot=th:c;rv:…``)."""
    for member in trace_state.split(","):
        vendor, _, value = member.strip().partition("=")
        if vendor == "ot":
            for sub in value.split(";"):
                k, _, v = sub.partition(":")
                if k == key:
                    return v
    return None


def threshold_of(th: str) -> int:
    """Specification: ``th`` is the 56-bit rejection threshold, trailing zeros removed."""
    return int(th.ljust(14, "0"), 16)


def head_picks(trace_id: str, threshold: int) -> bool:
    """Specification: a root is kept iff the trace id's low 56 bits reach the threshold."""
    return int(trace_id, 16) & ((1 << 56) - 1) >= threshold


def rule(spans: list[SpanRecord]) -> str:
    """The one rule every span of a (part of a) trace carries."""
    rules = {s["attributes"].get(sc.LLMCOST_SAMPLING_RULE) for s in spans}
    assert len(rules) == 1, rules
    return rules.pop()


def is_llm(span: SpanRecord) -> bool:
    return span["scope"] == sc.INSTRUMENTATION_SCOPE


def duration_ms(spans: list[SpanRecord]) -> float:
    return (max(s["end_ns"] for s in spans) - min(s["start_ns"] for s in spans)) / 1e6


def assert_whole(spans: list[SpanRecord], expected: int, what: str) -> None:
    assert len(spans) == expected, f"{what}: {len(spans)} of {expected} spans exported"
    assert len({s["span_id"] for s in spans}) == expected, f"{what}: duplicate spans"


def assert_kept_by(spans: list[SpanRecord], expected_rule: str, what: str) -> None:
    for span in spans:
        attributes = span["attributes"]
        assert attributes.get(sc.LLMCOST_SAMPLING_RULE) == expected_rule, (what, span)
        assert attributes.get(sc.LLMCOST_SAMPLING_ADJUSTED_COUNT) == 1.0, (what, span)
        assert ot_field(span["trace_state"], "th") is None, (what, span["trace_state"])


def binomial_ok(kept: int, n: int, p: float) -> bool:
    return abs(kept - n * p) <= 5 * math.sqrt(n * p * (1 - p))


# --- a. rule-kept traces are exported whole; no trace is ever partial ---------------------


@pytest.mark.parametrize("name", ["mixed", "sparse", "all"])
def test_rule_matching_traces_are_exported_whole_with_their_rule(run: Run, name: str):
    exported = run.exported(name)
    kinds = Counter(t["kind"] for t in run.truth[name])
    for trace in run.truth[name]:
        if trace["kind"] in RULE_OF_KIND:
            what = f'{trace["kind"]} trace {trace["trace_id"]}'
            spans = exported.get(trace["trace_id"], [])
            assert_whole(spans, trace["spans"], what)
            assert_kept_by(spans, RULE_OF_KIND[trace["kind"]], what)
    expected_kinds = {"expensive", "failing"} | ({"slow"} if sc.ENV_KEEP_SLOW_MS in run.env
                                                 else set())
    assert expected_kinds <= set(kinds), kinds  # the workload really had them


@pytest.mark.parametrize("name", ["mixed", "full", "sparse", "all", "otel_var"])
def test_no_exported_trace_is_partial(run: Run, name: str):
    truth = {t["trace_id"]: t for t in run.truth[name]}
    exported = run.exported(name)
    assert exported, "nothing was exported at all"
    for trace_id, spans in exported.items():
        assert trace_id in truth, f"exported trace {trace_id} that the app did not make"
        assert_whole(spans, truth[trace_id]["spans"], f'{truth[trace_id]["kind"]} {trace_id}')
        ids = {s["span_id"] for s in spans}
        roots = [s for s in spans if not s["parent_span_id"]]
        assert len(roots) == 1 and roots[0]["name"] == "agent.run"
        assert all(s["parent_span_id"] in ids for s in spans if s is not roots[0])
        rule(spans)  # one rule for the whole trace
        assert len({s["attributes"].get(sc.LLMCOST_SAMPLING_ADJUSTED_COUNT) for s in spans}) == 1


@pytest.mark.parametrize("name", ["full"])
def test_the_workload_is_what_the_rules_need(run: Run, name: str):
    """At rate 1 every trace is exported: check the premises of the other tests on it."""
    exported = run.exported(name)
    assert set(exported) == {t["trace_id"] for t in run.truth[name]}
    for trace in run.truth[name]:
        spans = exported[trace["trace_id"]]
        costs = [s["attributes"][sc.GEN_AI_USAGE_COST_AMOUNT] for s in spans
                 if is_llm(s) and s["status"] != "ERROR"]
        errors = [s for s in spans if s["status"] == "ERROR"]
        assert all(cost < KEEP_COST_USD for cost in costs)  # no single call is enough...
        assert (sum(costs) >= KEEP_COST_USD) == (trace["kind"] == "expensive")  # ...the sum is
        assert bool(errors) == (trace["kind"] == "failing")
        assert all(s["attributes"][sc.LLMCOST_SAMPLING_ADJUSTED_COUNT] == 1.0 for s in spans)


@pytest.mark.parametrize("name", ["full"])
def test_at_rate_one_nothing_waits_and_every_span_counts_once(run: Run, name: str):
    """README, Re-weighting: at rate 1 nothing is buffered; every trace is exported as
    ``probability`` with adjusted count 1, which is also a rule-kept trace's weight."""
    exported = run.exported(name)
    for trace in run.truth[name]:
        spans = exported[trace["trace_id"]]
        assert rule(spans) == sc.SAMPLING_RULE_PROBABILITY, trace["kind"]
        assert {s["attributes"][sc.LLMCOST_SAMPLING_ADJUSTED_COUNT] for s in spans} == {1.0}


# --- b. ordinary traces follow the head probability ---------------------------------------


@pytest.mark.parametrize("name", ["mixed"])
def test_ordinary_traces_are_kept_at_the_sample_rate(run: Run, name: str):
    exported = run.exported(name)
    threshold = run.threshold()
    assert math.isclose(1 - threshold / 2**56, RATE, rel_tol=1e-4)
    cheap = [t for t in run.truth[name] if t["kind"] == "cheap"]
    kept = 0
    considered = 0
    for trace in cheap:
        spans = exported.get(trace["trace_id"], [])
        if spans and rule(spans) == sc.SAMPLING_RULE_SLOW:
            # A stalled machine can make a cheap trace slow: legitimately kept, not counted.
            assert duration_ms(spans) >= SLOW_MS
            continue
        considered += 1
        picked = head_picks(trace["trace_id"], threshold)
        assert bool(spans) == picked, f'cheap trace {trace["trace_id"]}: head {picked}'
        if spans:
            kept += 1
            for span in spans:
                assert span["attributes"][sc.LLMCOST_SAMPLING_RULE] == sc.SAMPLING_RULE_PROBABILITY
                assert math.isclose(span["attributes"][sc.LLMCOST_SAMPLING_ADJUSTED_COUNT],
                                    1 / RATE, rel_tol=1e-5)
                assert ot_field(span["trace_state"], "th") is not None
    assert considered >= len(cheap) - 5
    assert binomial_ok(kept, considered, RATE), (kept, considered)


# --- c. two services share a trace --------------------------------------------------------


def _two_service_parts(run: Run) -> list[tuple[dict[str, Any], list[SpanRecord], list[SpanRecord]]]:
    front, back = run.exported(FRONT), run.exported(BACK)
    backs = {t["trace_id"]: t for t in run.truth[BACK]}
    assert set(backs) == {t["trace_id"] for t in run.truth[FRONT]}, "one trace, two services"
    assert set(front) | set(back) <= set(backs)
    parts = []
    for trace in run.truth[FRONT]:
        a, b = front.get(trace["trace_id"], []), back.get(trace["trace_id"], [])
        if a:
            assert_whole(a, trace["spans"], f"front part of {trace}")
        if b:
            assert_whole(b, backs[trace["trace_id"]]["spans"], f"back part of {trace}")
        parts.append((trace, a, b))
    return parts


@pytest.mark.parametrize("name", ["two"])
def test_both_services_make_the_same_head_decision(run: Run, name: str):
    threshold = run.threshold()
    outcomes = Counter()
    for trace, a, b in _two_service_parts(run):
        if trace["kind"] != "cheap":
            continue
        assert bool(a) == bool(b) == head_picks(trace["trace_id"], threshold), trace
        outcomes[bool(a)] += 1
        if a:
            assert rule(a) == rule(b) == sc.SAMPLING_RULE_PROBABILITY
            assert {ot_field(s["trace_state"], "th") for s in a + b} == \
                {ot_field(a[0]["trace_state"], "th")}
            (call,) = [s for s in a if s["name"] == "call.backend"]
            (server,) = [s for s in b if s["name"] == "backend.handle"]
            assert server["parent_span_id"] == call["span_id"]  # one trace across the wire
    assert outcomes[True] and outcomes[False], outcomes  # both decisions were exercised


@pytest.mark.parametrize("name", ["two"])
def test_a_downstream_failure_is_kept_on_both_sides(run: Run, name: str):
    failing = [(t, a, b) for t, a, b in _two_service_parts(run) if t["kind"] == "failing"]
    assert failing
    for trace, a, b in failing:
        assert a and b, f"failing trace {trace['trace_id']}: front {len(a)}, back {len(b)}"
        assert_kept_by(a, sc.SAMPLING_RULE_ERROR, "front")
        assert_kept_by(b, sc.SAMPLING_RULE_ERROR, "back")
        assert [s["status"] for s in a if s["name"] == "call.backend"] == ["ERROR"]


@pytest.mark.parametrize("name", ["two"])
def test_a_downstream_expensive_call_keeps_only_the_downstream_part(run: Run, name: str):
    """README, Across processes: the front does not see the back's cost; its head decides."""
    threshold = run.threshold()
    expensive = [(t, a, b) for t, a, b in _two_service_parts(run) if t["kind"] == "expensive"]
    assert expensive
    for trace, a, b in expensive:
        assert b, f"expensive downstream part of {trace['trace_id']} was dropped"
        assert_kept_by(b, sc.SAMPLING_RULE_COST, "back")
        assert bool(a) == head_picks(trace["trace_id"], threshold)
        if a:
            assert rule(a) == sc.SAMPLING_RULE_PROBABILITY


# --- d. cost metrics are exact whatever the rate ------------------------------------------


@pytest.mark.parametrize("name", ["full"])
def test_cost_metrics_are_identical_at_rate_1_and_rate_0_01(runs: Launches, run: Run,
                                                             name: str):
    sparse = runs["sparse"].result()
    assert [t["kind"] for t in run.truth["full"]] == [t["kind"] for t in sparse.truth["sparse"]]
    full_cost = run.sink.total(sc.METRIC_COST)
    assert full_cost > 0
    assert sparse.sink.total(sc.METRIC_COST) == full_cost  # to the last bit, not "close"
    assert sparse.sink.by_attribute(sc.METRIC_COST, sc.LLMCOST_COST_COMPONENT) == \
        run.sink.by_attribute(sc.METRIC_COST, sc.LLMCOST_COST_COMPONENT)
    assert sparse.sink.by_attribute(sc.METRIC_TOKENS, sc.LLMCOST_TOKEN_KIND) == \
        run.sink.by_attribute(sc.METRIC_TOKENS, sc.LLMCOST_TOKEN_KIND)
    # At rate 1 every span is exported, so the metric equals the spans' sum...
    span_cost = sum(s["attributes"].get(sc.GEN_AI_USAGE_COST_AMOUNT, 0.0) for s in run.spans)
    assert math.isclose(full_cost, span_cost, rel_tol=1e-9)
    # ...and at 1 % far fewer spans were exported, yet the metric did not move.
    assert len(sparse.spans) < len(run.spans) / 3


@pytest.mark.parametrize("name", ["full"])
def test_adjusted_counts_reweight_to_the_true_totals_at_rate_1(run: Run, name: str):
    total = sum(t["spans"] for t in run.truth[name])
    assert sum(s["attributes"][sc.LLMCOST_SAMPLING_ADJUSTED_COUNT] for s in run.spans) == total


# --- e. content only where the policy allows ----------------------------------------------


def text_parts(value: Any) -> list[str]:
    """Every ``{"type": "text", "content": ...}`` part in a GenAI messages JSON value."""
    if isinstance(value, list):
        return [text for item in value for text in text_parts(item)]
    if isinstance(value, dict):
        own = [value["content"]] if value.get("type") == "text" and isinstance(
            value.get("content"), str) else []
        return own + [text for item in value.values() for text in text_parts(item)]
    return []


def assert_content(span: SpanRecord, texts: list[str], limit: int) -> None:
    """Input (and, for a successful call, output) messages present; README: "each text is
    cut to LLMCOST_CONTENT_MAX_CHARS characters per attribute"."""
    attributes = span["attributes"]
    assert sc.GEN_AI_INPUT_MESSAGES in attributes, span
    if span["status"] != "ERROR":
        assert sc.GEN_AI_OUTPUT_MESSAGES in attributes, span
    parts = {key: text_parts(json.loads(attributes[key]))  # still valid JSON once cut
             for key in CONTENT_ATTRIBUTES if key in attributes}
    for key, found in parts.items():
        assert found and sum(map(len, found)) <= limit, (key, [p[:40] for p in found])
    # The prompt alone is longer than the budget: the input carries exactly ``limit``.
    assert sum(map(len, parts[sc.GEN_AI_INPUT_MESSAGES])) == limit
    for key in (sc.GEN_AI_INPUT_MESSAGES, sc.GEN_AI_SYSTEM_INSTRUCTIONS):
        for part in parts.get(key, []):
            assert any(text.startswith(part) for text in texts), (key, part[:80])


@pytest.mark.parametrize("name", ["full", "sparse"])
def test_no_content_unless_asked(run: Run, name: str):
    assert run.spans
    for span in run.spans:
        assert not set(CONTENT_ATTRIBUTES) & set(span["attributes"]), span


@pytest.mark.parametrize("name", ["mixed"])
def test_kept_content_only_on_traces_a_rule_kept(run: Run, name: str):
    texts = {t["trace_id"]: t["texts"] for t in run.truth[name]}
    checked = Counter()
    for trace_id, spans in run.exported(name).items():
        kept_by = rule(spans)
        for span in spans:
            if is_llm(span) and kept_by in sc.SAMPLING_RULES:
                assert_content(span, texts[trace_id], CAPTURE_LIMIT[name])
            else:
                assert not set(CONTENT_ATTRIBUTES) & set(span["attributes"]), (kept_by, span)
            checked[kept_by, is_llm(span)] += 1
    assert checked[sc.SAMPLING_RULE_PROBABILITY, True], "no probability-kept LLM span to check"
    assert checked[sc.SAMPLING_RULE_COST, True] and checked[sc.SAMPLING_RULE_ERROR, True]


@pytest.mark.parametrize("name", ["all", "otel_var"])
def test_all_content_on_every_exported_llm_span(run: Run, name: str):
    texts = {t["trace_id"]: t["texts"] for t in run.truth[name]}
    rules = Counter()
    for trace_id, spans in run.exported(name).items():
        for span in spans:
            if is_llm(span):
                assert_content(span, texts[trace_id], CAPTURE_LIMIT[name])
                rules[rule(spans)] += 1
            else:
                assert not set(CONTENT_ATTRIBUTES) & set(span["attributes"]), span
    assert rules[sc.SAMPLING_RULE_PROBABILITY] and rules[sc.SAMPLING_RULE_COST], rules


# --- f. the buffer bound holds under a flood ----------------------------------------------


@pytest.mark.parametrize("name", ["flood"])
def test_buffer_gauge_never_exceeds_its_bound(run: Run, name: str):
    observed = [p["value"] for p in run.sink.points(sc.METRIC_SAMPLING_BUFFERED_SPANS)]
    assert observed and max(observed) > 0, observed  # observed mid-flood, not only at exit
    assert max(observed) <= FLOOD_BUFFER, max(observed)


@pytest.mark.parametrize("name", ["flood"])
def test_flood_traces_are_decided_early(run: Run, name: str):
    overflows = run.sink.total(sc.METRIC_SAMPLING_OVERFLOWS)
    timeouts = run.sink.total(sc.METRIC_SAMPLING_TIMEOUTS)
    # No flood trace ever ends and at most FLOOD_BUFFER are tracked at once, so all but
    # those were decided early: by overflow (or by timeout, on a machine slow enough).
    assert overflows > 0
    assert FLOOD - FLOOD_BUFFER <= overflows + timeouts <= FLOOD, (overflows, timeouts)
    seen = run.sink.total(sc.METRIC_TELEMETRY_SPANS_SEEN)
    assert FLOOD <= seen <= 2 * FLOOD, seen  # every child ended; roots started, never ended


@pytest.mark.parametrize("name", ["flood"])
def test_flood_memory_stays_bounded(run: Run, name: str):
    memory = run.truth[name]["memory"]
    growth = memory["end"] - memory["half"]
    assert growth <= FLOOD_MAX_GROWTH_BYTES, f"{growth / 1e6:.1f} MB over {FLOOD // 2} traces"


# --- the tax adds up ------------------------------------------------------------------------


SELF_METRIC_CASES = [("mixed", "mixed"), ("full", "full"), ("sparse", "sparse"),
                     ("all", "all"), ("two", FRONT), ("two", BACK)]


@pytest.mark.parametrize("name,service", SELF_METRIC_CASES)
def test_self_metrics_add_up(run: Run, name: str, service: str):
    sink = run.sink
    seen = sink.total(sc.METRIC_TELEMETRY_SPANS_SEEN, service)
    exported = sink.by_attribute(sc.METRIC_TELEMETRY_SPANS_EXPORTED, sc.LLMCOST_SAMPLING_RULE,
                                 service)
    dropped = sink.by_attribute(sc.METRIC_TELEMETRY_SPANS_DROPPED,
                                sc.LLMCOST_SAMPLING_DROP_REASON, service)
    buffered = sink.total(sc.METRIC_SAMPLING_BUFFERED_SPANS, service)
    started = sum(t["spans"] for t in run.truth[service])
    arrived = Counter(s["attributes"].get(sc.LLMCOST_SAMPLING_RULE) for s in run.spans
                      if s["service"] == service)
    assert buffered == 0  # every trace ended
    assert seen == started
    assert seen == sum(exported.values()) + sum(dropped.values()) + buffered
    assert {k: v for k, v in exported.items() if v} == dict(arrived)  # per rule, exactly
    assert set(dropped) <= set(sc.DROP_REASONS)


@pytest.mark.parametrize("name", ["mixed"])
def test_telemetry_bytes_and_cost_follow_what_was_exported(run: Run, name: str):
    sink = run.sink
    estimated = sink.total(sc.METRIC_TELEMETRY_BYTES)
    assert 0.5 <= estimated / sink.trace_bytes <= 2.0, (estimated, sink.trace_bytes)
    spans = sum(sink.by_attribute(sc.METRIC_TELEMETRY_SPANS_EXPORTED,
                                  sc.LLMCOST_SAMPLING_RULE).values())
    assert math.isclose(sink.total(sc.METRIC_TELEMETRY_COST),
                        estimated * USD_PER_GB / 1e9 + spans * USD_PER_MILLION_SPANS / 1e6,
                        rel_tol=1e-6)
