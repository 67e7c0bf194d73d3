"""The OTLP receivers over real sockets: OTLP's status codes, partial success and
backpressure on both transports, hostile bodies, auth, TLS, and the real OpenTelemetry SDK
exporters talking to them.

Why real sockets and real exporters: what matters is what a client sees on the wire and
does with it (retry or not, and when), which only the real clients can tell.
"""

from __future__ import annotations

import gzip
import http.client
import json
import logging
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import (
    TraceServiceStub,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_llmcost import semconv as sc
from otel_llmcost.processor.otlp import Decoded, Limits
from otel_llmcost.processor.receivers import (
    GrpcReceiver,
    HttpReceiver,
    Ingest,
    ReceiverStats,
)
from otel_llmcost.processor.records import SpanRecord

MIB = 1024 * 1024
TRACE = bytes.fromhex("5b8efff798038103d269b633813fc60c")
ROOT = bytes.fromhex("eee19b7ec3c1b173")
CHILD = bytes.fromhex("eee19b7ec3c1b174")
TOKEN = "s3cret-token"
PROTOBUF = {"Content-Type": "application/x-protobuf"}
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
R = TypeVar("R", HttpReceiver, GrpcReceiver)
T = TypeVar("T")


class Sink:
    """The ingest callback: records what it is handed, answers from a script (then True)."""

    def __init__(self, *answers: bool, error: Exception | None = None) -> None:
        self.calls: list[tuple[Decoded, bytes]] = []
        self._answers = list(answers)
        self._error = error
        self._lock = threading.Lock()

    def __call__(self, decoded: Decoded, payload: bytes) -> bool:
        if self._error is not None:
            raise self._error
        with self._lock:
            self.calls.append((decoded, payload))
            return self._answers.pop(0) if self._answers else True

    @property
    def records(self) -> list[SpanRecord]:
        return [record for decoded, _ in self.calls for record in decoded.records]


@pytest.fixture
def start() -> Iterator[Callable[..., Any]]:
    """Starts receivers on ephemeral loopback ports; stops them after the test."""
    started: list[HttpReceiver | GrpcReceiver] = []

    def _start(cls: type[R], ingest: Ingest, host: str = "127.0.0.1", **options: Any) -> R:
        receiver = cls(host, 0, ingest=ingest, **options)
        receiver.start()
        started.append(receiver)
        return receiver

    yield _start
    for receiver in started:
        receiver.stop()


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for localhost and 127.0.0.1: (certfile, keyfile)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl CLI is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    certfile, keyfile = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(keyfile), "-out", str(certfile)],
        check=True, capture_output=True)
    return str(certfile), str(keyfile)


# --- building requests ----------------------------------------------------------------


def _attr(key: str, value: str | float) -> KeyValue:
    if isinstance(value, str):
        return KeyValue(key=key, value=AnyValue(string_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(double_value=value))


def _span(span_id: bytes = ROOT, parent: bytes = b"", name: str = "chat",
          attributes: Mapping[str, str | float] | None = None) -> Span:
    return Span(trace_id=TRACE, span_id=span_id, parent_span_id=parent, name=name,
                start_time_unix_nano=1_000, end_time_unix_nano=2_000,
                attributes=[_attr(key, value) for key, value in (attributes or {}).items()])


def _request(*spans: Span) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest(resource_spans=[
        ResourceSpans(scope_spans=[ScopeSpans(spans=list(spans))])])


def _llm_request() -> ExportTraceServiceRequest:
    """A root and an LLM call with a cost: what a real agent trace starts with."""
    llm: dict[str, str | float] = {sc.GEN_AI_USAGE_COST_AMOUNT: 0.25,
                                   sc.LLMCOST_PRICING_STATUS: sc.STATUS_EXACT,
                                   sc.GEN_AI_USAGE_INPUT_TOKENS: 1000}
    return _request(_span(ROOT, name="invoke_agent"), _span(CHILD, ROOT, attributes=llm))


def _partial_request() -> ExportTraceServiceRequest:
    """One good span and one whose cost is negative (refused alone)."""
    negative = {sc.GEN_AI_USAGE_COST_AMOUNT: -1.0}
    return _request(_span(ROOT), _span(CHILD, ROOT, attributes=negative))


def _json_document() -> dict[str, Any]:
    """OTLP/JSON as an SDK writes it: hex ids, camelCase, int64 as strings, unknown keys."""
    return {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name",
                                     "value": {"stringValue": "agent"}}]},
        "scopeSpans": [{"scope": {"name": "test"}, "spans": [{
            "traceId": TRACE.hex(), "spanId": CHILD.hex(), "parentSpanId": ROOT.hex(),
            "name": "chat", "kind": 3,
            "startTimeUnixNano": "1544712660000000000",
            "endTimeUnixNano": "1544712661000000000",
            "attributes": [
                {"key": sc.GEN_AI_USAGE_COST_AMOUNT, "value": {"doubleValue": 0.5}},
                {"key": sc.GEN_AI_USAGE_INPUT_TOKENS, "value": {"intValue": "100"}},
                {"key": sc.LLMCOST_PRICING_STATUS, "value": {"stringValue": "exact"}}],
            "someFutureField": {"x": 1}}]}]}]}


# --- HTTP client helpers --------------------------------------------------------------


def _post(receiver: HttpReceiver, body: bytes, headers: dict[str, str] | None = None,
          method: str = "POST", path: str = "/v1/traces",
          context: ssl.SSLContext | None = None
          ) -> tuple[int, http.client.HTTPMessage, bytes]:
    if context is None:
        conn = http.client.HTTPConnection("127.0.0.1", receiver.port)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", receiver.port, context=context)
    try:
        conn.request(method, path, body=body,
                     headers=PROTOBUF if headers is None else headers)
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def _raw(receiver: HttpReceiver, data: bytes) -> bytes:
    """Send bytes as they are, half-close, and read the whole answer."""
    with socket.create_connection(("127.0.0.1", receiver.port)) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _status(body: bytes) -> status_pb2.Status:
    return status_pb2.Status.FromString(body)


def _retry_delay(status: status_pb2.Status) -> Duration:
    (detail,) = status.details
    info = error_details_pb2.RetryInfo()
    assert detail.Unpack(info)
    return info.retry_delay


# --- OTLP/HTTP ------------------------------------------------------------------------


def test_http_protobuf_accepted(start: Callable[..., Any]) -> None:
    sink = Sink()
    receiver = start(HttpReceiver, sink)
    body = _llm_request().SerializeToString()
    status, headers, answer = _post(receiver, body)
    assert status == 200
    assert headers["Content-Type"] == "application/x-protobuf"
    assert not ExportTraceServiceResponse.FromString(answer).HasField("partial_success")
    ((decoded, payload),) = sink.calls
    assert payload == body  # forwarded as it came
    root, llm = decoded.records
    assert (root.trace_id, root.span_id, root.parent_span_id) == (TRACE, ROOT, b"")
    assert (llm.span_id, llm.parent_span_id, llm.cost, llm.llm) == (CHILD, ROOT, 0.25, True)
    assert llm.input_tokens == 1000


def test_http_json_hex_ids_end_to_end(start: Callable[..., Any]) -> None:
    sink = Sink()
    receiver = start(HttpReceiver, sink)
    status, headers, answer = _post(
        receiver, json.dumps(_json_document()).encode(),
        {"Content-Type": "application/json; charset=utf-8"})
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert json.loads(answer) == {}
    ((decoded, payload),) = sink.calls
    (record,) = decoded.records
    assert (record.trace_id, record.span_id, record.parent_span_id) == (TRACE, CHILD, ROOT)
    assert (record.cost, record.input_tokens, record.start_ns) == (
        0.5, 100, 1544712660000000000)
    # The payload is protobuf with the right (hex-decoded) ids: forwardable as OTLP.
    span = ExportTraceServiceRequest.FromString(payload).resource_spans[0].scope_spans[0].spans[0]
    assert (span.trace_id, span.span_id, span.parent_span_id) == (TRACE, CHILD, ROOT)


def test_http_empty_request_succeeds_without_ingest(start: Callable[..., Any]) -> None:
    sink = Sink(False)  # a full queue must not fail an export that has no spans
    receiver = start(HttpReceiver, sink)
    status, _, answer = _post(receiver, b"")
    assert status == 200
    assert not ExportTraceServiceResponse.FromString(answer).HasField("partial_success")
    status, _, answer = _post(receiver, b"{}", {"Content-Type": "application/json"})
    assert (status, json.loads(answer)) == (200, {})
    assert sink.calls == []


def test_http_partial_success(start: Callable[..., Any]) -> None:
    sink = Sink()
    receiver = start(HttpReceiver, sink)
    status, _, answer = _post(receiver, _partial_request().SerializeToString())
    assert status == 200
    partial = ExportTraceServiceResponse.FromString(answer).partial_success
    assert partial.rejected_spans == 1
    assert sc.GEN_AI_USAGE_COST_AMOUNT in partial.error_message
    ((decoded, _),) = sink.calls
    assert [record.span_id for record in decoded.records] == [ROOT]
    document = json.loads(json.dumps(_json_document()))
    document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] = "00" * 16
    status, _, answer = _post(receiver, json.dumps(document).encode(),
                              {"Content-Type": "application/json"})
    assert status == 200
    assert json.loads(answer)["partialSuccess"]["rejectedSpans"] == "1"  # int64: a string
    snapshot = receiver.stats.snapshot()
    assert snapshot.requests["http", "partial"] == 2
    assert (snapshot.received_spans["http"], snapshot.rejected_spans["http"]) == (1, 2)


@pytest.mark.parametrize(("content_type", "body"), [
    ("application/x-protobuf", b"\xff\xff\xff\xff"),
    ("application/json", b"{not json"),
    ("application/json", b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"xyz"}]}]}]}'),
])
def test_http_undecodable_is_400_with_status(start: Callable[..., Any], content_type: str,
                                             body: bytes) -> None:
    sink = Sink()
    receiver = start(HttpReceiver, sink)
    status, headers, answer = _post(receiver, body, {"Content-Type": content_type})
    assert status == 400
    assert headers["Content-Type"] == content_type
    if content_type == "application/json":
        assert json.loads(answer)["code"] == code_pb2.INVALID_ARGUMENT
    else:
        assert _status(answer).code == code_pb2.INVALID_ARGUMENT
    assert sink.calls == []
    assert receiver.stats.snapshot().requests["http", "invalid"] == 1


def test_http_too_many_spans_is_400(start: Callable[..., Any]) -> None:
    receiver = start(HttpReceiver, Sink(), limits=Limits(max_spans=1))
    status, _, answer = _post(receiver, _llm_request().SerializeToString())
    assert status == 400
    assert "too many spans" in _status(answer).message


@pytest.mark.parametrize("media", ["application/x-protobuf", "application/json"])
def test_http_gzip(start: Callable[..., Any], media: str) -> None:
    sink = Sink()
    receiver = start(HttpReceiver, sink)
    raw = (_llm_request().SerializeToString() if media == "application/x-protobuf"
           else json.dumps(_json_document()).encode())
    status, _, _ = _post(receiver, gzip.compress(raw),
                         {"Content-Type": media, "Content-Encoding": "gzip"})
    assert status == 200
    ((decoded, payload),) = sink.calls
    assert decoded.records and decoded.records[0].trace_id == TRACE
    assert ExportTraceServiceRequest.FromString(payload).resource_spans  # un-gzipped


def test_http_gzip_multi_member(start: Callable[..., Any]) -> None:
    """Concatenated gzip members are one body (as gzip(1) and RFC 1952 have it)."""
    sink = Sink()
    receiver = start(HttpReceiver, sink)
    raw = _llm_request().SerializeToString()
    body = gzip.compress(raw[:20]) + gzip.compress(raw[20:])
    status, _, _ = _post(receiver, body, {**PROTOBUF, "Content-Encoding": "gzip"})
    assert status == 200
    assert sink.calls[0][1] == raw


def test_http_gzip_bomb_is_413_without_inflating(start: Callable[..., Any]) -> None:
    sink = Sink()
    receiver = start(HttpReceiver, sink, max_body_bytes=1 * MIB)
    bomb = gzip.compress(b"\0" * (32 * MIB))
    assert len(bomb) < MIB  # small on the wire, 32× the limit once inflated
    status, _, answer = _post(receiver, bomb, {**PROTOBUF, "Content-Encoding": "gzip"})
    assert status == 413
    assert _status(answer).code == code_pb2.RESOURCE_EXHAUSTED
    assert sink.calls == []
    assert receiver.stats.snapshot().requests["http", "too_large"] == 1


@pytest.mark.parametrize("body", [gzip.compress(b"x", mtime=0)[:-4], b"not gzip at all",
                                  gzip.compress(b"", mtime=0) + b"trailing junk"],
                         ids=["truncated", "not-gzip", "trailing-junk"])
def test_http_corrupt_gzip_is_400(start: Callable[..., Any], body: bytes) -> None:
    receiver = start(HttpReceiver, Sink())
    status, _, _ = _post(receiver, body, {**PROTOBUF, "Content-Encoding": "gzip"})
    assert status == 400


def test_http_oversize_is_413_before_the_body_is_read(start: Callable[..., Any]) -> None:
    sink = Sink()
    receiver = start(HttpReceiver, sink, max_body_bytes=1024)
    conn = http.client.HTTPConnection("127.0.0.1", receiver.port)
    try:
        conn.putrequest("POST", "/v1/traces")
        conn.putheader("Content-Type", "application/x-protobuf")
        conn.putheader("Content-Length", str(10**12))  # never sent: answered from headers
        conn.endheaders()
        response = conn.getresponse()
        assert response.status == 413
        assert response.headers["Connection"] == "close"
    finally:
        conn.close()
    assert sink.calls == []


def test_http_length_required_and_chunked(start: Callable[..., Any]) -> None:
    sink = Sink()
    receiver = start(HttpReceiver, sink, max_body_bytes=4096)
    answer = _raw(receiver, b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n"
                            b"Content-Type: application/x-protobuf\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 411 ")
    body = _llm_request().SerializeToString()
    status, _, _ = _post(receiver, iter([body[:10], body[10:]]))  # type: ignore[arg-type]
    assert status == 200
    assert sink.calls[0][1] == body
    status, _, _ = _post(receiver, iter([b"\0" * 4000, b"\0" * 4000]))  # type: ignore[arg-type]
    assert status == 413


def test_http_expect_100_continue_is_answered_before_the_body(
        start: Callable[..., Any]) -> None:
    """curl sends ``Expect: 100-continue`` before a large body and waits for the interim
    answer: it must come at once (responses are buffered until a request is done)."""
    sink = Sink()
    receiver = start(HttpReceiver, sink)
    body = _llm_request().SerializeToString()
    with socket.create_connection(("127.0.0.1", receiver.port), timeout=30) as sock:
        sock.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/x-protobuf\r\nExpect: 100-continue\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 100 Continue\r\n")  # no body sent yet
        sock.sendall(body)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert sink.calls[0][1] == body


@pytest.mark.parametrize(("head", "expected"), [
    (b"Content-Length: -1\r\n\r\n", b"400"),
    (b"Content-Length: 1e3\r\n\r\n", b"400"),
    (b"Transfer-Encoding: gzip, chunked\r\n\r\n", b"501"),
    (b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", b"400"),
    (b"Transfer-Encoding: chunked\r\n\r\n3\r\nabcXY", b"400"),
    (b"Transfer-Encoding: chunked\r\n\r\n" + b"1" * 70000, b"400"),
], ids=["negative-length", "float-length", "unknown-transfer-coding", "bad-chunk-size",
        "bad-chunk-end", "endless-chunk-line"])
def test_http_malformed_framing(start: Callable[..., Any], head: bytes,
                                expected: bytes) -> None:
    """Malformed framing gets a 4xx/5xx and a closed connection; the server goes on."""
    sink = Sink()
    receiver = start(HttpReceiver, sink)
    answer = _raw(receiver, b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n"
                            b"Content-Type: application/x-protobuf\r\n" + head)
    assert answer.split(b" ", 2)[1] == expected
    assert b"Connection: close" in answer
    assert _post(receiver, b"")[0] == 200
    assert sink.calls == []


def test_http_truncated_body_is_400(start: Callable[..., Any]) -> None:
    sink = Sink()
    receiver = start(HttpReceiver, sink)
    answer = _raw(receiver, b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n"
                            b"Content-Type: application/x-protobuf\r\n"
                            b"Content-Length: 100\r\n\r\n0123456789")
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert sink.calls == []


@pytest.mark.parametrize("headers", [{"Content-Type": "text/plain"}, {},
                                     {**PROTOBUF, "Content-Encoding": "br"}])
def test_http_unsupported_media_is_415(start: Callable[..., Any],
                                       headers: dict[str, str]) -> None:
    receiver = start(HttpReceiver, Sink())
    status, _, answer = _post(receiver, b"", headers)
    assert status == 415
    assert _status(answer).code == code_pb2.INVALID_ARGUMENT


def test_http_throttled_is_503_with_retry_after(start: Callable[..., Any]) -> None:
    sink = Sink(False)
    receiver = start(HttpReceiver, sink, retry_after_s=2)
    status, headers, answer = _post(receiver, _llm_request().SerializeToString())
    assert status == 503
    assert headers["Retry-After"] == "2"
    status_message = _status(answer)
    assert status_message.code == code_pb2.UNAVAILABLE
    assert _retry_delay(status_message).seconds == 2
    status, _, _ = _post(receiver, _llm_request().SerializeToString())
    assert status == 200  # the queue took the retry
    snapshot = receiver.stats.snapshot()
    assert (snapshot.requests["http", "throttled"], snapshot.requests["http", "accepted"]) \
        == (1, 1)
    assert snapshot.received_spans["http"] == 2  # the throttled request's spans: not counted


def test_http_bearer_token(start: Callable[..., Any]) -> None:
    sink = Sink()
    receiver = start(HttpReceiver, sink, token=TOKEN)
    body = _llm_request().SerializeToString()
    status, headers, answer = _post(receiver, body)
    assert (status, headers["WWW-Authenticate"]) == (401, "Bearer")
    assert _status(answer).code == code_pb2.UNAUTHENTICATED
    for wrong in ("Bearer nope", f"Basic {TOKEN}", TOKEN, f"Bearer {TOKEN}x"):
        status, headers, _ = _post(receiver, body, {**PROTOBUF, "Authorization": wrong})
        assert status == 401
        assert headers["WWW-Authenticate"].startswith("Bearer")
    assert sink.calls == []
    status, _, _ = _post(receiver, body, {**PROTOBUF, "Authorization": f"bearer {TOKEN}"})
    assert status == 200
    assert receiver.stats.snapshot().requests["http", "unauthenticated"] == 5


@pytest.mark.parametrize(("method", "path", "expected"), [
    ("GET", "/v1/traces", 405), ("PUT", "/v1/traces", 405), ("HEAD", "/v1/traces", 405),
    ("POST", "/v1/metrics", 404), ("POST", "/", 404), ("GET", "/v1/traces/x", 404)])
def test_http_other_paths_and_methods(start: Callable[..., Any], method: str, path: str,
                                      expected: int) -> None:
    receiver = start(HttpReceiver, Sink())
    status, headers, _ = _post(receiver, b"", method=method, path=path)
    assert status == expected
    if expected == 405:
        assert headers["Allow"] == "POST"


def test_http_query_string_is_ignored(start: Callable[..., Any]) -> None:
    receiver = start(HttpReceiver, Sink())
    status, _, _ = _post(receiver, b"", path="/v1/traces?tenant=a")
    assert status == 200


def _receiver_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The receivers' own error records: not asyncio's, which can log here about garbage
    from earlier tests (an event loop closed under an SDK's async client) when it is
    collected."""
    return [r for r in caplog.records
            if r.name == "otel_llmcost.processor" and r.levelno >= logging.ERROR]


def test_http_handler_error_is_500_logged_once(start: Callable[..., Any],
                                               caplog: pytest.LogCaptureFixture) -> None:
    receiver = start(HttpReceiver, Sink(error=RuntimeError("engine bug")))
    body = _llm_request().SerializeToString()
    with caplog.at_level(logging.DEBUG, logger="otel_llmcost.processor"):
        for _ in range(3):
            status, _, answer = _post(receiver, body)
            assert status == 500
            assert _status(answer).code == code_pb2.INTERNAL
    errors = _receiver_errors(caplog)
    assert len(errors) == 1 and "RuntimeError" in errors[0].getMessage()
    assert receiver.stats.snapshot().requests["http", "error"] == 3
    status, _, _ = _post(receiver, b"")  # still serving
    assert status == 200


def test_http_tls(start: Callable[..., Any], cert: tuple[str, str]) -> None:
    sink = Sink()
    receiver = start(HttpReceiver, sink, tls=cert)
    context = ssl.create_default_context(cafile=cert[0])
    status, _, _ = _post(receiver, _llm_request().SerializeToString(), context=context)
    assert status == 200
    assert len(sink.records) == 2
    # A plaintext client gets no HTTP answer, and the server goes on serving.
    with pytest.raises((http.client.HTTPException, OSError)):
        _post(receiver, b"")
    status, _, _ = _post(receiver, b"", context=context)
    assert status == 200


# --- OTLP/gRPC ------------------------------------------------------------------------


def _stub(receiver: GrpcReceiver) -> tuple[grpc.Channel, TraceServiceStub]:
    channel = grpc.insecure_channel(f"127.0.0.1:{receiver.port}")
    return channel, TraceServiceStub(channel)


def _grpc_error(call: Callable[[], object]) -> grpc.Call:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    error = raised.value
    assert isinstance(error, grpc.Call)
    return error


def test_grpc_accepted_and_empty(start: Callable[..., Any]) -> None:
    sink = Sink()
    receiver = start(GrpcReceiver, sink)
    channel, stub = _stub(receiver)
    with channel:
        request = _llm_request()
        response = stub.Export(request)
        assert not response.HasField("partial_success")
        ((decoded, payload),) = sink.calls
        assert payload == request.SerializeToString()
        assert [(r.span_id, r.cost) for r in decoded.records] == [(ROOT, 0.0), (CHILD, 0.25)]
        assert not stub.Export(ExportTraceServiceRequest()).HasField("partial_success")
    assert len(sink.calls) == 1  # the empty request did not reach ingest


def test_grpc_partial_success(start: Callable[..., Any]) -> None:
    sink = Sink()
    receiver = start(GrpcReceiver, sink)
    channel, stub = _stub(receiver)
    with channel:
        partial = stub.Export(_partial_request()).partial_success
    assert partial.rejected_spans == 1
    assert sc.GEN_AI_USAGE_COST_AMOUNT in partial.error_message
    snapshot = receiver.stats.snapshot()
    assert snapshot.requests["grpc", "partial"] == 1
    assert (snapshot.received_spans["grpc"], snapshot.rejected_spans["grpc"]) == (1, 1)


def test_grpc_undecodable_is_invalid_argument(start: Callable[..., Any]) -> None:
    sink = Sink()
    receiver = start(GrpcReceiver, sink)
    with grpc.insecure_channel(f"127.0.0.1:{receiver.port}") as channel:
        export = channel.unary_unary(
            EXPORT, request_serializer=None,
            response_deserializer=ExportTraceServiceResponse.FromString)
        error = _grpc_error(lambda: export(b"\xff\xff\xff\xff"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert sink.calls == []


@pytest.mark.parametrize("compression", [grpc.Compression.NoCompression,
                                         grpc.Compression.Gzip])
def test_grpc_oversize_is_resource_exhausted(start: Callable[..., Any],
                                             compression: grpc.Compression) -> None:
    """With gzip this is a zip bomb: small on the wire, over the limit once inflated."""
    sink = Sink()
    receiver = start(GrpcReceiver, sink, max_message_bytes=1 * MIB)
    request = _request(_span(name="x" * (8 * MIB)))
    assert len(gzip.compress(request.SerializeToString())) < MIB
    channel, stub = _stub(receiver)
    with channel:
        error = _grpc_error(lambda: stub.Export(request, compression=compression))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert sink.calls == []


def test_grpc_gzip(start: Callable[..., Any]) -> None:
    sink = Sink()
    receiver = start(GrpcReceiver, sink)
    channel, stub = _stub(receiver)
    request = _llm_request()
    with channel:
        stub.Export(request, compression=grpc.Compression.Gzip)
    assert sink.calls[0][1] == request.SerializeToString()  # un-gzipped by grpc


def test_grpc_throttled_is_unavailable_with_retry_info(start: Callable[..., Any]) -> None:
    sink = Sink(False)
    receiver = start(GrpcReceiver, sink, retry_after_s=1.5)
    channel, stub = _stub(receiver)
    with channel:
        error = _grpc_error(lambda: stub.Export(_llm_request()))
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        trailers = dict(error.trailing_metadata() or ())
        status = _status(trailers["grpc-status-details-bin"])
        assert (status.code, status.message) == (code_pb2.UNAVAILABLE, error.details())
        assert _retry_delay(status) == Duration(seconds=1, nanos=500_000_000)
        info = error_details_pb2.RetryInfo.FromString(trailers["google.rpc.retryinfo-bin"])
        assert info.retry_delay == Duration(seconds=1, nanos=500_000_000)
        stub.Export(_llm_request())  # the retry is taken
    assert receiver.stats.snapshot().requests["grpc", "throttled"] == 1


def test_grpc_bearer_token(start: Callable[..., Any]) -> None:
    sink = Sink()
    receiver = start(GrpcReceiver, sink, token=TOKEN)
    channel, stub = _stub(receiver)
    with channel:
        for metadata in ((), (("authorization", "Bearer nope"),),
                         (("authorization", TOKEN),)):
            error = _grpc_error(partial(stub.Export, _llm_request(), metadata=metadata))
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert sink.calls == []
        stub.Export(_llm_request(), metadata=(("authorization", f"Bearer {TOKEN}"),))
    assert len(sink.calls) == 1
    assert receiver.stats.snapshot().requests["grpc", "unauthenticated"] == 3


def test_grpc_handler_error_is_internal(start: Callable[..., Any],
                                        caplog: pytest.LogCaptureFixture) -> None:
    receiver = start(GrpcReceiver, Sink(error=RuntimeError("engine bug")))
    channel, stub = _stub(receiver)
    with channel, caplog.at_level(logging.DEBUG, logger="otel_llmcost.processor"):
        for _ in range(2):
            error = _grpc_error(lambda: stub.Export(_llm_request()))
            assert error.code() == grpc.StatusCode.INTERNAL
        stub.Export(ExportTraceServiceRequest())  # still serving
    assert len(_receiver_errors(caplog)) == 1
    assert receiver.stats.snapshot().requests["grpc", "error"] == 2


def test_grpc_tls(start: Callable[..., Any], cert: tuple[str, str]) -> None:
    sink = Sink()
    receiver = start(GrpcReceiver, sink, tls=cert)
    credentials = grpc.ssl_channel_credentials(Path(cert[0]).read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{receiver.port}", credentials) as channel:
        TraceServiceStub(channel).Export(_llm_request())
    assert len(sink.records) == 2


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback here")
def test_ipv6_loopback(start: Callable[..., Any]) -> None:
    http_sink, grpc_sink = Sink(), Sink()
    http_receiver = start(HttpReceiver, http_sink, host="::1")
    grpc_receiver = start(GrpcReceiver, grpc_sink, host="::1")
    conn = http.client.HTTPConnection("::1", http_receiver.port)
    try:
        conn.request("POST", "/v1/traces", _llm_request().SerializeToString(), PROTOBUF)
        assert conn.getresponse().status == 200
    finally:
        conn.close()
    with grpc.insecure_channel(f"[::1]:{grpc_receiver.port}") as channel:
        TraceServiceStub(channel).Export(_llm_request())
    assert len(http_sink.records) == len(grpc_sink.records) == 2


def test_concurrent_exports_are_all_counted(start: Callable[..., Any]) -> None:
    stats = ReceiverStats()
    sink = Sink()
    http_receiver = start(HttpReceiver, sink, stats=stats)
    grpc_receiver = start(GrpcReceiver, sink, stats=stats)
    body = _llm_request().SerializeToString()
    failures: list[BaseException] = []

    def client(transport: str) -> None:
        try:
            if transport == "http":
                for _ in range(10):
                    assert _post(http_receiver, body)[0] == 200
            else:
                channel, stub = _stub(grpc_receiver)
                with channel:
                    for _ in range(10):
                        stub.Export(_llm_request())
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            failures.append(error)

    threads = [threading.Thread(target=client, args=(t,)) for t in ("http", "grpc") * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(sink.calls) == 80
    snapshot = stats.snapshot()
    assert snapshot.requests["http", "accepted"] == snapshot.requests["grpc", "accepted"] == 40
    assert snapshot.received_spans == {"http": 80, "grpc": 80}


class _HeldIngest:
    """An ingest that holds each call until released: a request in flight at stop()."""

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()
        self.records: list[int] = []  # per call

    def __call__(self, decoded: Decoded, payload: bytes) -> bool:
        self.records.append(len(decoded.records))
        self.entered.set()
        self.release.wait()
        return True


def _stop_during_ingest(receiver: HttpReceiver | GrpcReceiver, ingest: _HeldIngest,
                        send: Callable[[], T]) -> T:
    """``send()`` a request, call stop() while its ingest is held, and check that stop()
    waits for that call; the request's answer."""
    answers: list[T] = []
    client = threading.Thread(target=lambda: answers.append(send()))
    client.start()
    ingest.entered.wait()
    stopped = threading.Event()

    def stop() -> None:
        receiver.stop()
        stopped.set()

    stopper = threading.Thread(target=stop)
    stopper.start()
    while not receiver._gate._closed:  # wait until stop() is waiting for the ingest call
        stopper.join(0.001)
    assert not stopped.is_set()
    ingest.release.set()
    stopper.join()
    client.join()
    (answer,) = answers
    return answer


def test_http_stop_waits_for_ingest_and_then_refuses(start: Callable[..., Any]) -> None:
    """After stop() returns ingest is never called: the service can drain its queue."""
    ingest = _HeldIngest()
    receiver = start(HttpReceiver, ingest)
    keep_alive = http.client.HTTPConnection("127.0.0.1", receiver.port)
    keep_alive.request("POST", "/v1/traces", b"", PROTOBUF)  # opens a handler thread
    assert keep_alive.getresponse().read() == b""
    status = _stop_during_ingest(receiver, ingest, lambda: _post(
        receiver, _llm_request().SerializeToString())[0])
    assert status == 200
    # The idle keep-alive connection outlived stop(): it is answered, not ingested.
    keep_alive.request("POST", "/v1/traces", _llm_request().SerializeToString(), PROTOBUF)
    response = keep_alive.getresponse()
    assert (response.status, response.headers["Retry-After"]) == (503, "1")
    keep_alive.close()


def test_grpc_stop_waits_for_ingest_and_then_refuses(start: Callable[..., Any]) -> None:
    """The call in flight when stop() is called is answered; none is ingested after."""
    ingest = _HeldIngest()
    receiver = start(GrpcReceiver, ingest)
    channel, stub = _stub(receiver)
    with channel:
        answer = _stop_during_ingest(receiver, ingest, lambda: stub.Export(_llm_request()))
        assert answer == ExportTraceServiceResponse()
        with pytest.raises(grpc.RpcError) as caught:
            stub.Export(_llm_request(), timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert ingest.records == [2]


def test_a_port_in_use_fails_to_start(start: Callable[..., Any]) -> None:
    """Also for gRPC, which would share the port silently (SO_REUSEPORT) if let."""
    first = start(GrpcReceiver, Sink())
    for cls in (GrpcReceiver, HttpReceiver):
        with pytest.raises(OSError):
            cls("127.0.0.1", first.port, ingest=Sink()).start()


def test_stats_shared_by_both_transports(start: Callable[..., Any]) -> None:
    stats = ReceiverStats()
    http_receiver = start(HttpReceiver, Sink(), stats=stats)
    grpc_receiver = start(GrpcReceiver, Sink(), stats=stats)
    _post(http_receiver, _llm_request().SerializeToString())
    channel, stub = _stub(grpc_receiver)
    with channel:
        stub.Export(_partial_request())
    snapshot = stats.snapshot()
    assert snapshot.received_spans == {"http": 2, "grpc": 1}
    assert snapshot.rejected_spans == {"http": 0, "grpc": 1}
    assert {k: v for k, v in snapshot.requests.items() if v} == {
        ("http", "accepted"): 1, ("grpc", "partial"): 1}
    assert len(snapshot.requests) == 2 * 7  # every series exists from the start


# --- the real OpenTelemetry SDK exporters ---------------------------------------------


def _sdk_spans() -> list[ReadableSpan]:
    """An agent turn made with the real SDK: root, a priced LLM call, a tool call."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("invoke_agent") as root:
        root.set_attribute(sc.GEN_AI_CONVERSATION_ID, "conv-7")
        with tracer.start_as_current_span("chat gpt-4o") as llm:
            llm.set_attributes({
                sc.GEN_AI_USAGE_COST_AMOUNT: 0.0123, sc.LLMCOST_PRICING_STATUS: "exact",
                sc.GEN_AI_USAGE_INPUT_TOKENS: 1200, sc.GEN_AI_USAGE_OUTPUT_TOKENS: 300,
                sc.LLMCOST_RETRIES: 1, sc.LLMCOST_CUSTOMER_ID: "acme",
                sc.GEN_AI_CONVERSATION_ID: "conv-7",
                sc.LLMCOST_SAMPLING_ADJUSTED_COUNT: 4.0})
        with tracer.start_as_current_span("execute_tool search") as tool:
            tool.set_attribute(sc.GEN_AI_OPERATION_NAME, "execute_tool")
    provider.shutdown()
    return list(memory.get_finished_spans())


def _check_records(spans: list[ReadableSpan], sink: Sink) -> None:
    """What reached ingest is what the SDK recorded: ids, parents, times, cost facts."""
    records = {record.span_id: record for record in sink.records}
    assert len(records) == len(spans) == 3
    for span in spans:
        assert span.context is not None and span.start_time and span.end_time
        record = records[span.context.span_id.to_bytes(8, "big")]
        assert record.trace_id == span.context.trace_id.to_bytes(16, "big")
        parent = span.parent.span_id.to_bytes(8, "big") if span.parent else b""
        assert record.parent_span_id == parent
        assert (record.start_ns, record.end_ns) == (span.start_time, span.end_time)
    by_name = {span.name: records[span.context.span_id.to_bytes(8, "big")]
               for span in spans if span.context}
    llm = by_name["chat gpt-4o"]
    assert (llm.llm, llm.cost, llm.input_tokens, llm.output_tokens, llm.retries) == (
        True, 0.0123, 1200, 300, 1)
    assert (llm.customer_id, llm.conversation_id, llm.weight) == ("acme", "conv-7", 4.0)
    assert by_name["execute_tool search"].tool
    assert by_name["invoke_agent"].conversation_id == "conv-7"


def test_sdk_http_exporter_tls_token_gzip(start: Callable[..., Any], cert: tuple[str, str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # requests lets these variables override the exporter's certificate_file
    # (psf/requests#3829): with them set, the self-signed certificate is not trusted.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    sink = Sink()
    receiver = start(HttpReceiver, sink, token=TOKEN, tls=cert)
    exporter = HttpSpanExporter(
        endpoint=f"https://127.0.0.1:{receiver.port}/v1/traces", certificate_file=cert[0],
        headers={"Authorization": f"Bearer {TOKEN}"}, compression=HttpCompression.Gzip)
    spans = _sdk_spans()
    try:
        assert exporter.export(spans) == SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    _check_records(spans, sink)


def test_sdk_grpc_exporter_tls_token_gzip(start: Callable[..., Any],
                                          cert: tuple[str, str]) -> None:
    sink = Sink()
    receiver = start(GrpcReceiver, sink, token=TOKEN, tls=cert)
    exporter = GrpcSpanExporter(
        endpoint=f"127.0.0.1:{receiver.port}", insecure=False,
        credentials=grpc.ssl_channel_credentials(Path(cert[0]).read_bytes()),
        headers=(("authorization", f"Bearer {TOKEN}"),), compression=grpc.Compression.Gzip)
    spans = _sdk_spans()
    try:
        assert exporter.export(spans) == SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    _check_records(spans, sink)


def test_sdk_exporters_retry_when_throttled(start: Callable[..., Any]) -> None:
    """A full queue is retried by the real exporters after the delay the receiver names
    (0 here), and the retried batch lands once."""
    spans = _sdk_spans()
    http_sink, grpc_sink = Sink(False), Sink(False)
    http_receiver = start(HttpReceiver, http_sink, retry_after_s=0)
    grpc_receiver = start(GrpcReceiver, grpc_sink, retry_after_s=0)
    http_exporter = HttpSpanExporter(endpoint=f"http://127.0.0.1:{http_receiver.port}/v1/traces")
    grpc_exporter = GrpcSpanExporter(endpoint=f"127.0.0.1:{grpc_receiver.port}", insecure=True)
    try:
        assert http_exporter.export(spans) == SpanExportResult.SUCCESS
        assert grpc_exporter.export(spans) == SpanExportResult.SUCCESS
    finally:
        http_exporter.shutdown()
        grpc_exporter.shutdown()
    for sink in (http_sink, grpc_sink):
        assert len(sink.calls) == 2  # refused once, then taken
        assert sink.calls[0][1] == sink.calls[1][1]
    assert http_receiver.stats.snapshot().requests["http", "throttled"] == 1
    assert grpc_receiver.stats.snapshot().requests["grpc", "throttled"] == 1


def test_sdk_exporters_do_not_retry_invalid(start: Callable[..., Any]) -> None:
    """400 / INVALID_ARGUMENT is final: the exporters give up at once (no retry loop)."""
    stats = ReceiverStats()
    http_receiver = start(HttpReceiver, Sink(), limits=Limits(max_spans=1), stats=stats)
    grpc_receiver = start(GrpcReceiver, Sink(), limits=Limits(max_spans=1), stats=stats)
    http_exporter = HttpSpanExporter(endpoint=f"http://127.0.0.1:{http_receiver.port}/v1/traces")
    grpc_exporter = GrpcSpanExporter(endpoint=f"127.0.0.1:{grpc_receiver.port}", insecure=True)
    try:
        assert http_exporter.export(_sdk_spans()) == SpanExportResult.FAILURE
        assert grpc_exporter.export(_sdk_spans()) == SpanExportResult.FAILURE
    finally:
        http_exporter.shutdown()
        grpc_exporter.shutdown()
    requests = stats.snapshot().requests
    assert (requests["http", "invalid"], requests["grpc", "invalid"]) == (1, 1)
