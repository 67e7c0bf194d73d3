"""Restarts of the real ``otel-llmcost-processor``: what a checkpoint carries, what is lost.

The promise under test: state is checkpointed to SQLite, so a ``kill -9`` loses nothing
but what arrived after the last checkpoint, SIGTERM loses nothing at all, and a state
file that cannot be used never stops the processor. Each scenario runs the console script
as a subprocess configured only by ``LLMCOST_PROCESSOR_*`` variables, feeds it one seeded
stream of OTLP/HTTP protobuf requests (conversations of several turns, each turn an agent
trace of LLM calls carrying the otel-llmcost attributes, its spans split over two requests
so that some trace is always half-received at a cut), and compares what its Prometheus
endpoint shows once every trace and conversation has closed with an uninterrupted
processor fed the same stream. The stream scenarios run concurrently: they mostly wait
for conversations to go idle, and one after another they would take a minute.
"""

from __future__ import annotations

import math
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Self, TypeVar

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    InstrumentationScope,
    KeyValue,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from prometheus_client.parser import text_string_to_metric_families

from otel_llmcost import semconv as sc
from otel_llmcost.processor.engine import Config, Engine
from otel_llmcost.processor.records import TOOL_OPERATION
from otel_llmcost.processor.store import Store, read_checkpoint

COMMAND = Path(sys.executable).with_name(sc.PROCESSOR_COMMAND)
WAIT_S = 60.0  # only against a hang: every wait polls for a condition
S = 1_000_000_000
HOUR = 3600 * S
# Far longer than a restart gap here (a checkpoint wait plus a process start: about a
# second, several on a machine loaded with other tests), so conversations and root-less
# traces stay open across a restart, as in a real deployment where the idle timeouts are
# minutes; short enough to wait for at the end.
RESTART_SAFE_S = 10.0
SETTINGS: dict[str, object] = {
    "grpc_endpoint": "off",
    "checkpoint_s": 0.2,
    "trace_wait_s": 0.2,
    "trace_idle_s": RESTART_SAFE_S,
    "conversation_idle_s": RESTART_SAFE_S,
    "window_grace_s": 3 * 86400,  # no customer window closes during a test
    "runaway_llm_calls": 6,
    "runaway_cost_usd": 1.0,
}
NO_CHECKPOINT = {"checkpoint_s": 3600}  # no periodic checkpoint during the test
CUSTOMERS = ("acme", "globex", "initech", "umbrella", "hooli", None)  # None: unattributed
ROLLUP_FAMILIES = frozenset(m.prometheus.removesuffix("_total") for m in sc.ROLLUP_METRICS)

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]  # (sample name, labels) → value
T = TypeVar("T")


# --- the stream ------------------------------------------------------------------------

class Request(NamedTuple):
    """One OTLP/HTTP export request of the stream, and what it spends per customer."""

    body: bytes  # a serialized ExportTraceServiceRequest
    spans: int
    spend: tuple[tuple[str, float], ...]  # (customer or __unattributed__, cost × weight)


@dataclass(frozen=True)
class Stream:
    requests: list[Request]
    conversations: int
    trace_weight: float  # traces, weighted by their adjusted count


def _attribute(key: str, value: str | float) -> KeyValue:
    if isinstance(value, str):
        return KeyValue(key=key, value=AnyValue(string_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(double_value=value))


class Trace(NamedTuple):
    """One agent trace of the stream."""

    spans: list[Span]  # children first, the root last
    spend: list[tuple[str, float]]  # (customer or __unattributed__, cost × weight) per call
    weight: float


def agent_trace(rng: random.Random, index: int, start_ns: int, conversation: str | None,
                customer: str | None, turn: int) -> Trace:
    """One turn: a root agent span over LLM calls and a tool call, children first (spans
    are exported as they end). Every 11th trace makes too many LLM calls and every 13th
    one very expensive call, so that both runaway reasons occur."""
    trace_id = (rng.getrandbits(127) | 1).to_bytes(16, "big")
    span_ids = (index * 100 + n for n in range(1, 100))  # unique in the stream, never 0
    root_id = next(span_ids).to_bytes(8, "big")
    weight = 4.0 if rng.random() < 0.25 else 1.0
    common: dict[str, str | float] = {sc.LLMCOST_SAMPLING_ADJUSTED_COUNT: weight}
    if conversation:
        common[sc.GEN_AI_CONVERSATION_ID] = conversation
    if customer:
        common[sc.LLMCOST_CUSTOMER_ID] = customer
    spans, spend = [], []
    calls = 7 if index % 11 == 5 else rng.randint(1, 4)
    for call in range(calls):
        cost = 1.5 if index % 13 == 7 and call == 0 else rng.paretovariate(1.2) / 200
        at = start_ns + (call + 1) * S // 10
        spans.append(_proto_span(trace_id, next(span_ids).to_bytes(8, "big"), root_id, "chat",
                                 at, at + S // 20, {
                                     sc.GEN_AI_OPERATION_NAME: sc.OP_CHAT,
                                     sc.LLMCOST_PRICING_STATUS: sc.STATUS_EXACT,
                                     sc.GEN_AI_USAGE_COST_AMOUNT: cost,
                                     sc.GEN_AI_USAGE_INPUT_TOKENS: 400 * turn + rng.randrange(200),
                                     sc.GEN_AI_USAGE_OUTPUT_TOKENS: rng.randrange(50, 500),
                                     sc.LLMCOST_RETRIES: int(rng.random() < 0.2), **common}))
        spend.append((customer or sc.CUSTOMER_UNATTRIBUTED, cost * weight))
    first_call = spans[0]
    spans.insert(0, _proto_span(trace_id, next(span_ids).to_bytes(8, "big"), first_call.span_id,
                                "execute_tool", first_call.start_time_unix_nano,
                                first_call.start_time_unix_nano + S // 50,
                                {sc.GEN_AI_OPERATION_NAME: TOOL_OPERATION,
                                 sc.LLMCOST_SAMPLING_ADJUSTED_COUNT: weight}))
    spans.append(_proto_span(trace_id, root_id, b"", "invoke_agent", start_ns,
                             start_ns + (calls + 2) * S // 10,
                             {sc.GEN_AI_OPERATION_NAME: "invoke_agent",
                              sc.LLMCOST_SAMPLING_ADJUSTED_COUNT: weight}))
    return Trace(spans, spend, weight)


def _proto_span(trace_id: bytes, span_id: bytes, parent: bytes, name: str, start_ns: int,
                end_ns: int, attributes: dict[str, str | float]) -> Span:
    return Span(trace_id=trace_id, span_id=span_id, parent_span_id=parent, name=name,
                kind=Span.SPAN_KIND_INTERNAL, start_time_unix_nano=start_ns,
                end_time_unix_nano=end_ns,
                attributes=[_attribute(k, v) for k, v in attributes.items()])


def _body(spans: Sequence[Span]) -> bytes:
    resource = Resource(attributes=[_attribute("service.name", "restart-test")])
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource=resource, scope_spans=[ScopeSpans(
            scope=InstrumentationScope(name="restart-test"), spans=spans)])]
    ).SerializeToString()


def build_stream(seed: int, base_ns: int) -> Stream:
    """Eight conversations of 3–6 turns, interleaved turn by turn, a conversation-less
    trace after every fifth turn; request k carries the children of trace k and the root
    of trace k-1, so every cut leaves one trace open without its root."""
    rng = random.Random(seed)
    conversations = [(f"conversation-{n}", rng.choice(CUSTOMERS), rng.randint(3, 6))
                     for n in range(8)]
    turns = [(cid, customer, turn) for turn in range(1, 7)
             for cid, customer, count in conversations if turn <= count]
    traces: list[Trace] = []
    for number, (cid, customer, turn) in enumerate(turns):
        plan = [(cid, customer, turn)]
        if number % 5 == 4:
            plan.append((None, rng.choice(CUSTOMERS), 1))
        for conversation, who, index in plan:
            traces.append(agent_trace(rng, len(traces), base_ns + len(traces) * 2 * S,
                                      conversation, who, index))
    requests, previous_root = [], None
    for trace in traces:
        body = trace.spans[:-1] + ([previous_root] if previous_root is not None else [])
        requests.append(Request(_body(body), len(body), tuple(trace.spend)))
        previous_root = trace.spans[-1]
    requests.append(Request(_body([previous_root]), 1, ()))
    weights = sum(trace.weight for trace in traces)
    return Stream(requests, len(conversations), weights)


def spend(requests: Sequence[Request]) -> dict[str, float]:
    """Customer spend, summed in stream order (the order the engine sums it in)."""
    out: dict[str, float] = {}
    for request in requests:
        for customer, amount in request.spend:
            out[customer] = out.get(customer, 0.0) + amount
    return out


# --- the processor as a subprocess ------------------------------------------------------

_PORTS = threading.Lock()  # scenarios start processors concurrently: no port handed out twice


def wait_for(condition: Callable[[], T | None], what: str,
             process: ProcessorProcess | None = None) -> T:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if process is not None:
            process.check_alive()
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class ProcessorProcess:
    """One ``otel-llmcost-processor`` subprocess on free loopback ports."""

    def __init__(self, state_path: Path, name: str, **settings: object) -> None:
        self.state_path = state_path
        self.log_path = state_path.with_name(f"{name}.log")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMCOST_", "OTEL_"))}
        with _PORTS:
            with closing(socket.socket()) as http, closing(socket.socket()) as metrics:
                http.bind(("127.0.0.1", 0))
                metrics.bind(("127.0.0.1", 0))
                self.http_port = http.getsockname()[1]
                self.metrics_port = metrics.getsockname()[1]
            values = {**SETTINGS, "state_path": state_path,
                      "http_endpoint": f"127.0.0.1:{self.http_port}",
                      "metrics_endpoint": f"127.0.0.1:{self.metrics_port}", **settings}
            env.update({sc.ENV_PROCESSOR_PREFIX + k.upper(): str(v) for k, v in values.items()})
            with self.log_path.open("wb") as log:
                self.process = subprocess.Popen([str(COMMAND)], env=env, cwd=state_path.parent,
                                                stdout=log, stderr=subprocess.STDOUT)
            try:  # holding the lock: the ports are taken when the next scenario picks
                wait_for(self._scrape_or_none, f"{name} to serve", self)  # receivers first
            except BaseException:
                self.close()
                raise

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise AssertionError(f"the processor exited ({self.process.returncode}):\n"
                                 f"{self.log()}")

    def _scrape_or_none(self) -> dict[str, Any] | None:
        try:
            return self.scrape()
        except OSError:
            return None

    def scrape(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        return {family.name: family for family in text_string_to_metric_families(text)}

    def send(self, requests: Sequence[Request]) -> None:
        """Export each request and check it was accepted whole (no partial success)."""
        for request in requests:
            post = urllib.request.Request(
                f"http://127.0.0.1:{self.http_port}/v1/traces", data=request.body,
                headers={"Content-Type": "application/x-protobuf"})
            with urllib.request.urlopen(post, timeout=10) as response:
                assert response.status == 200
                answer = ExportTraceServiceResponse.FromString(response.read())
            assert not answer.partial_success.rejected_spans, answer

    def drained(self, spans: int) -> dict[str, Any] | None:
        """A scrape showing ``spans`` received and none still queued for the engine.

        Received spans are queued before the request is answered and counted, and the
        counter is read before the queue: so every one of them had been taken off the
        queue by the engine thread when this scrape read an empty queue."""
        families = self.scrape()
        if (total(families, sc.M_PROCESSOR_RECEIVED_SPANS) == spans
                and total(families, sc.M_PROCESSOR_QUEUE) == 0):
            return families
        return None

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(timeout=WAIT_S) == 0, self.log()

    def kill(self) -> None:
        self.process.kill()  # SIGKILL: no handler, no last checkpoint
        self.process.wait(timeout=WAIT_S)

    def close(self) -> None:
        """Whatever happened in the test, leave no process behind."""
        if self.process.poll() is None:
            self.kill()


def total(families: dict[str, Any], metric: sc.MetricDef, suffix: str = "",
          **labels: str) -> float:
    wanted = {sc.prometheus_label(k): v for k, v in labels.items()}
    return sum(s.value for s in families[metric.prometheus.removesuffix("_total")].samples
               if s.name == metric.prometheus + suffix
               and all(s.labels.get(k) == v for k, v in wanted.items()))


def rollups(families: dict[str, Any]) -> Series:
    """Every sample of the engine's metrics (not the per-process service counters)."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for name, family in families.items() if name in ROLLUP_FAMILIES
            for s in family.samples}


def top_cost(series: Series) -> dict[tuple[str, str], float]:
    """(window, customer) → spend in the current window."""
    name = sc.M_CUSTOMER_TOP_COST.prometheus
    return {(dict(labels)["llmcost_window"], dict(labels)["llmcost_customer_id"]): value
            for (sample, labels), value in series.items() if sample == name}


def wait_for_a_checkpoint_covering(process: ProcessorProcess, spans: int) -> None:
    """Wait for a checkpoint that holds everything sent so far (``spans`` spans).

    Once a scrape shows every span received and the queue empty (see `drained`), every
    span had been taken by an engine iteration before the scrape returned. An iteration
    saves with ``saved_ns`` = the clock it read after its take, and the next iteration's
    take starts only after that save; so a checkpoint saved after the scrape returned was
    made by the iteration that took the last span or by a later one, and holds it. Engine
    and test read the same wall clock (``time.time_ns``).
    """
    wait_for(lambda: process.drained(spans), "every span to reach the engine", process)
    after = time.time_ns()
    wait_for(lambda: (c := read_checkpoint(process.state_path)) and c[1] > after,
             "a checkpoint newer than the last span", process)


def published_after(process: ProcessorProcess, after_ns: int) -> dict[str, Any]:
    """A scrape whose rollups are those of a checkpoint saved after ``after_ns``: with a
    state file, the endpoint shows the engine as of its last checkpoint."""
    def newer() -> dict[str, Any] | None:
        families = process.scrape()
        saved = total(families, sc.M_PROCESSOR_CHECKPOINT_TIME) if (
            sc.M_PROCESSOR_CHECKPOINT_TIME.prometheus in families) else 0.0
        return families if saved * 1e9 > after_ns else None
    return wait_for(newer, "a checkpoint to be published", process)


def feed_to_the_end(process: ProcessorProcess, requests: Sequence[Request]) -> Series:
    """Send the rest of the stream, then wait until every trace and conversation closed."""
    process.send(requests)
    sent = sum(r.spans for r in requests)
    wait_for(lambda: process.drained(sent), "the stream to be rolled up", process)
    families = published_after(process, time.time_ns())
    # The premise of every comparison: no conversation went idle during a restart.
    assert total(families, sc.M_CONVERSATION_COST, "_count") == 0, (
        "a conversation closed before the stream ended: raise RESTART_SAFE_S")

    def all_closed() -> dict[str, Any] | None:
        families = process.scrape()
        if all(total(families, sc.M_PROCESSOR_OPEN, llmcost_entity=entity) == 0
               for entity in ("trace", "conversation")):
            return families
        return None

    return rollups(wait_for(all_closed, "every trace and conversation to close", process))


# --- the scenarios --------------------------------------------------------------------

@dataclass(frozen=True)
class Restarted:
    final: Series
    carried: dict[str, Any]  # the checkpoint the restarted processor continued from


@dataclass(frozen=True)
class Lost:
    final: Series
    top_checkpointed: dict[tuple[str, str], float]  # before the spans that were lost
    top_in_memory: dict[tuple[str, str], float]  # with them, just before SIGKILL
    top_restarted: dict[tuple[str, str], float]  # right after the restart
    saved_ns: tuple[int, int]  # the checkpoint's time before and after the lost spans


def uninterrupted(directory: Path, requests: Sequence[Request]) -> Series:
    with ProcessorProcess(directory / "state.db", "uninterrupted") as process:
        return feed_to_the_end(process, requests)


def killed_after_a_checkpoint(directory: Path, requests: Sequence[Request], cut: int
                              ) -> Restarted:
    state_path = directory / "state.db"
    with ProcessorProcess(state_path, "before-kill") as first:
        first.send(requests[:cut])
        wait_for_a_checkpoint_covering(first, sum(r.spans for r in requests[:cut]))
        first.kill()
    carried = read_checkpoint(state_path)
    assert carried is not None
    with ProcessorProcess(state_path, "after-kill") as second:
        return Restarted(feed_to_the_end(second, requests[cut:]), carried[0])


def terminated(directory: Path, requests: Sequence[Request], cut: int) -> Restarted:
    """SIGTERM right after the last answer, with no periodic checkpoint ever due: only
    the flush on shutdown can have saved what the restarted processor continues from."""
    state_path = directory / "state.db"
    with ProcessorProcess(state_path, "before-term", **NO_CHECKPOINT) as first:
        first.send(requests[:cut])
        first.terminate()
    carried = read_checkpoint(state_path)
    assert carried is not None, "SIGTERM wrote no checkpoint"
    with ProcessorProcess(state_path, "after-term") as second:
        return Restarted(feed_to_the_end(second, requests[cut:]), carried[0])


def killed_with_unsaved_spans(directory: Path, requests: Sequence[Request], cut: int,
                              resume: int) -> Lost:
    """Checkpoint ``requests[:cut]``; then a processor that will not checkpoint again
    rolls up ``requests[cut:resume]`` and is SIGKILLed; a third one gets the rest.

    Pinning the last checkpoint (rather than racing a short interval) makes the loss
    exact: precisely the spans of ``requests[cut:resume]``."""
    state_path = directory / "state.db"
    with ProcessorProcess(state_path, "checkpointed") as first:
        first.send(requests[:cut])
        wait_for(lambda: first.drained(sum(r.spans for r in requests[:cut])),
                 "every span to reach the engine", first)
        top_checkpointed = top_cost(rollups(published_after(first, time.time_ns())))
        first.kill()
    before = read_checkpoint(state_path)
    assert before is not None
    with ProcessorProcess(state_path, "unsaved", **NO_CHECKPOINT) as second:
        second.send(requests[cut:resume])
        families = wait_for(lambda: second.drained(sum(r.spans for r in requests[cut:resume])),
                            "the unsaved spans to reach the engine", second)
        top_in_memory = top_cost(rollups(families))
        at_kill = read_checkpoint(state_path)
        assert at_kill is not None
        second.kill()
    with ProcessorProcess(state_path, "restarted") as third:
        families = third.scrape()
        assert total(families, sc.M_PROCESSOR_CHECKPOINT_TIME) * 1e9 == pytest.approx(
            before[1], abs=1e3)  # it shows the checkpoint it continues from
        top_restarted = top_cost(rollups(families))
        return Lost(feed_to_the_end(third, requests[resume:]), top_checkpointed,
                    top_in_memory, top_restarted, (before[1], at_kill[1]))


# Cut points, in requests: mid-stream, every conversation open, one trace without its root.
CUT = 17
# requests[18:24] arrive after the last checkpoint and die with SIGKILL. They begin with
# the root of trace 17 and end with the children of trace 23, both conversation-less (see
# build_stream): trace 17 then closes when idle without touching a conversation, so this
# run needs no idle period more than the others.
LOST = (18, 24)


@pytest.fixture(scope="module")
def stream() -> Stream:
    # Event times in the middle of the previous UTC hour: fixed for every run (they
    # decide the customer windows) and in the past, so the engine uses them as they are.
    base_ns = time.time_ns() // HOUR * HOUR - HOUR // 2
    return build_stream(seed=20240611, base_ns=base_ns)


@pytest.fixture(scope="module")
def runs(stream: Stream, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[dict[str, Future[Any]]]:
    requests = stream.requests
    kept = requests[:LOST[0]] + requests[LOST[1]:]
    plan: dict[str, tuple[Callable[..., Any], tuple[Any, ...]]] = {
        "uninterrupted": (uninterrupted, (requests,)),
        "without_lost": (uninterrupted, (kept,)),
        "killed": (killed_after_a_checkpoint, (requests, CUT)),
        "terminated": (terminated, (requests, CUT)),
        "lost": (killed_with_unsaved_spans, (requests, *LOST)),
    }
    with ThreadPoolExecutor(max_workers=len(plan)) as pool:
        yield {name: pool.submit(run, tmp_path_factory.mktemp(name), *args)
               for name, (run, args) in plan.items()}


def assert_same_rollups(got: Series, want: Series) -> None:
    """Every engine series equal, floats exactly. The engine adds up in an order the stream
    fixes (spend by span arrival, traces and turns by root arrival, conversations by their
    last turn), whatever the wall-clock timing, and a checkpoint keeps floats exactly
    (JSON writes their repr); so a restart must not change a single bit."""
    assert got.keys() == want.keys()
    differ = {key: (got[key], value) for key, value in want.items() if got[key] != value}
    assert not differ, differ


# --- the tests --------------------------------------------------------------------------

def test_the_uninterrupted_run_rolls_up_the_whole_stream(runs, stream):
    """The reference is itself right, and has something in every series compared."""
    final = runs["uninterrupted"].result()
    truth = spend(stream.requests)
    for window in ("1h", "1d"):
        shown = {customer: v for (w, customer), v in top_cost(final).items() if w == window}
        assert shown.pop(sc.CUSTOMER_OTHER) == 0
        assert shown == truth  # summed in the same order: exact
    samples = {name for name, _ in final}
    assert final[(sc.M_CONVERSATION_COST.prometheus + "_count", ())] == stream.conversations
    assert final[(sc.M_TRACE_COST.prometheus + "_count", ())] == stream.trace_weight
    for reason in sc.RUNAWAY_REASONS:
        assert final[(sc.M_TRACE_RUNAWAY.prometheus, (("llmcost_runaway_reason", reason),))] > 0
    turns = {dict(labels)["llmcost_turn_bucket"] for (name, labels), v in final.items()
             if name == sc.M_TURN_COST.prometheus + "_count" and v > 0}
    assert {"1", "2", "3-4", "5-8"} <= turns
    assert sc.M_CUSTOMER_SPEND_SHARE.prometheus in samples


def test_sigkill_after_a_covering_checkpoint_loses_nothing(runs):
    killed = runs["killed"].result()
    # The restart had open state to carry, not just finished histograms.
    assert killed.carried["traces"] and killed.carried["conversations"]
    windows = killed.carried["meta"]["windows"]
    assert windows["1h"]["open"] and windows["1d"]["open"] and killed.carried["spend"]
    assert_same_rollups(killed.final, runs["uninterrupted"].result())


def test_sigterm_mid_stream_flushes_everything(runs):
    terminated = runs["terminated"].result()
    assert terminated.carried["traces"] and terminated.carried["conversations"]
    assert_same_rollups(terminated.final, runs["uninterrupted"].result())


def test_sigkill_loses_exactly_the_spans_after_the_last_checkpoint(runs, stream):
    lost = runs["lost"].result()
    before, at_kill = lost.saved_ns
    assert at_kill == before  # no checkpoint between the lost spans and the kill
    requests = stream.requests
    assert lost.top_checkpointed == lost.top_restarted  # the checkpoint, all of it
    # The lost spans reached the engine (`drained`), but the endpoint never showed them: it
    # shows only what a checkpoint holds, so no counter Prometheus saw goes down.
    assert lost.top_in_memory == lost.top_checkpointed
    # The outcome is exactly a run that never saw the lost spans…
    assert_same_rollups(lost.final, runs["without_lost"].result())
    # …which is the full run minus their spend, customer by customer.
    full, lost_spend = top_cost(runs["uninterrupted"].result()), spend(
        requests[LOST[0]:LOST[1]])
    for (window, customer), value in top_cost(lost.final).items():
        assert math.isclose(full[window, customer] - value, lost_spend.get(customer, 0.0),
                            rel_tol=1e-9, abs_tol=1e-12), (window, customer)


def assert_serves_empty_then_rolls_up(process: ProcessorProcess) -> None:
    """Nothing was restored, and new spans roll up as usual."""
    assert not top_cost(rollups(process.scrape()))
    trace = agent_trace(random.Random(1), 0, time.time_ns() - S, "c", "acme", 1)
    process.send([Request(_body(trace.spans), len(trace.spans), ())])
    wait_for(lambda: process.drained(len(trace.spans)), "the spans to roll up", process)
    families = published_after(process, time.time_ns())
    assert top_cost(rollups(families))[("1h", "acme")] > 0


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_corrupted_state_file_is_moved_aside_and_the_processor_starts_empty(tmp_path, damage):
    state_path = tmp_path / "state.db"
    if damage == "garbage":
        state_path.write_bytes(random.Random(3).randbytes(64 * 1024))
    else:  # a real checkpoint file, cut in half as a full disk or a bad copy would
        store = Store(state_path)
        state = Engine(Config()).dump()
        state["traces"] = bytes(400_000)  # spans many pages: the cut hits the row
        store.save(state, 1)
        store.close()
        whole = state_path.read_bytes()
        state_path.write_bytes(whole[:len(whole) // 2])
    damaged = state_path.read_bytes()
    with ProcessorProcess(state_path, damage) as process:
        assert_serves_empty_then_rolls_up(process)
        process.terminate()
    assert "unreadable" in process.log()
    assert (tmp_path / "state.db.unreadable").read_bytes() == damaged  # kept for a post-mortem
    saved = read_checkpoint(state_path)  # the new file works: SIGTERM checkpointed into it
    assert saved is not None and saved[0]["meta"]["windows"]["1h"]["open"]


def test_a_checkpoint_of_an_incompatible_version_is_moved_aside_not_fatal(tmp_path):
    state_path = tmp_path / "state.db"
    state = Engine(Config()).dump()
    state["meta"]["version"] += 1  # as written by a newer processor
    store = Store(state_path)
    store.save(state, 1)
    store.close()
    with ProcessorProcess(state_path, "other-version") as process:
        assert_serves_empty_then_rolls_up(process)
        process.terminate()
    assert "version" in process.log()
    aside = read_checkpoint(tmp_path / "state.db.unreadable")
    assert aside is not None and aside[0]["meta"]["version"] == state["meta"]["version"]


def test_an_idle_processor_writes_no_checkpoint_but_saves_what_closes(tmp_path):
    """Checkpoints follow change: none while nothing arrives, and one when something closes
    with no new span (here a trace, after its wait), so the endpoint shows it closed."""
    state_path = tmp_path / "state.db"
    with ProcessorProcess(state_path, "idle") as process:
        time.sleep(10 * float(SETTINGS["checkpoint_s"]))  # type: ignore[arg-type]
        assert read_checkpoint(state_path) is None
        assert sc.M_PROCESSOR_CHECKPOINT_TIME.prometheus not in process.scrape()
        trace = agent_trace(random.Random(2), 0, time.time_ns() - S, "c", "acme", 1)
        process.send([Request(_body(trace.spans), len(trace.spans), ())])
        wait_for(lambda: process.drained(len(trace.spans)), "the spans to roll up", process)
        # Received, then closed 0.2 s later: the last change is the close, and a checkpoint
        # after it shows the trace rolled up.
        closed = wait_for(lambda: (f := process.scrape()) and total(
            f, sc.M_TRACE_COST, "_count") > 0 and f, "the closed trace to be published",
            process)
        assert total(closed, sc.M_PROCESSOR_OPEN, llmcost_entity="trace") == 0
        saved = read_checkpoint(state_path)
        assert saved is not None and not saved[0]["traces"]
        time.sleep(10 * float(SETTINGS["checkpoint_s"]))  # type: ignore[arg-type]
        assert read_checkpoint(state_path) == saved  # idle again: not rewritten
