"""The forwarder against real next hops: OTLP/HTTP (the test sink and a scripted server)
and OTLP/gRPC (a tiny in-test server); hops that throttle, refuse, are down or hang.

No test bounds how long something takes: each waits (generously) for what must happen.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from otlp_sink import OtlpSink
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families as parse_text

from otel_llmcost.processor.engine import Engine
from otel_llmcost.processor.exposition import EngineCollector, live
from otel_llmcost import semconv as sc
from otel_llmcost.processor.forward import DROP_REASONS, Forwarder

T = TypeVar("T")
WAIT_S = 120.0
OK = ExportTraceServiceResponse().SerializeToString()


def payload(n: int) -> bytes:
    """A distinct ExportTraceServiceRequest, serialized."""
    span = Span(trace_id=n.to_bytes(16, "big"), span_id=n.to_bytes(8, "big"), name=f"s{n}",
                start_time_unix_nano=n, end_time_unix_nano=n + 1)
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])])
    return request.SerializeToString()


def wait_for(probe: Callable[[], T], what: str) -> T:
    deadline = time.monotonic() + WAIT_S
    while not (result := probe()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)
    return result


def drops(**expected: int) -> dict[str, int]:
    """``expected`` drop counts, with zeros for every other reason."""
    return {reason: expected.get(reason, 0) for reason in DROP_REASONS}


class RawSink(OtlpSink):
    """The test sink, also keeping each request body exactly as it arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[bytes] = []

    def _receive(self, path: str, body: bytes) -> bytes:
        answer = super()._receive(path, body)
        with self._lock:
            self.bodies.append(body)
        return answer


class ScriptedHop:
    """OTLP/HTTP next hop answering from a script of (status, headers), then 200."""

    def __init__(self, script: list[tuple[int, dict[str, str]]]) -> None:
        self.script = list(script)
        self.requests: list[tuple[float, dict[str, str], bytes]] = []  # (monotonic, …)
        hop = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hop.requests.append((time.monotonic(), dict(self.headers), body))
                status, headers = hop.script.pop(0) if hop.script else (200, {})
                answer = OK if status == 200 else b""
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@contextmanager
def scripted(script: list[tuple[int, dict[str, str]]]) -> Iterator[ScriptedHop]:
    hop = ScriptedHop(script)
    try:
        yield hop
    finally:
        hop.close()


@contextmanager
def running(forwarder: Forwarder) -> Iterator[Forwarder]:
    forwarder.start()
    try:
        yield forwarder
    finally:
        forwarder.stop(timeout=WAIT_S)


def test_http_payloads_reach_the_next_hop_byte_for_byte_and_in_order():
    sent = [payload(n) for n in range(1, 21)]
    with RawSink() as sink:
        with running(Forwarder(sink.endpoint)) as forwarder:
            assert all(forwarder.offer(p) for p in sent)
            wait_for(lambda: forwarder.forwarded == len(sent), "20 forwarded")
        assert sink.bodies == sent
        assert [s["name"] for s in sink.spans] == [f"s{n}" for n in range(1, 21)]
        assert not sink.errors
    assert forwarder.dropped == drops() and forwarder.retries == 0


def test_http_throttling_is_retried_when_the_next_hop_says():
    past = formatdate(time.time() - 10, usegmt=True)  # an HTTP-date already passed: now
    script = [(429, {"Retry-After": past}), (503, {"Retry-After": "1"})]
    with scripted(script) as hop:
        forwarder = Forwarder(hop.endpoint, headers={"Authorization": "Bearer t0k"},
                              initial_backoff_s=0.01)
        with running(forwarder):
            forwarder.offer(payload(1))
            wait_for(lambda: forwarder.forwarded == 1, "the retried payload forwarded")
    assert forwarder.retries == 2 and forwarder.dropped == drops()
    times, headers, bodies = zip(*hop.requests)
    assert list(bodies) == [payload(1)] * 3
    assert times[2] - times[1] >= 1.0  # Retry-After: 1 was honoured
    for sent in headers:
        assert sent["Content-Type"] == "application/x-protobuf"
        assert sent["Authorization"] == "Bearer t0k"
    assert all(h["Host"] for h in headers)


def test_http_a_permanent_refusal_is_dropped_at_once_and_the_queue_goes_on():
    with scripted([(400, {})]) as hop, \
            running(Forwarder(hop.endpoint, initial_backoff_s=0.01)) as forwarder:
        forwarder.offer(payload(1))
        forwarder.offer(payload(2))
        wait_for(lambda: forwarder.forwarded == 1, "the second payload forwarded")
    assert [body for _, _, body in hop.requests] == [payload(1), payload(2)]  # no retry
    assert forwarder.dropped == drops(rejected=1) and forwarder.retries == 0


def test_http_retries_are_bounded():
    with scripted([(503, {})] * 3) as hop:
        forwarder = Forwarder(hop.endpoint, max_retries=2, initial_backoff_s=0.01)
        with running(forwarder):
            forwarder.offer(payload(1))
            wait_for(lambda: forwarder.dropped["retries_exhausted"], "retries exhausted")
    assert len(hop.requests) == 3 and forwarder.retries == 2 and forwarder.forwarded == 0


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens there once closed


def test_a_down_next_hop_fills_the_queue_and_offer_never_waits_for_it():
    forwarder = Forwarder(f"http://127.0.0.1:{closed_port()}", max_queue=3,
                          initial_backoff_s=WAIT_S, max_backoff_s=WAIT_S
                          ).start()  # parked in backoff after its first try
    assert forwarder.offer(payload(0))
    wait_for(lambda: forwarder.queued == 0, "the worker to take the first payload")
    accepted = [forwarder.offer(payload(n)) for n in range(1, 11)]
    assert accepted == [True] * 3 + [False] * 7
    # The offers returned while the worker still waits out its first backoff: they
    # never waited for it.
    assert forwarder.dropped == drops(queue_full=7) and forwarder.forwarded == 0
    assert forwarder.queued == 3
    counters = {(m, labels): v for m, labels, v in forwarder.metrics()}
    assert counters[(sc.M_PROCESSOR_FORWARD_DROPPED, ("queue_full",))] == 7.0
    assert counters[(sc.M_PROCESSOR_FORWARD_QUEUED, ())] == 3.0
    assert counters[(sc.M_PROCESSOR_FORWARDED, ())] == 0.0
    assert counters[(sc.M_PROCESSOR_FORWARD_RETRIES, ())] == 0.0
    forwarder.stop(timeout=0.1)  # the backoff outlasts it: the payload in flight is dropped
    assert forwarder.dropped == drops(queue_full=7, shutdown=4)
    assert not forwarder.offer(payload(11))
    assert forwarder.dropped["shutdown"] == 5  # 11 offered = 0 forwarded + 11 dropped


def test_stop_cuts_short_an_attempt_to_a_hop_that_never_answers():
    with socket.socket() as black_hole:  # accepts connections (backlog), never answers
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(8)
        port = black_hole.getsockname()[1]
        forwarder = Forwarder(f"http://127.0.0.1:{port}", timeout_s=WAIT_S * 10).start()
        forwarder.offer(payload(1))
        wait_for(lambda: forwarder.queued == 0, "the attempt to start")
        forwarder.offer(payload(2))
        forwarder.stop(timeout=0.2)
        assert forwarder.dropped == drops(shutdown=2)
        assert forwarder.forwarded == 0


def test_stop_drains_the_queue_when_the_next_hop_keeps_up():
    with RawSink() as sink:
        forwarder = Forwarder(sink.endpoint, max_queue=200).start()
        sent = [payload(n) for n in range(100)]
        assert all(forwarder.offer(p) for p in sent)
        forwarder.stop(timeout=WAIT_S)
        assert sink.bodies == sent
    assert forwarder.forwarded == 100 and forwarder.dropped == drops()


class GrpcHop:
    """OTLP/gRPC next hop answering from a script of (status code, RetryInfo delay), then OK.

    Requests are taken as raw bytes (no deserializer), so what arrives is what was sent.
    """

    def __init__(self, script: list[tuple[grpc.StatusCode, float | None]]) -> None:
        self.script = list(script)
        self.requests: list[tuple[bytes, dict[str, str]]] = []
        self.server = grpc.server(ThreadPoolExecutor(max_workers=2))
        self.server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
            "opentelemetry.proto.collector.trace.v1.TraceService",
            {"Export": grpc.unary_unary_rpc_method_handler(self._export)})])
        self.endpoint = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
        self.server.start()

    def _export(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self.requests.append((request, dict(context.invocation_metadata())))
        if not self.script:
            return OK
        code, delay = self.script.pop(0)
        if delay is not None:
            info = error_details_pb2.RetryInfo(retry_delay=Duration(nanos=int(delay * 1e9)))
            status = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message="slow down")
            status.details.add().Pack(info)
            context.set_trailing_metadata(
                (("grpc-status-details-bin", status.SerializeToString()),))
        context.set_code(code)
        context.set_details("scripted")
        return b""


@contextmanager
def grpc_hop(script: list[tuple[grpc.StatusCode, float | None]]) -> Iterator[GrpcHop]:
    hop = GrpcHop(script)
    try:
        yield hop
    finally:
        hop.server.stop(None)


def test_grpc_payloads_arrive_unchanged_after_unavailable_and_throttling():
    script = [(grpc.StatusCode.UNAVAILABLE, None),
              (grpc.StatusCode.RESOURCE_EXHAUSTED, 0.05)]  # retryable: it says when
    sent = [payload(1), payload(2)]
    with grpc_hop(script) as hop:
        forwarder = Forwarder(hop.endpoint, "grpc", headers={"X-Tenant": "acme"},
                              initial_backoff_s=0.01)
        with running(forwarder):
            assert all(forwarder.offer(p) for p in sent)
            wait_for(lambda: forwarder.forwarded == 2, "both forwarded")
    assert [body for body, _ in hop.requests] == [sent[0]] * 3 + [sent[1]]
    assert all(metadata["x-tenant"] == "acme" for _, metadata in hop.requests)
    assert forwarder.retries == 2 and forwarder.dropped == drops()


def test_grpc_bad_data_and_unexplained_exhaustion_are_rejected():
    script = [(grpc.StatusCode.INVALID_ARGUMENT, None),
              (grpc.StatusCode.RESOURCE_EXHAUSTED, None)]  # no RetryInfo: not retryable
    with grpc_hop(script) as hop, \
            running(Forwarder(hop.endpoint, "grpc", initial_backoff_s=0.01)) as forwarder:
        for n in (1, 2, 3):
            forwarder.offer(payload(n))
        wait_for(lambda: forwarder.forwarded == 1, "the third forwarded")
    assert [body for body, _ in hop.requests] == [payload(1), payload(2), payload(3)]
    assert forwarder.dropped == drops(rejected=2) and forwarder.retries == 0


def test_the_counters_render_on_the_prometheus_endpoint():
    forwarder = Forwarder("http://127.0.0.1:9", max_queue=1)  # never started
    assert forwarder.offer(payload(1)) and not forwarder.offer(payload(2))
    registry = CollectorRegistry()
    registry.register(EngineCollector(live(Engine(), threading.Lock()), [forwarder.metrics]))
    parsed = {f.name: f for f in parse_text(generate_latest(registry).decode())}
    family = parsed[sc.M_PROCESSOR_FORWARD_DROPPED.prometheus.removesuffix("_total")]
    dropped = {s.labels["llmcost_forward_drop_reason"]: s.value for s in family.samples}
    assert dropped == {"queue_full": 1.0, "retries_exhausted": 0.0, "rejected": 0.0,
                       "shutdown": 0.0}
    assert parsed[sc.M_PROCESSOR_FORWARD_QUEUED.prometheus].samples[0].value == 1.0
    forwarder.stop(timeout=0)
    assert forwarder.dropped == drops(queue_full=1, shutdown=1)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="protocol"):
        Forwarder("http://127.0.0.1:4318", "http/json")
    with pytest.raises(ValueError, match="endpoint"):
        Forwarder("127.0.0.1:4318")  # OTLP/HTTP needs a URL
