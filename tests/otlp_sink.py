"""A minimal OTLP/HTTP receiver for end-to-end tests.

Why: tests that run an app under the real ``opentelemetry-instrument`` command must see
what the real OTLP/HTTP exporter really sends (batching, resource, tracestate, cumulative
metric exports), not what an in-process exporter would have been handed. This receiver
accepts ``POST /v1/traces``, ``/v1/metrics`` and ``/v1/logs`` (protobuf, gzip or not),
decodes them with the official ``opentelemetry-proto`` messages, answers 200 with an
empty ``Export*ServiceResponse``, and keeps spans and metric points as plain dicts so
that assertions read like the data. Standard library plus ``opentelemetry-proto`` only.
"""

from __future__ import annotations

import gzip
import threading
import zlib
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self, TypedDict

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

__all__ = ["LogRecord", "MetricPoint", "OtlpSink", "SpanRecord"]

_SERVICE_NAME = "service.name"


class SpanRecord(TypedDict):
    """One received span, decoded."""

    service: str  # resource service.name: tells apart processes exporting to one sink
    scope: str
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    parent_span_id: str  # "" for a root span
    name: str
    kind: str  # INTERNAL, SERVER, CLIENT, PRODUCER, CONSUMER
    status: str  # UNSET, OK, ERROR
    trace_state: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]


class MetricPoint(TypedDict):
    """One received number data point (sum or gauge) or histogram point (value = its sum)."""

    service: str
    scope: str
    name: str
    kind: str  # sum, gauge, histogram
    attributes: dict[str, Any]
    value: float
    count: int  # histogram count; 0 for sums and gauges


def _value(value: AnyValue) -> Any:
    """A python value of the type the exporter encoded."""
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_value(item) for item in value.array_value.values]
    if which == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    if which is None:
        return None
    return getattr(value, which)


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


def _service(attributes: list[KeyValue] | Any) -> str:
    return str(_attributes(attributes).get(_SERVICE_NAME, ""))


def _decode_spans(request: ExportTraceServiceRequest) -> list[SpanRecord]:
    out: list[SpanRecord] = []
    for resource_spans in request.resource_spans:
        service = _service(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                out.append(SpanRecord(
                    service=service, scope=scope_spans.scope.name,
                    trace_id=span.trace_id.hex(), span_id=span.span_id.hex(),
                    parent_span_id=span.parent_span_id.hex(), name=span.name,
                    kind=Span.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_"),
                    status=Status.StatusCode.Name(span.status.code).removeprefix("STATUS_CODE_"),
                    trace_state=span.trace_state, start_ns=span.start_time_unix_nano,
                    end_ns=span.end_time_unix_nano, attributes=_attributes(span.attributes)))
    return out


class LogRecord(TypedDict):
    """One received log record, decoded."""

    service: str
    scope: str
    time_ns: int
    severity_text: str
    severity_number: int
    event_name: str
    body: Any
    trace_id: str  # 32 hex digits, "" when unset
    attributes: dict[str, Any]


def _decode_logs(request: ExportLogsServiceRequest) -> list[LogRecord]:
    return [LogRecord(service=_service(rl.resource.attributes), scope=sl.scope.name,
                      time_ns=record.time_unix_nano, severity_text=record.severity_text,
                      severity_number=record.severity_number, event_name=record.event_name,
                      body=_value(record.body), trace_id=record.trace_id.hex(),
                      attributes=_attributes(record.attributes))
            for rl in request.resource_logs for sl in rl.scope_logs
            for record in sl.log_records]


def _decode_metric(service: str, scope: str, metric: Metric) -> list[MetricPoint]:
    kind = metric.WhichOneof("data")
    if kind in ("sum", "gauge"):
        return [MetricPoint(service=service, scope=scope, name=metric.name, kind=kind,
                            attributes=_attributes(p.attributes), count=0,
                            value=getattr(p, p.WhichOneof("value") or "as_double"))
                for p in getattr(metric, kind).data_points]
    if kind == "histogram":
        return [MetricPoint(service=service, scope=scope, name=metric.name, kind=kind,
                            attributes=_attributes(p.attributes), value=p.sum, count=p.count)
                for p in metric.histogram.data_points]
    return []  # exponential histograms and summaries: not exported by this project


def _decode_metrics(request: ExportMetricsServiceRequest) -> list[MetricPoint]:
    out: list[MetricPoint] = []
    for resource_metrics in request.resource_metrics:
        service = _service(resource_metrics.resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                out.extend(_decode_metric(service, scope_metrics.scope.name, metric))
    return out


def _series_key(point: MetricPoint) -> tuple[str, str, str]:
    return point["service"], point["scope"], repr(sorted(point["attributes"].items()))


class OtlpSink:
    """OTLP/HTTP receiver on 127.0.0.1 (free port); a context manager.

    ``spans`` holds every received span; ``metric_exports`` one list of points per metric
    export request, in arrival order, so the last cumulative value of each series can be
    read (`last_values`) and a gauge's every observation checked (`points`).
    ``trace_bytes`` counts the uncompressed protobuf bytes of the trace requests.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[SpanRecord] = []
        self._metric_exports: list[list[MetricPoint]] = []
        self._logs: list[LogRecord] = []
        self.trace_bytes = 0
        self.errors: list[str] = []  # requests the sink could not decode: a test should fail
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- reading ------------------------------------------------------------------

    @property
    def spans(self) -> list[SpanRecord]:
        with self._lock:
            return list(self._spans)

    @property
    def logs(self) -> list[LogRecord]:
        with self._lock:
            return list(self._logs)

    @property
    def metric_exports(self) -> list[list[MetricPoint]]:
        with self._lock:
            return [list(export) for export in self._metric_exports]

    def points(self, name: str, service: str | None = None) -> list[MetricPoint]:
        """Every received point of metric ``name`` (from ``service`` if given), in order."""
        return [p for export in self.metric_exports for p in export
                if p["name"] == name and service in (None, p["service"])]

    def last_values(self, name: str, service: str | None = None
                    ) -> dict[tuple[str, str, str], MetricPoint]:
        """The most recent point of each series of ``name`` (cumulative: its running total)."""
        last: dict[tuple[str, str, str], MetricPoint] = {}
        for point in self.points(name, service):
            last[_series_key(point)] = point
        return last

    def total(self, name: str, service: str | None = None, **where: Any) -> float:
        """Sum over series of the last value of ``name``, in a fixed series order.

        ``where`` filters on point attributes. The order is fixed (sorted series keys) so
        that two runs reporting the same series values give bit-identical totals.
        """
        last = self.last_values(name, service)
        total: float = 0
        for key in sorted(last):
            point = last[key]
            if all(point["attributes"].get(k) == v for k, v in where.items()):
                total += point["value"]
        return total

    def by_attribute(self, name: str, attribute: str, service: str | None = None
                     ) -> dict[Any, float]:
        """Last values of ``name`` summed per value of one attribute."""
        out: dict[Any, float] = defaultdict(float)
        last = self.last_values(name, service)
        for key in sorted(last):
            out[last[key]["attributes"].get(attribute)] += last[key]["value"]
        return dict(out)

    # --- receiving ----------------------------------------------------------------

    def _receive(self, path: str, body: bytes) -> bytes:
        if path == "/v1/traces":
            traces = ExportTraceServiceRequest.FromString(body)
            spans = _decode_spans(traces)
            with self._lock:
                self._spans.extend(spans)
                self.trace_bytes += len(body)
            return ExportTraceServiceResponse().SerializeToString()
        if path == "/v1/metrics":
            points = _decode_metrics(ExportMetricsServiceRequest.FromString(body))
            with self._lock:
                self._metric_exports.append(points)
            return ExportMetricsServiceResponse().SerializeToString()
        if path == "/v1/logs":
            records = _decode_logs(ExportLogsServiceRequest.FromString(body))
            with self._lock:
                self._logs.extend(records)
            return ExportLogsServiceResponse().SerializeToString()
        raise LookupError(path)

    def __enter__(self) -> Self:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # the exporter keeps its connection alive

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                try:
                    if encoding == "gzip":
                        raw = gzip.decompress(raw)
                    elif encoding == "deflate":
                        raw = zlib.decompress(raw)
                    answer, status = sink._receive(self.path, raw), 200
                except LookupError:
                    answer, status = b"", 404
                except Exception as exc:  # noqa: BLE001 - reported to the test, not raised here
                    with sink._lock:
                        sink.errors.append(f"{self.path}: {exc!r}")
                    answer, status = b"", 400
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # one line per export would drown the test output

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,),
                                        name="otlp-sink", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
        self._server = self._thread = None

    @property
    def endpoint(self) -> str:
        """Base URL for ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the exporter appends /v1/…)."""
        if self._server is None:
            raise RuntimeError("OtlpSink is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"
